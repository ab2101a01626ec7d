"""The SQL store: SQLite by default, PostgreSQL at scale. The only importer of SQLAlchemy.

The hot path uses Core statements on the SQLModel tables, built once at
import and cached compiled by SQLAlchemy; the ORM session is never on it.
SQLite runs in WAL mode with ``synchronous=FULL`` (an acknowledged
transition survives power loss) and takes its write lock up front with
``BEGIN IMMEDIATE``. Engines are created with ``hide_parameters=True`` so
bound values (names, notes) never reach logs or exception text, and every
SQLAlchemy error leaves this module as a ``StorageError``.

A command's statements run in a unit of work (``kapflow.store.unit_of_work``;
on PostgreSQL its writes and COMMIT travel in one psycopg pipeline), and rows
become records in ``kapflow.store.rows``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from kapflow.domain.case import AuditEvent, CaseRecord, Snapshot
from kapflow.domain.entries import EntryLoader, to_iso
from kapflow.domain.errors import KapflowError, StorageError
from kapflow.domain.names import prefix_bound
from kapflow.store import schema
from kapflow.store.access import AccessReader
from kapflow.store.access import statements_for as access_statements
from kapflow.store.accounts import AccountReader
from kapflow.store.accounts import statements_for as account_statements
from kapflow.store.api_keys import ApiKeyReader, statements_for
from kapflow.store.audit_log import LogReader, LogStatements
from kapflow.store.client_bindings import BindingReader
from kapflow.store.client_bindings import statements_for as binding_statements
from kapflow.store.prepared import (
    HotStatements,
    PageShape,
    Prepared,
    case_read,
    case_views,
    entries_past_counts,
    labelled_entries,
)
from kapflow.store.queue import SqlQueue
from kapflow.store.recent import DEFAULT_CASES, RecentProjections
from kapflow.store.rows import case_from_values, event_from_row, mislabelled, with_projections
from kapflow.store.tables import AuditRow, CaseRow
from kapflow.store.unit_of_work import PipelinedUnitOfWork, SqlUnitOfWork
from kapflow.store.work import SqlWorkReader

_cases = CaseRow.__table__  # type: ignore[attr-defined]
_audit = AuditRow.__table__  # type: ignore[attr-defined]
T = TypeVar("T")


class _NoRowsLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """An engine's logger that never logs at DEBUG, where SQLAlchemy writes result rows.

    ``hide_parameters`` keeps bound values out of the log, but with the ``sqlalchemy.engine``
    logger at DEBUG (a common setting while debugging a host application) SQLAlchemy logs
    every row it fetches: intake, notes, contacts. Statements (INFO) still log, without values.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802  (logging's name)
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: object) -> None:
        return None

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs


SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def create_db_engine(url: str) -> Engine:
    """An SQLAlchemy engine with kapflow's durability and privacy settings."""
    backend = url.split(":", 1)[0].split("+", 1)[0]
    if backend not in SUPPORTED_BACKENDS:
        raise StorageError(f"kapflow does not run on {backend!r} databases: use sqlite:///FILE or "
                           "postgresql+psycopg://USER@HOST/DB")
    try:
        engine = _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url, hide_parameters=True)
    except ModuleNotFoundError as exc:  # the URL's driver is not installed
        hint = "install kapflow[postgres] (pip install 'kapflow[postgres]')"
        if "psycopg" not in (exc.name or ""):
            hint = "install it, or check the URL"
        failure = StorageError(f"cannot open database: its driver {exc.name} is not installed; {hint}")
    except NoSuchModuleError:
        failure = StorageError(f"no driver for {url.split(':', 1)[0]!r}: use sqlite:///FILE or "
                               "postgresql+psycopg://USER@HOST/DB")
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        failure = StorageError(f"cannot open database ({type(exc).__name__}); check the URL")
    else:
        engine.logger = _NoRowsLogger(logging.getLogger("sqlalchemy.engine.Engine"))  # type: ignore[assignment]
        return engine
    raise failure  # outside the handler: the driver's error (it may quote the URL) is not its context


