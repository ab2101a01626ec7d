"""The schema's revisions, managed with Alembic: the only importer of Alembic.

The migrations live in the package (``kapflow/store/migrations``), so a wheel
carries them, and Alembic is configured here in code: no alembic.ini.

An upgrade holds a lock from the revision check to the commit, so processes
starting at once on an empty database take turns and the later ones find
the work done: PostgreSQL takes a transaction-level advisory lock (its DDL is
transactional, so the whole upgrade is one transaction), SQLite takes its
write lock up front (``BEGIN IMMEDIATE`` through sql.py's ``kapflow_write``).

A database made by kapflow before Alembic (``SQLModel.metadata.create_all``)
has every baseline table and no revision: it is stamped as the baseline
revision, then upgraded like any other.
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Column, Connection, Constraint, Engine, Index, Table, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

import kapflow.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from kapflow.domain.errors import StorageError

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
# The tables create_all made before Alembic: all of them present and no revision means "baseline".
BASELINE_TABLES = frozenset({"cases", "audit_events", "idempotency_keys", "timers", "outbox", "delivery_attempts"})
# One advisory lock for every kapflow schema upgrade on a server ("kapflow" in ASCII).
PG_LOCK_KEY = 0x6B6170666C6F77

# alembic.context and alembic.op are module-wide proxies, so two commands running at once in
# one process (stores opened from two threads) would trample each other: one at a time.
_ALEMBIC = threading.Lock()

EngineOrUrl = Engine | str


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade`` did: the revision before (None: no schema yet) and after."""

    before: str | None
    after: str | None
    stamped: bool = False  # a pre-Alembic database was marked as the baseline first

    @property
    def changed(self) -> bool:
        return self.stamped or self.before != self.after


def config(url: str | None = None, *, directory: Path = MIGRATIONS) -> Config:
    """Alembic's configuration for kapflow's migrations (``url`` is only for a bare ``alembic`` command)."""
    cfg = Config(stdout=io.StringIO())  # Alembic's progress lines would mix with kapflow's output
    cfg.set_main_option("script_location", str(directory))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolates %
    return cfg


@functools.cache
def head() -> str:
    """The newest revision this kapflow knows."""
    with _translated("read the migrations"):
        found = ScriptDirectory.from_config(config()).get_current_head()
    if found is None:
        raise StorageError("kapflow ships no migrations; reinstall kapflow")
    return found


def current(target: EngineOrUrl) -> str | None:
    """The database's revision, or None if Alembic has never run on it. Writes nothing."""
    with _engine(target) as engine, _translated("read the schema revision"), engine.connect() as conn:
        return _revision(conn)


def at_head(target: EngineOrUrl) -> bool:
    return current(target) == head()


def upgrade(target: EngineOrUrl) -> Upgrade:
    """Create or upgrade the schema to ``head()``; a pre-Alembic database is stamped first."""
    with _engine(target) as engine, _translated("upgrade the schema"):
        try:
            return _upgrade_once(engine)
        except SQLAlchemyError:
            # An engine without kapflow's write lock (a plain SQLite engine) can lose a race with
            # "table already exists"; the winner has finished by now, so looking again finds head.
            return _upgrade_once(engine)


def downgrade(target: EngineOrUrl, revision: str = "base") -> None:
    """Undo migrations down to ``revision`` ("base": no tables at all). For tests and emergencies."""
    with _engine(target) as engine, _translated("downgrade the schema"), _locked(engine) as conn:
        _run(conn, command.downgrade, revision)


def check(target: EngineOrUrl) -> list[str]:
    """Every difference between the live database and the models, one line each (empty: they match)."""
    with _engine(target) as engine, _translated("compare the schema"), engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [_describe(diff) for diff in compare_metadata(context, SQLModel.metadata)]


