"""Schema migrations: every revision builds exactly the models, on SQLite and on PostgreSQL.

Each test runs on a SQLite file and, when KAPFLOW_TEST_POSTGRES_URL is set, on a fresh PostgreSQL
schema of its own (reached through search_path, where Alembic's version table must land too).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel
from support import FRONT_DESK, INQUIRY

from kapflow.app.engine import Engine
from kapflow.errors import StorageError
from kapflow.store import schema
from kapflow.store.sql import SqlStore, create_db_engine
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

WORKERS = 4


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    with _connection(url) as conn:
        return set(inspect(conn).get_table_names())


def _execute(url: str, sql: str) -> None:
    with _connection(url) as conn:
        conn.execution_options(kapflow_write=True)
        with conn.begin():
            conn.execute(text(sql))


def _create_all(url: str) -> None:
    """What kapflow did before it used Alembic."""
    with _connection(url) as conn:
        conn.execution_options(kapflow_write=True)
        with conn.begin():
            SQLModel.metadata.create_all(conn)


def _all_at_once(work: Callable[[], object], count: int = WORKERS) -> list[object]:
    """Run ``work`` in ``count`` threads released together; return each result or the exception raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_every_migration_on_an_empty_database_builds_exactly_the_models(any_db_url: str) -> None:
    """Upgrading an empty database to head leaves no difference with the models, and the version at head."""
    assert schema.current(any_db_url) is None
    done = schema.upgrade(any_db_url)
    assert (done.before, done.after, done.stamped) == (None, schema.head(), False)
    assert schema.check(any_db_url) == []
    assert _tables(any_db_url) == set(SQLModel.metadata.tables) | {"alembic_version"}


def test_a_second_upgrade_changes_nothing(any_db_url: str) -> None:
    """Upgrading a database already at head reports no change."""
    schema.upgrade(any_db_url)
    again = schema.upgrade(any_db_url)
    assert (again.before, again.after, again.changed) == (schema.head(), schema.head(), False)


def test_downgrade_to_base_then_upgrade_again(any_db_url: str) -> None:
    """Every downgrade undoes its upgrade: at base no kapflow table is left, and head can be reached again."""
    schema.upgrade(any_db_url)
    schema.downgrade(any_db_url, "base")
    assert schema.current(any_db_url) is None
    assert _tables(any_db_url) <= {"alembic_version"}
    schema.upgrade(any_db_url)
    assert schema.current(any_db_url) == schema.head()
    assert schema.check(any_db_url) == []


def test_a_store_on_an_empty_database_gets_the_schema_at_head(any_db_url: str, clock: FakeClock) -> None:
    """SqlStore creates the schema through the migrations, and the engine works on it."""
    store = SqlStore(any_db_url)
    try:
        Engine(store, KAP_PATHWAY, clock=clock).open_case(INQUIRY, actor=FRONT_DESK)
        assert store.count_cases() == 1
    finally:
        store.close()
    assert schema.current(any_db_url) == schema.head()
    assert schema.check(any_db_url) == []


def _read_only(url: str) -> str:
    """The same database through a connection that refuses every write."""
    if url.startswith("sqlite"):
        return f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    return f"{url}%20-cdefault_transaction_read_only%3Don"  # appended to the fixture's options=-csearch_path


def test_a_store_on_an_up_to_date_database_writes_nothing(any_db_url: str) -> None:
    """A read-only user on a database at head can open a store: create_schema only looks."""
    schema.upgrade(any_db_url)
    store = SqlStore(_read_only(any_db_url))
    try:
        assert store.count_cases() == 0
    finally:
        store.close()


def test_a_read_only_connection_really_refuses_the_upgrade(any_db_url: str) -> None:
    """The read-only URLs above do refuse writes (so the test above proves something), as a StorageError."""
    _execute(any_db_url, "CREATE TABLE other_app (x INTEGER)")  # SQLite: the file must exist to open it read-only
    with pytest.raises(StorageError, match="cannot upgrade the schema"):
        schema.upgrade(_read_only(any_db_url))


def test_a_database_made_before_migrations_is_stamped_then_upgraded(any_db_url: str, clock: FakeClock) -> None:
    """Tables from create_all and no revision: upgrade marks them as the baseline and keeps the data."""
    _create_all(any_db_url)
    store = SqlStore(any_db_url, create=False)
    case_id = Engine(store, KAP_PATHWAY, clock=clock).open_case(INQUIRY, actor=FRONT_DESK).case_id
    store.close()

    done = schema.upgrade(any_db_url)
    assert (done.before, done.after, done.stamped) == (None, schema.head(), True)
    assert schema.check(any_db_url) == []
    store = SqlStore(any_db_url)
    try:
        assert store.get_case(case_id) is not None
    finally:
        store.close()


def test_a_store_on_a_database_made_before_migrations_stamps_it(any_db_url: str) -> None:
    """Opening a store is enough: it stamps the pre-Alembic database rather than failing on existing tables."""
    _create_all(any_db_url)
    SqlStore(any_db_url).close()
    assert schema.current(any_db_url) == schema.head()