def check_location(url: str, *, must_exist: bool) -> None:
    """A SQLite file's folder exists (and, for reads, the file): said plainly, before SQLite says "unable to open"."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0].removeprefix("file:"))  # a URI names a file too
    if must_exist and not path.exists():
        raise StorageError(f"no database at {path}: run kapflow db upgrade to create one, or check --db "
                           "(reads never create a database)")
    if not path.parent.is_dir():
        raise StorageError(f"the folder {path.parent} for the SQLite database does not exist; create it first")


_LAST_CHARACTER = "\U0010ffff"  # a prefix of nothing but it has no bound: words up to it plus this
_UMASK = threading.Lock()  # the umask is the process's: two connects at once must not interleave


def _sqlite_engine(url: str) -> Engine:
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if in_memory else None,
    )

    @event.listens_for(engine, "do_connect")
    def _private_files(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # A database SQLite creates now is 0600 whatever the process's umask, and its -wal, -shm
        # and -journal take the database file's mode; a file that exists is left as its owner made it.
        with _UMASK:
            previous = os.umask(0o077)
            try:
                return dialect.connect(*cargs, **cparams)
            finally:
                os.umask(previous)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock before reading, so a read-then-write never races.
        mode = "IMMEDIATE" if conn.get_execution_options().get("kapflow_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def _translated(dbapi_error: type[Exception] | None = None) -> Iterator[None]:
    """SQLAlchemy's errors, and the driver's own from the hot path, leave as ``StorageError`` (no values).

    ``from None`` alone still keeps the driver's error as ``__context__`` (PostgreSQL's detail
    quotes the failing row: names, notes); kapflow's errors leave with no chain at all.
    """
    try:
        try:
            yield
        except IntegrityError as exc:
            raise StorageError(
                f"the database refused a write ({type(exc.orig).__name__}); nothing was committed"
            ) from None
        except SQLAlchemyError as exc:
            raise StorageError(
                f"database error ({type(exc).__name__}); nothing was committed, retry later"
            ) from None
        except Exception as exc:
            if dbapi_error is not None and isinstance(exc, dbapi_error):
                raise StorageError(
                    f"database error ({type(exc).__name__}); nothing was committed, retry later"
                ) from None
            raise
    except KapflowError as exc:
        detach(exc)
        raise


def detach(exc: BaseException) -> None:
    """Drop the chain of an error raised ``from None``: its context may hold a driver error and its row."""
    if exc.__suppress_context__ and exc.__cause__ is None:
        exc.__context__ = None


def _can_pipeline(engine: Engine) -> bool:
    """PostgreSQL through psycopg 3 on a libpq with pipeline mode (14 or later)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return False
    return bool(engine.dialect.dbapi.Pipeline.is_supported())  # type: ignore[union-attr]


_SPARE_WRITERS = 2  # write connections kept between commands; the pool's default size is 5


