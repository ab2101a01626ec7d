"""The store's write path on both backends, and PostgreSQL's pipelined commit in particular.

On PostgreSQL a command's writes and its COMMIT travel in one psycopg pipeline, and the
compare-and-swap of a case row locked FOR UPDATE is not waited for (it cannot miss). These tests
reach the paths the pathway never takes: a compare-and-swap that misses all the same, a failed
statement found only at the commit, an idempotency key taken meanwhile, a connection that dies
mid-command, a command that raises with writes queued. Each must commit nothing, leave the store
as it was, and keep the database's text (which quotes row values) out of errors and logs.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

import pytest
from psycopg import pq
from sqlalchemy import create_engine, text
from support import FRONT_DESK, append_note, open_case

from kapflow.app.engine import Engine
from kapflow.app.reminders import SYSTEM_ROLE
from kapflow.domain.case import Actor, AuditEvent, CaseRecord
from kapflow.domain.effects import Effects
from kapflow.domain.entries import to_iso
from kapflow.domain.timers import PlannedTimer
from kapflow.errors import DuplicateIdempotencyKey, LostRace, StorageError
from kapflow.ports import UnitOfWork
from kapflow.store.sql import SqlStore
from kapflow.store.unit_of_work import SqlUnitOfWork
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

NOTE_ACTOR = Actor("worker-test", SYSTEM_ROLE)
SECRET = "Secret-Sample-Name"  # a value that must never show up in an error or a log line


@pytest.fixture
def case_id(engine: Engine) -> str:
    return open_case(engine)


@pytest.fixture
def psycopg_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """psycopg's warnings meanwhile: it logs a failed pipeline's text if the pipeline is left with an exception."""
    with caplog.at_level(logging.WARNING, logger="psycopg"):
        yield caplog


def leaked(logs: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in logs.records if SECRET in r.getMessage()]


def snapshot(engine: Engine, case_id: str) -> tuple[CaseRecord, int, list[dict[str, Any]]]:
    """The case row, its number of audit events and its timers: what a failed command must not change."""
    return engine.case(case_id), len(engine.history(case_id)), list(engine.store.queue().timers(case_id))


def a_timer(case_id: str, clock: FakeClock) -> PlannedTimer:
    return PlannedTimer(key=f"{case_id}:test-timer", case_id=case_id, reminder="test",
                        due_at=clock.now() + timedelta(days=2))


def note(engine: Engine, uow: UnitOfWork, case: CaseRecord, detail: str = "test") -> CaseRecord:
    """Append a note to ``case`` as the worker does (``LostRace`` if the compare-and-swap misses)."""
    return append_note(engine, uow, case, NOTE_ACTOR, {"detail": detail})


def move_under_the_lock(store: SqlStore, uow: UnitOfWork, case_id: str) -> None:
    """Change the case row from inside the transaction that holds it: what nothing in kapflow does.

    It is the only way to make a compare-and-swap on a row locked FOR UPDATE miss, so it uses the
    unit of work's private cursor; the change is rolled back with the rest.
    """
    assert isinstance(uow, SqlUnitOfWork)
    placeholder = "?" if store.dialect == "sqlite" else "%s"
    uow._cur.execute(f"UPDATE cases SET event_count = event_count + 100 WHERE id = {placeholder}", (case_id,))


def test_a_missed_compare_and_swap_commits_nothing_not_even_its_timers(
    engine: Engine, case_id: str, clock: FakeClock, psycopg_logs: pytest.LogCaptureFixture
) -> None:
    """SQLite sees the miss at once (``LostRace``); PostgreSQL queued the swap, and the commit fails."""
    assert isinstance(engine.store, SqlStore)
    before = snapshot(engine, case_id)
    with pytest.raises((LostRace, StorageError)) as raised, engine.store.write() as uow:
        case = uow.load_case(case_id)
        assert case is not None
        move_under_the_lock(engine.store, uow, case_id)
        note(engine, uow, case, detail=SECRET)
        uow.apply_effects(Effects(plan=(a_timer(case_id, clock),)), clock.now())
        uow.commit()
    assert snapshot(engine, case_id) == before
    assert SECRET not in str(raised.value)
    assert not leaked(psycopg_logs)
    note_committed(engine, case_id)  # the store is fine afterwards (PostgreSQL: on a fresh connection)


def note_committed(engine: Engine, case_id: str) -> None:
    with engine.store.write() as uow:
        case = uow.load_case(case_id)
        assert case is not None
        note(engine, uow, case)
        uow.commit()
    assert engine.history(case_id)[-1].kind == "reminder"


def test_a_swap_expecting_another_count_is_refused_at_once(engine: Engine, case_id: str) -> None:
    """Not the count this transaction locked: the store asks the database, which says no."""
    before = snapshot(engine, case_id)
    with engine.store.write() as uow:
        case = uow.load_case(case_id)
        assert case is not None
        stale = replace(case, event_count=case.event_count - 1)
        with pytest.raises(LostRace):
            note(engine, uow, stale)
        uow.commit()  # nothing to commit: the refused swap wrote nothing
    assert snapshot(engine, case_id) == before


def test_two_changes_in_one_transaction_swap_from_each_other(engine: Engine, case_id: str) -> None:
    """The second swap expects the count the first one wrote (tracked through the transaction's own writes)."""
    before = engine.case(case_id)
    with engine.store.write() as uow:
        case = uow.load_case(case_id)
        assert case is not None
        note(engine, uow, note(engine, uow, case))
        uow.commit()
    after = engine.case(case_id)
    assert after.event_count == before.event_count + 2
    assert engine.verify_audit(case_id).ok


def test_a_command_that_raises_with_writes_queued_commits_nothing(
    engine: Engine, case_id: str, clock: FakeClock
) -> None:
    before = snapshot(engine, case_id)
    with pytest.raises(RuntimeError, match="the command failed"), engine.store.write() as uow:
        case = uow.load_case(case_id)
        assert case is not None
        note(engine, uow, case)
        uow.apply_effects(Effects(plan=(a_timer(case_id, clock),)), clock.now())
        raise RuntimeError("the command failed")
    assert snapshot(engine, case_id) == before
    note_committed(engine, case_id)


def test_a_key_taken_meanwhile_is_a_duplicate_and_commits_nothing(engine: Engine, case_id: str) -> None:
    """SQLite finds the duplicate at the insert; PostgreSQL at the commit: the same exception, nothing kept."""

    def noted_with_key() -> None:
        with engine.store.write() as uow:
            case = uow.load_case(case_id)
            assert case is not None
            note(engine, uow, case)
            uow.save_idempotent("key-1", case_id, "fingerprint", "{}")
            uow.commit()

    noted_with_key()
    before = snapshot(engine, case_id)
    with pytest.raises(DuplicateIdempotencyKey):
        noted_with_key()
    assert snapshot(engine, case_id) == before
    note_committed(engine, case_id)


# ------------------------------------------------------------------ PostgreSQL only


@pytest.fixture
def pg_engine(postgres_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    store = SqlStore(postgres_ready_url)
    yield Engine(store, KAP_PATHWAY, clock=clock)
    store.close()


def unacceptable_event(engine: Engine, case_id: str) -> AuditEvent:
    """An audit event with the secret in it and no kind (NOT NULL): queued fine, refused by the server."""
    first = engine.history(case_id)[0]
    return replace(first, case_seq=first.case_seq + 100, actor=SECRET, kind=cast(str, None))


@pytest.mark.postgres
def test_postgres_a_failed_statement_found_at_the_commit_leaves_no_trace(
    pg_engine: Engine, psycopg_logs: pytest.LogCaptureFixture
) -> None:
    """An audit event the database refuses, queued: the commit raises, without the row's values.

    (PostgreSQL quotes the whole failing row in a NOT NULL violation's detail.)
    """
    case_id = open_case(pg_engine)
    before = snapshot(pg_engine, case_id)
    with pytest.raises(StorageError) as raised, pg_engine.store.write() as uow:
        assert uow.load_case(case_id) is not None
        uow.append_event(unacceptable_event(pg_engine, case_id))
        uow.commit()
    assert "nothing was committed" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert not leaked(psycopg_logs)
    assert snapshot(pg_engine, case_id) == before
    note_committed(pg_engine, case_id)


@pytest.mark.postgres
def test_postgres_a_failed_statement_and_a_raising_command_log_nothing(
    pg_engine: Engine, psycopg_logs: pytest.LogCaptureFixture
) -> None:
    """The command's own exception wins; the queued failure is dropped unread, the connection with it."""
    case_id = open_case(pg_engine)
    before = snapshot(pg_engine, case_id)
    with pytest.raises(RuntimeError, match="the command failed"), pg_engine.store.write() as uow:
        uow.load_case(case_id)
        uow.append_event(unacceptable_event(pg_engine, case_id))
        raise RuntimeError("the command failed")
    assert not leaked(psycopg_logs)
    assert snapshot(pg_engine, case_id) == before
    note_committed(pg_engine, case_id)


@pytest.mark.postgres
def test_postgres_a_connection_lost_mid_command_is_dropped(pg_engine: Engine, postgres_url: str) -> None:
    """The server ends the session between the read and the commit: StorageError, then a fresh connection."""
    case_id = open_case(pg_engine)
    before = snapshot(pg_engine, case_id)
    admin = create_engine(postgres_url)
    try:
        with pytest.raises(StorageError), pg_engine.store.write() as uow:
            case = uow.load_case(case_id)
            assert case is not None
            assert isinstance(uow, SqlUnitOfWork)
            pid = uow._conn.driver_connection.info.backend_pid
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            note(pg_engine, uow, case)
            uow.commit()
    finally:
        admin.dispose()
    assert snapshot(pg_engine, case_id) == before
    note_committed(pg_engine, case_id)


def pay(engine: Engine, case_id: str, reference: str) -> None:
    engine.record(case_id, "payment", {"amount": "10.00", "purpose": "evaluation_fee", "reference": reference},
                  actor=FRONT_DESK)


def test_writers_keep_a_few_connections_and_close_hands_them_back(engine: Engine, case_id: str) -> None:
    """Sequential commands reuse one connection; concurrent ones keep at most two; close returns all."""
    store = engine.store
    assert isinstance(store, SqlStore)
    for i in range(5):
        pay(engine, case_id, f"note {i}")
    assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]

    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            own = open_case(engine)
            for i in range(10):
                pay(engine, own, f"writer {n} payment {i}")
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 1 <= store.engine.pool.checkedout() <= 2  # type: ignore[attr-defined]
    store.release_connections()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    pay(engine, case_id, "after")
    store.close()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_connection_that_failed_is_not_kept(engine: Engine, case_id: str) -> None:
    """A command whose statement the database refuses drops its connection instead of keeping it."""
    store = engine.store
    assert isinstance(store, SqlStore)
    store.release_connections()
    with pytest.raises(StorageError), store.write() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        uow._cur.execute("SELECT * FROM no_such_table")  # PostgreSQL: queued, and read at the commit
        uow.commit()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    note_committed(engine, case_id)


@pytest.mark.postgres
def test_postgres_a_kept_connection_that_died_costs_one_retry(pg_engine: Engine, postgres_url: str) -> None:
    """The server ends an idle kept connection: the next command fails cleanly, the one after works."""
    case_id = open_case(pg_engine)
    store = pg_engine.store
    assert isinstance(store, SqlStore)
    with store.write() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        pid = uow._conn.driver_connection.info.backend_pid
        uow.commit()
    admin = create_engine(postgres_url)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    finally:
        admin.dispose()
    before = snapshot(pg_engine, case_id)
    with pytest.raises(StorageError):
        pay(pg_engine, case_id, "lost")
    assert snapshot(pg_engine, case_id) == before
    note_committed(pg_engine, case_id)


@contextmanager
def libpq_trace(pgconn: Any) -> Iterator[list[str]]:
    """libpq's trace of the messages on one connection meanwhile, a line each (filled on the way out)."""
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as out:
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            pgconn.untrace()  # flushes libpq's buffer into the file
            out.seek(0)
            lines.extend(out.read().splitlines())


@contextmanager
def protocol_trace(store: SqlStore) -> Iterator[list[str]]:
    """The trace of the store's one kept write connection (kept after a single writer's command)."""
    (conn,) = store._spare
    with libpq_trace(conn.driver_connection.pgconn) as lines:
        yield lines


def waits(lines: list[str]) -> int:
    """Round trips in a trace: each wait for the server ends with the server's ReadyForQuery."""
    return sum(1 for line in lines if line.startswith("B") and "\tReadyForQuery" in line)


@pytest.mark.postgres
def test_postgres_a_command_waits_for_the_server_once_per_read_and_once_at_the_commit(
    pg_engine: Engine, clock: FakeClock
) -> None:
    """The writes travel with COMMIT: a fire on a case this store committed last waits once (it starts from that
    record, its compare-and-swap proves it current); on another case BEGIN travels with the read of its row, and
    the fire waits twice.

    (psycopg would send a BEGIN of its own and wait for it first, even in pipeline mode.)
    """
    case_id = open_case(pg_engine)
    store = pg_engine.store
    assert isinstance(store, SqlStore)
    with protocol_trace(store) as fire:
        pg_engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travel"})
    with protocol_trace(store) as opening:
        open_case(pg_engine)
    store.recent.forget(case_id)  # as for a case another server changed last
    with protocol_trace(store) as keyed:
        pg_engine.fire(case_id, "resume", actor=FRONT_DESK, idempotency_key="resume-once")
    with protocol_trace(store) as kept_keyed:
        pg_engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travel"}, idempotency_key="hold-once")
    store.recent.forget(case_id)
    with protocol_trace(store) as cold:
        pg_engine.fire(case_id, "resume", actor=FRONT_DESK)
    # The key is read with the case row; a kept case is not read at all.
    assert (waits(fire), waits(opening), waits(keyed), waits(kept_keyed), waits(cold)) == (1, 1, 2, 2, 2)
    assert not [line for line in fire + opening + keyed + cold if "\tQuery\t" in line]  # no simple-protocol BEGIN
    assert engine_state(pg_engine, case_id) == "inquiry"
    with protocol_trace(store) as replay:
        pg_engine.fire(case_id, "resume", actor=FRONT_DESK, idempotency_key="resume-once")
    assert waits(replay) == 2  # the key's row answers, and ROLLBACK ends the transaction
    assert not [line for line in replay if "DEALLOCATE" in line]  # the prepared statements stay


def engine_state(engine: Engine, case_id: str) -> str:
    return engine.case(case_id).state


def test_a_writers_connection_goes_back_to_the_pool_as_it_came(engine: Engine, case_id: str) -> None:
    """Writers on PostgreSQL switch autocommit on while they hold a connection; the pool gets it back off."""
    store = engine.store
    assert isinstance(store, SqlStore)
    note_committed(engine, case_id)
    store.release_connections()
    with store.engine.connect() as conn:  # the connection the writer had, back from the pool
        driver = conn.connection.driver_connection
        assert getattr(driver, "autocommit", False) is False
        assert conn.execute(text("SELECT count(*) FROM cases")).scalar_one() >= 1


@contextmanager
def traced_pool_connection(store: SqlStore) -> Iterator[list[str]]:
    """libpq's trace of the pool's one connection while it serves the reads meanwhile (a line each)."""
    store.release_connections()
    assert store.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    conn = store.engine.raw_connection()
    pgconn = cast(Any, conn.driver_connection).pgconn
    conn.close()  # back to the pool: the next read takes it
    with libpq_trace(pgconn) as lines:
        yield lines


@pytest.mark.postgres
def test_postgres_reading_a_case_its_history_or_a_list_is_one_round_trip(pg_engine: Engine) -> None:
    """One SELECT in autocommit mode: no BEGIN of psycopg's before it, no ROLLBACK of the pool's after it."""
    case_id = open_case(pg_engine)
    store = pg_engine.store
    assert isinstance(store, SqlStore)
    with traced_pool_connection(store) as case_read:
        assert pg_engine.case(case_id).id == case_id
    with traced_pool_connection(store) as history_read:
        assert [ev.kind for ev in pg_engine.history(case_id)] == ["opened"]
    with traced_pool_connection(store) as list_read:
        assert [c.id for c in pg_engine.cases(state="inquiry")] == [case_id]
    assert (waits(case_read), waits(history_read), waits(list_read)) == (1, 1, 1)
    with store.engine.connect() as conn:  # and the pool's connection is back to what SQLAlchemy expects
        assert getattr(conn.connection.driver_connection, "autocommit", None) is False


def timers_of(engine: Engine, case_id: str) -> dict[str, tuple[str, str]]:
    """The case's timers: key -> (status, due_at)."""
    return {t["key"]: (t["status"], t["due_at"]) for t in engine.store.queue().timers(case_id)}


def apply_alone(engine: Engine, effects: Effects, clock: FakeClock) -> None:
    with engine.store.write() as uow:
        uow.apply_effects(effects, clock.now())
        uow.commit()


def test_timers_planned_together_follow_the_rules_of_one_by_one(
    engine: Engine, case_id: str, clock: FakeClock
) -> None:
    """Several timers planned in one command (on PostgreSQL one statement, their rows as JSON) are inserted; one
    cancelled earlier comes back pending only if it is not yet due; a key twice in one plan keeps the first."""
    def timer(key: str, days: int) -> PlannedTimer:
        return PlannedTimer(key=f"{case_id}:test-{key}", case_id=case_id, reminder="test",
                            due_at=clock.now() + timedelta(days=days))

    first = (timer("passed", 1), timer("returns", 3), timer("stays", 4))
    apply_alone(engine, Effects(plan=first), clock)
    apply_alone(engine, Effects(cancel=(first[0].key, first[1].key)), clock)
    clock.advance(timedelta(days=2))  # "passed" is due by now, "returns" not yet
    apply_alone(engine, Effects(plan=(first[0], first[1], timer("new", 5), timer("new", 9))), clock)
    got = timers_of(engine, case_id)
    status = {key.split(":test-", 1)[1]: state for key, (state, _due) in got.items() if ":test-" in key}
    assert status == {"passed": "cancelled", "returns": "pending", "stays": "pending", "new": "pending"}
    assert got[f"{case_id}:test-new"][1] == to_iso(timer("new", 5).due_at)


@pytest.mark.postgres
def test_postgres_timers_planned_together_travel_as_one_statement(
    pg_engine: Engine, clock: FakeClock
) -> None:
    case_id = open_case(pg_engine)
    store = pg_engine.store
    assert isinstance(store, SqlStore)
    plan = tuple(PlannedTimer(key=f"{case_id}:together-{n}", case_id=case_id, reminder="test",
                              due_at=clock.now() + timedelta(days=n + 1)) for n in range(3))
    with protocol_trace(store) as lines:
        apply_alone(pg_engine, Effects(plan=plan), clock)
    executed = [line for line in lines if line.startswith("F") and "\tExecute" in line]
    assert len(executed) == 3  # BEGIN, the three timers, COMMIT
    got = timers_of(pg_engine, case_id)
    assert [got[t.key] for t in plan] == [("pending", to_iso(t.due_at)) for t in plan]