def test_some_kapflow_tables_and_no_revision_is_refused(any_db_url: str) -> None:
    """A database holding only part of kapflow's tables is not guessed at: the error names what is missing."""
    _execute(any_db_url, "CREATE TABLE cases (id VARCHAR(200) PRIMARY KEY)")
    with pytest.raises(StorageError, match="not audit_events, delivery_attempts"):
        schema.upgrade(any_db_url)


def test_a_database_from_a_newer_kapflow_is_refused(any_db_url: str) -> None:
    """A revision this kapflow does not know means a newer kapflow upgraded it: refuse, and say so."""
    schema.upgrade(any_db_url)
    _execute(any_db_url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StorageError, match="revision 9999, which this kapflow does not know"):
        SqlStore(any_db_url)


def test_check_lists_a_difference_made_by_hand(any_db_url: str) -> None:
    """An index dropped by hand shows up in check(), named with its table."""
    schema.upgrade(any_db_url)
    _execute(any_db_url, "DROP INDEX ix_timers_case_id")
    assert schema.check(any_db_url) == ["add_index ix_timers_case_id on timers"]


def test_concurrent_upgrades_of_an_empty_database_all_succeed(any_db_url: str) -> None:
    """Threads with engines of their own upgrade one empty database at once: each succeeds, one does the work."""

    def upgrade_with_own_engine() -> schema.Upgrade:
        engine = create_db_engine(any_db_url)
        try:
            return schema.upgrade(engine)
        finally:
            engine.dispose()

    results = _all_at_once(upgrade_with_own_engine)
    assert all(isinstance(r, schema.Upgrade) for r in results), results
    assert sorted(r.before or "" for r in results if isinstance(r, schema.Upgrade)) == [""] + [schema.head()] * (
        WORKERS - 1
    )
    assert schema.check(any_db_url) == []


_PROCESS = """
import sys, time
from pathlib import Path
from kapflow.store import schema
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.005)
print(schema.upgrade(sys.argv[1]).before)
"""


def test_processes_starting_at_once_on_an_empty_database_all_succeed(any_db_url: str, tmp_path: Path) -> None:
    """Separate processes released together all get a working schema; none fails on a table another made."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, any_db_url, str(go), str(tmp_path / f"ready-{i}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(WORKERS)
    ]
    try:
        for i in range(WORKERS):
            _wait_for(tmp_path / f"ready-{i}")
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * WORKERS, [err for _out, err in outputs]
    befores = sorted(out.strip() for out, _err in outputs)
    assert befores == sorted(["None"] + [schema.head()] * (WORKERS - 1))


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.01)


def test_an_upgrade_waits_for_the_migration_lock(any_db_url: str) -> None:
    """While another connection holds the migration lock, an upgrade waits for it instead of racing."""
    holder = create_db_engine(any_db_url)
    try:
        with holder.connect() as conn:
            conn.execution_options(kapflow_write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": schema.PG_LOCK_KEY})
                else:
                    conn.execute(text("CREATE TABLE held (x INTEGER)"))  # BEGIN IMMEDIATE already holds it
                waiting = threading.Thread(target=schema.upgrade, args=(any_db_url,))
                waiting.start()
                waiting.join(timeout=1)
                assert waiting.is_alive(), "the upgrade did not wait for the lock"
                assert schema.current(any_db_url) is None
            waiting.join(timeout=60)
    finally:
        holder.dispose()
    assert schema.current(any_db_url) == schema.head()


def test_plain_alembic_commands_work_from_the_url(any_db_url: str) -> None:
    """schema.config(url) drives Alembic without a connection handed over, % in the URL included."""
    command.upgrade(schema.config(any_db_url), "head")
    assert schema.current(any_db_url) == schema.head()
    assert schema.check(any_db_url) == []


def test_alembic_version_table_lands_in_the_test_schema(postgres_schema_url: str) -> None:
    """On PostgreSQL the version table goes to the first schema of search_path, beside kapflow's tables."""
    schema.upgrade(postgres_schema_url)
    with _connection(postgres_schema_url) as conn:
        here = conn.execute(text("SELECT current_schema()")).scalar_one()
        found = conn.execute(
            text("SELECT table_schema FROM information_schema.tables "
                 "WHERE table_name = 'alembic_version' AND table_schema IN (:here, 'public')"),
            {"here": here},
        ).scalars().all()
    assert here.startswith("kapflow_test_")
    assert found == [here]


def test_make_migration_with_no_model_change_writes_an_empty_revision(tmp_path: Path) -> None:
    """The tooling behind ``make migration`` numbers the next revision, and finds nothing the migrations lack."""
    directory = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS, directory, ignore=shutil.ignore_patterns("__pycache__"))
    written = schema.new_revision("nothing changed", directory)
    assert written == directory / "versions" / f"{int(schema.head()) + 1:04d}_nothing_changed.py"
    body = written.read_text(encoding="utf-8")
    assert f"down_revision: str | None = {schema.head()!r}" in body
    assert "op." not in body, body
