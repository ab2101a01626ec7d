"""The pipelined writer's cursor holds its statements until the command waits, then sends them together.

The server is the witness: a session-level advisory lock taken by a queued statement shows up in
``pg_locks`` (seen from a second connection) only once the statement has left the client. With
psycopg's own cursor it shows up without any wait, which the control test checks, so the
observation itself can fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import psycopg
import pytest
from support import append_note, open_case

from kapflow.app.engine import Engine
from kapflow.app.reminders import SYSTEM_ROLE
from kapflow.domain.case import Actor
from kapflow.store import batched_cursor as batching
from kapflow.store.batched_cursor import BatchedCursor, batched_cursor
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

pytestmark = pytest.mark.postgres

LOCK_KEY = 7_310_042  # an advisory lock key of this test's own
QUIET = 0.3  # seconds the witness watches for a statement that must not have been sent


def dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


@pytest.fixture
def connections(postgres_url: str) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    """The writer (autocommit, as a unit of work has it) and the witness; the writer's locks go with them."""
    with psycopg.connect(dsn(postgres_url), autocommit=True) as writer, \
            psycopg.connect(dsn(postgres_url), autocommit=True) as witness:
        yield writer, witness
        writer.execute("SELECT pg_advisory_unlock_all()")


def watch(witness: psycopg.Connection[Any], sql: str, params: tuple[Any, ...], within: float,
          until: Callable[[Any], bool] = lambda _value: False) -> list[Any]:
    """The first column of ``sql`` asked every 10 ms for ``within`` seconds, or until a value meets ``until``."""
    seen: list[Any] = []
    deadline = time.monotonic() + within
    while True:
        row = witness.execute(sql, params).fetchone()
        if row is not None:
            seen.append(row[0])
            if until(row[0]):
                return seen
        if time.monotonic() >= deadline:
            return seen
        time.sleep(0.01)


def lock_seen(witness: psycopg.Connection[Any], pid: int, within: float) -> bool:
    """Whether the writer's backend holds the test's advisory lock at some point within ``within`` seconds."""
    sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s AND objid = %s"
    return any(watch(witness, sql, (pid, LOCK_KEY), within, until=bool))


def last_statements(witness: psycopg.Connection[Any], pid: int, within: float) -> set[str]:
    """Every statement text the backend ``pid`` showed as its last within ``within`` seconds (pg_stat_activity)."""
    return {str(q) for q in watch(witness, "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,), within)}


def test_the_pinned_psycopg_is_the_one_the_cursor_was_written_for() -> None:
    """Upgrading psycopg past 3.3 must be a decision: this fails until the cursor is checked against it."""
    assert batching._COMPATIBLE, f"psycopg {psycopg.__version__}: review kapflow/store/batched_cursor.py"


def test_a_queued_statement_leaves_only_when_the_command_waits(
    connections: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
) -> None:
    writer, witness = connections
    with writer.pipeline() as pipeline:
        cur = batched_cursor(writer)
        assert isinstance(cur, BatchedCursor)
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert not lock_seen(witness, writer.info.backend_pid, QUIET)
        pipeline.sync()
        assert lock_seen(witness, writer.info.backend_pid, 0)


def test_control_psycopgs_own_cursor_sends_at_once(
    connections: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
) -> None:
    writer, witness = connections
    with writer.pipeline():
        writer.cursor().execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert lock_seen(witness, writer.info.backend_pid, 10.0)


def test_queued_writes_run_in_order_and_a_failure_among_them_stops_the_rest(
    connections: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
) -> None:
    writer, _ = connections
    writer.execute("CREATE TEMPORARY TABLE queued (n integer PRIMARY KEY)")
    with writer.pipeline() as pipeline:
        cur = batched_cursor(writer)
        cur.execute("BEGIN", prepare=False)
        cur.executemany("INSERT INTO queued (n) VALUES (%s)", [(1,), (2,), (3,)])
        cur.execute("UPDATE queued SET n = n * 10 WHERE n = %s", (2,))
        cur.execute("COMMIT", prepare=False)
        pipeline.sync()
    assert writer.execute("SELECT n FROM queued ORDER BY n").fetchall() == [(1,), (3,), (20,)]
    with pytest.raises(psycopg.errors.UniqueViolation), writer.pipeline():
        cur = batched_cursor(writer)
        cur.execute("BEGIN", prepare=False)
        cur.execute("INSERT INTO queued (n) VALUES (%s)", (4,))
        cur.execute("INSERT INTO queued (n) VALUES (%s)", (1,))  # taken: the server skips what follows
        cur.execute("INSERT INTO queued (n) VALUES (%s)", (5,))
        cur.execute("COMMIT", prepare=False)
    writer.execute("ROLLBACK")  # the failed transaction block, as SqlStore drops or resets its connection
    assert writer.execute("SELECT n FROM queued ORDER BY n").fetchall() == [(1,), (3,), (20,)]


def test_a_commands_swap_leaves_at_once_and_its_other_writes_with_its_commit(
    postgres_ready_url: str, postgres_url: str, clock: FakeClock,
) -> None:
    """The store's writer: after the read of the case (its row, then its entries and its kept views' snapshots),
    the compare-and-swap (and whatever it adds) leaves at once, so the server starts on it; a write queued after it
    (here the words of the client's name) reaches the server only with the commit."""
    store = SqlStore(postgres_ready_url)
    engine = Engine(store, KAP_PATHWAY, clock=clock)
    try:
        case_id = open_case(engine)
        with psycopg.connect(dsn(postgres_url), autocommit=True) as witness, store.write() as uow:
            case = uow.load_case(case_id, current=True)  # a wait: BEGIN and the read have reached the server
            assert case is not None
            pid = cast(Any, uow)._conn.driver_connection.info.backend_pid
            worker = Actor("worker-test", SYSTEM_ROLE)
            append_note(engine, uow, case, worker, {"detail": "queued"})
            seen = watch(witness, "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,), 10.0,
                         until=lambda text: "UPDATE cases" in str(text))
            assert "UPDATE cases" in str(seen[-1]), seen  # the swap (with its audit row), sent without a wait
            uow.index_words(case_id, ["queued"], replacing=True)
            seen_after = last_statements(witness, pid, QUIET)
            assert not any("name_words" in text for text in seen_after), seen_after  # waits for the commit
            uow.commit()
        assert [ev.kind for ev in engine.history(case_id)] == ["opened", "reminder"]
    finally:
        store.close()


def test_where_psycopg_is_not_the_series_it_was_written_for_the_cursor_is_psycopgs_own(
    connections: tuple[psycopg.Connection[Any], psycopg.Connection[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer, _ = connections
    monkeypatch.setattr(batching, "_COMPATIBLE", False)
    cur = batched_cursor(writer)
    assert type(cur) is psycopg.Cursor