def new_revision(message: str, directory: Path = MIGRATIONS) -> Path:
    """Autogenerate the next numbered revision in ``directory`` from the models (``make migration``).

    It compares the models with a scratch SQLite database upgraded to the
    newest revision, so it needs no server; read and edit what it writes.
    """
    with (
        tempfile.TemporaryDirectory() as scratch,
        _engine(f"sqlite:///{Path(scratch) / 'scratch.db'}") as engine,
        _translated("write a revision"),
        _locked(engine) as conn,
        contextlib.redirect_stdout(io.StringIO()),  # Alembic prints "Generating ..."; the caller prints the path
    ):
        _run(conn, command.upgrade, "head", directory=directory)
        script = _run(conn, command.revision, message=message, autogenerate=True,
                      rev_id=_next_rev_id(directory), directory=directory)
    if script is None or isinstance(script, list):
        raise StorageError("alembic wrote no single revision")
    return Path(script.path)


# ------------------------------------------------------------------ internals


@contextmanager
def _engine(target: EngineOrUrl) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    # sql.py imports this module, so its engine factory is imported when first needed.
    from kapflow.store.sql import create_db_engine

    engine = create_db_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _translated(doing: str) -> Iterator[None]:
    try:
        try:
            yield
        except (CommandError, RevisionError) as exc:
            raise StorageError(f"cannot {doing}: {' '.join(str(exc).split())}") from None
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot {doing} ({type(exc).__name__}); nothing was committed, check the database and retry"
            ) from None
    except StorageError as exc:
        if exc.__cause__ is None:
            exc.__context__ = None  # the driver's error may quote a row (PostgreSQL's "Failing row contains")
        raise


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction holding kapflow's migration lock until it commits."""
    with engine.connect() as conn:
        conn.execution_options(kapflow_write=True)  # SQLite: BEGIN IMMEDIATE (sql.py's begin listener)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
            yield conn


def _upgrade_once(engine: Engine) -> Upgrade:
    with _locked(engine) as conn:
        before = _revision(conn)
        stamped = before is None and _is_pre_alembic(conn)
        if stamped:
            _run(conn, command.stamp, BASELINE)
        elif before is not None:
            _known(before)
        if _revision(conn) != head():
            _run(conn, command.upgrade, "head")
        return Upgrade(before, _revision(conn), stamped)


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _is_pre_alembic(conn: Connection) -> bool:
    present = BASELINE_TABLES & set(inspect(conn).get_table_names())
    if present and present != BASELINE_TABLES:
        missing = ", ".join(sorted(BASELINE_TABLES - present))
        raise StorageError(
            f"the database has some of kapflow's tables but not {missing}, and no schema revision: "
            "it was not made by kapflow, or only partly; use an empty database or restore a backup"
        )
    return bool(present)


def _known(revision: str) -> None:
    try:
        ScriptDirectory.from_config(config()).get_revision(revision)
    except (CommandError, RevisionError):
        raise StorageError(
            f"the database is at schema revision {revision}, which this kapflow does not know "
            f"(its newest is {head()}): a newer kapflow upgraded it; run that version"
        ) from None


def _run(conn: Connection, action: Callable[..., Any], *args: Any, directory: Path = MIGRATIONS,
         **kwargs: Any) -> Any:
    """Run an Alembic command on ``conn``, inside the caller's transaction (env.py uses it as given)."""
    cfg = config(directory=directory)
    cfg.attributes["connection"] = conn
    with _ALEMBIC:
        return action(cfg, *args, **kwargs)


def _next_rev_id(directory: Path) -> str:
    numbers = [int(s.revision) for s in ScriptDirectory.from_config(config(directory=directory)).walk_revisions()
               if s.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def _describe(diff: Any) -> str:
    """One line for one of ``compare_metadata``'s differences (a tuple, or a list of column changes)."""
    if isinstance(diff, list):
        return "; ".join(_describe(change) for change in diff)
    op, *rest = diff
    if op.startswith("modify_"):
        _schema, table, column, _kw, before, after = rest
        return f"{op} {table}.{column}: {before} -> {after}"
    if op in ("add_column", "remove_column"):
        _schema, table, column = rest
        return f"{op} {table}.{column.name}"
    return f"{op} {' '.join(_label(item) for item in rest if item is not None)}".strip()


def _label(item: object) -> str:
    if isinstance(item, Table):
        return item.name
    if isinstance(item, Index | Constraint):
        table = item.table.name if isinstance(item.table, Table) else "?"
        return f"{item.name or '(unnamed)'} on {table}"
    if isinstance(item, Column):
        return str(item.name)
    return str(item)