class SqlStore:
    """The ``Store`` port on SQLAlchemy Core."""

    def __init__(
        self, url: str, *, create: bool = True, existing_only: bool = False, recent_cases: int = DEFAULT_CASES
    ) -> None:
        """``create``: create or upgrade the schema if needed. ``existing_only``: open a database that exists
        at the newest revision, or raise ``StorageError`` saying how to make one; never create anything
        (reads). ``recent_cases``: how many cases' parsed projections to keep for their next command (0: none).
        """
        self.url = url
        check_location(url, must_exist=existing_only)
        self.engine = create_db_engine(url)
        self.dialect = self.engine.dialect.name
        self._hot = HotStatements(self.engine.dialect)
        self._log = LogStatements(self.engine.dialect)
        self._dbapi_error: type[Exception] = self.engine.dialect.dbapi.Error  # type: ignore[union-attr]
        self._pipelined = _can_pipeline(self.engine)
        self._spare: list[Any] = []  # DBAPI connections kept checked out between write commands
        self.recent = RecentProjections(recent_cases)
        self._writing = threading.local()  # each thread's unit of work while it runs one (``_entry_texts``)
        # A database in memory has one connection, which a read outside a command must not share: read whole.
        self._loader_for = None if isinstance(self.engine.pool, StaticPool) else self._entry_loader
        self._closed = False
        self._reach()
        if existing_only:
            self._require_schema()
        elif create:
            self.create_schema()

    def _reach(self) -> None:
        """One connection now, so an unreachable server or an unopenable file is said as such, at start."""
        try:
            with self.engine.connect():
                pass
        except SQLAlchemyError as exc:
            self.engine.dispose()
            url = self.engine.url
            where = f"the SQLite file {url.database}" if self.dialect == "sqlite" else (
                f"the database server at {url.host or 'localhost'}:{url.port or 5432}")
            reason = type(getattr(exc, "orig", None) or exc).__name__
            failure = StorageError(f"cannot connect to {where} ({reason}): check that it is running, that it "
                                   "accepts connections from here and this user, and the URL")
        else:
            return
        raise failure  # outside the handler: the driver's message (it may quote the URL) is not its context

    def _require_schema(self) -> None:
        """The database is at this kapflow's newest schema revision (it writes nothing to find out)."""
        try:
            revision, newest = schema.current(self.engine), schema.head()
        except StorageError:
            self.engine.dispose()
            raise
        if revision != newest:
            self.engine.dispose()
            found = "has no kapflow schema" if revision is None else f"is at schema revision {revision}"
            raise StorageError(f"the database {found}, not {newest}: run kapflow db upgrade (reads never "
                               "create or change a database)")

    def create_schema(self) -> None:
        """Create or upgrade the schema. Looks first, so a read-only user on a ready database writes nothing."""
        try:
            if not schema.at_head(self.engine):
                schema.upgrade(self.engine)
        except StorageError:
            self.engine.dispose()  # a store that cannot start must not keep pooled connections open
            raise

    @contextmanager
    def write(self) -> Iterator[SqlUnitOfWork]:
        # The pool's DBAPI connection directly: SQLAlchemy's Connection would add tens of
        # microseconds of events and bookkeeping to every command (see prepared.py).
        with _translated(self._dbapi_error):
            conn = self._checkout()
            uow: SqlUnitOfWork | None = None
            broken = False
            outer = getattr(self._writing, "uow", None)
            try:
                uow = self._unit_of_work(conn)
                self._writing.uow = uow
                yield uow
            except self._dbapi_error:
                # No pre-ping on checkout (a round trip per command): a connection that failed is
                # dropped from the pool instead, and the caller's retry gets a fresh one.
                broken = True
                conn.invalidate()
                raise
            finally:
                self._writing.uow = outer
                if uow is not None and uow.committed:  # a refusal commits, then raises
                    self.recent.remember(uow.written.values())
                clean = False
                try:
                    # Out of pipeline mode first (after an invalidation this does no I/O).
                    if uow is not None and not uow.committed and not uow.abandon() and not broken:
                        broken = True
                        conn.invalidate()
                    if not broken and (uow is None or not uow.committed):
                        conn.rollback()
                    clean = not broken
                finally:
                    self._checkin(conn, clean)

    def _checkout(self) -> Any:
        try:
            return self._spare.pop()  # atomic: no two commands ever share a connection
        except IndexError:
            return self.engine.raw_connection()

    def _checkin(self, conn: Any, clean: bool) -> None:
        """Keep a clean connection for the next command (a few at most), else return it to the pool.

        Checking a connection out of SQLAlchemy's pool and back in costs more than a command's
        statements on SQLite (events, reset, queue locks); the few kept here stay checked out, so
        the pool's other connections serve readers and other writers as before.
        """
        if clean and not self._closed and len(self._spare) < _SPARE_WRITERS:
            self._spare.append(conn)
        else:
            self._to_pool(conn, clean)

    def _to_pool(self, conn: Any, clean: bool) -> None:
        """Back to SQLAlchemy's pool as the pool gave it: a pipelined writer's autocommit turned off."""
        if clean and self._pipelined:
            try:
                conn.driver_connection.autocommit = False
            except self._dbapi_error:  # not idle after all (it broke meanwhile): drop it
                conn.invalidate()
        conn.close()

    def release_connections(self) -> None:
        """Return the connections kept for writers to the pool (``close`` does it too)."""
        while self._spare:
            try:
                conn = self._spare.pop()
            except IndexError:  # another thread took the last one
                break
            self._to_pool(conn, clean=True)

    def _unit_of_work(self, conn: Any) -> SqlUnitOfWork:
        if self._pipelined:
            return PipelinedUnitOfWork(conn, self._hot, self.recent, self._log, self._loader_for)
        uow = SqlUnitOfWork(conn, self._hot, self.recent, self._log, self._loader_for)
        if self.dialect == "sqlite":
            uow.begin_immediate()
        return uow

    def _entry_loader(self, case_id: str) -> EntryLoader:
        """Where a case read in part (``Entries.partial``) reads the texts of its other facts: a kept record serves
        later commands, so through whichever transaction this thread runs then."""
        return partial(self._entry_texts, case_id)

    def _entry_texts(self, case_id: str, places: Sequence[int], holding: str | None) -> list[str | None]:
        """The texts of the case's facts at ``places`` (``SqlUnitOfWork.entry_texts``): in this thread's unit of work
        while it has one open (an entry never changes once written, so any transaction reads the same text), else on
        a pooled connection."""
        uow: SqlUnitOfWork | None = getattr(self._writing, "uow", None)
        if uow is not None and not uow.committed:
            return uow.entry_texts(case_id, places, holding)
        with _translated(self._dbapi_error):
            conn = self.engine.raw_connection()
            try:
                return SqlUnitOfWork(conn, self._hot, self.recent).entry_texts(case_id, places, holding)
            finally:
                conn.close()
                if self._closed:  # a record read before the store closed: no connection is left behind
                    self.engine.dispose()

    def get_case(self, case_id: str) -> CaseRecord | None:
        found = self._read_cases(self._hot.read_case, {"id": case_id})
        return found[0] if found else None

    def list_cases(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Sequence[CaseRecord]:
        page = {"limit": limit, "offset": offset}
        if state is None:
            return self._read_cases(self._hot.list_cases, page)
        return self._read_cases(self._hot.list_cases_in_state, {**page, "state": state})

    def case_page(
        self, *, state: str | None, workflow: str | None, after: tuple[str, str] | None, limit: int,
        starting: tuple[datetime, datetime] | None = None, overdue_before: datetime | None = None,
        name_words: Sequence[str] = (),
    ) -> Sequence[CaseRecord]:
        values: dict[str, Any] = {"limit": limit, "state": state, "workflow": workflow}
        for n, word in enumerate(name_words):
            values.update({f"w{n}_from": word, f"w{n}_until": prefix_bound(word) or word + _LAST_CHARACTER})
        if after is not None:
            values.update(after_opened=after[0], after_id=after[1])
        if starting is not None:  # holds count whole seconds since the epoch: from its second, until before its
            values.update(day_from=math.ceil(starting[0].timestamp()), day_until=math.ceil(starting[1].timestamp()))
        if overdue_before is not None:
            values["overdue_before"] = to_iso(overdue_before)
        statement = self._hot.case_page(PageShape(state is not None, workflow is not None, after is not None,
                                                  starting is not None, overdue_before is not None, len(name_words)))
        return self._read_cases(statement, {k: v for k, v in values.items() if v is not None})

    def unindexed_cases(self, after_id: str, limit: int) -> Sequence[CaseRecord]:
        """Up to ``limit`` cases after ``after_id`` (by id) with no word of their client's name indexed."""
        return self._read_cases(self._hot.unindexed_cases, {"after_id": after_id, "limit": limit})

    def _read_cases(self, statement: Prepared, values: Mapping[str, Any]) -> list[CaseRecord]:
        """The cases of a case read, their projections joined on the same connection if the read left them
        (SQLite: ``rows.with_projections``)."""

        def read(cursor: Any) -> list[CaseRecord]:
            def entries(ids: str) -> list[Any]:
                return list(self._hot.entries_of.run(cursor, {"ids": ids}).fetchall())

            return [case_from_values(r) for r in with_projections(statement.run(cursor, values).fetchall(), entries)]

        return self._on_cursor(read)

    def _cases(self, rows: Sequence[Any]) -> list[CaseRecord]:
        """The cases of rows of a case read made elsewhere (``iter_cases``), their entries read here if need be."""
        def entries(ids: str) -> list[Any]:
            return self._read(self._hot.entries_of, {"ids": ids})

        return [case_from_values(r) for r in with_projections(rows, entries)]

    def count_cases(self, *, state: str | None = None) -> int:
        if state is None:
            rows = self._read(self._hot.count_cases, {})
        else:
            rows = self._read(self._hot.count_cases_in_state, {"state": state})
        return int(rows[0][0])

    def history(self, case_id: str) -> Sequence[AuditEvent]:
        return [event_from_row(r) for r in self._read(self._hot.select_history, {"case_id": case_id})]

    def _read(self, statement: Prepared, values: Mapping[str, Any]) -> list[Any]:
        """The rows of one read, precompiled, on a pooled DBAPI connection."""
        return self._on_cursor(lambda cursor: list(statement.run(cursor, values).fetchall()))

    def _on_cursor(self, read: Callable[[Any], T]) -> T:
        """``read(cursor)`` on a pooled DBAPI connection's cursor, outside any transaction.

        A case, its history and the case lists are read often (operations staff, the CLI, an API),
        and SQLAlchemy's per-row work would be most of their cost. On PostgreSQL each statement
        runs in autocommit mode: a single SELECT sees one snapshot without a transaction around it,
        so the read is one round trip, not three (psycopg's BEGIN, the SELECT, the pool's ROLLBACK).
        """
        with _translated(self._dbapi_error):
            conn = self.engine.raw_connection()
            try:
                if self._pipelined:
                    driver: Any = conn.driver_connection
                    driver.autocommit = True
                return read(conn.cursor())
            finally:
                self._to_pool(conn, clean=True)  # autocommit off again (dropped if that fails)

    def iter_audit(self, case_id: str | None = None) -> Iterator[AuditEvent]:
        query = select(_audit).order_by(_audit.c.case_id, _audit.c.case_seq)
        if case_id is not None:
            query = query.where(_audit.c.case_id == case_id)
        with _translated(), self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield event_from_row(row)

    def iter_cases(self) -> Iterator[CaseRecord]:
        query = select(*case_read(self.engine.dialect)).order_by(_cases.c.id)
        with _translated(), self.engine.connect() as conn:
            for rows in conn.execution_options(yield_per=1000).execute(query).partitions():
                yield from self._cases([tuple(r) for r in rows])

    def entries_past_counts(self, case_id: str | None = None) -> list[tuple[str, int]]:
        with _translated(), self.engine.connect() as conn:
            return [(str(found), int(n)) for found, n in conn.execute(entries_past_counts(case_id))]

    def entries_mislabelled(self, case_id: str | None = None) -> list[tuple[str, int]]:
        with _translated(), self.engine.connect() as conn:
            rows = conn.execution_options(yield_per=5000).execute(labelled_entries(case_id))
            return [(found, wrong) for found, wrong in mislabelled(rows) if wrong]

    def case_views(self, case_id: str | None = None) -> Iterator[tuple[str, str, Snapshot]]:
        with _translated(), self.engine.connect() as conn:
            for rows in conn.execution_options(yield_per=1000).execute(case_views(case_id)).partitions():
                for found, name, count, body in rows:
                    yield str(found), str(name), Snapshot(int(count), str(body))

    def log(self) -> LogReader:
        """The audit log's reads: verification's stream, a proof's nodes, the checkpoints."""
        return LogReader(self.engine, self._log, self._read)

    def queue(self) -> SqlQueue:
        return SqlQueue(self.engine)

    def work(self) -> SqlWorkReader:
        """The work list's reads (``kapflow.store.work``)."""
        return SqlWorkReader(self.engine)

    def api_keys(self) -> ApiKeyReader:
        """The API keys' reads: one key by its id (verifying a request), the listing."""
        return ApiKeyReader(statements_for(self.engine.dialect), self._read)

    def access(self) -> AccessReader:
        """The access log's queries: who read a case, and when."""
        return AccessReader(access_statements(self.engine.dialect), self._read)

    def client_bindings(self) -> BindingReader:
        """Which case a client identity may reach (a primary-key lookup per request)."""
        return BindingReader(binding_statements(self.engine.dialect), self._read)

    def accounts(self) -> AccountReader:
        """The console's accounts: a request's session, the rate limit's count, the listings."""
        return AccountReader(account_statements(self.engine.dialect), self._read)

    def close(self) -> None:
        self._closed = True
        self.release_connections()
        self.engine.dispose()
