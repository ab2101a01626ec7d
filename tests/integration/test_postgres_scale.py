"""Scaling out on PostgreSQL: several processes on one database, each with its own connection pool.

Processes, not threads: each has its own interpreter, pool and FakeClock, as
separate web workers or worker hosts would. They start with ``spawn`` and run
the functions of ``scale_workers.py``; a ``multiprocessing.Barrier`` makes
them collide on purpose. What is checked afterwards is read straight from
the database, so a lost or doubled write cannot hide behind a report.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration import scale_workers
from support import open_case, query

from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

pytestmark = pytest.mark.postgres

PROCESSES = 4
_spawn = multiprocessing.get_context("spawn")


@pytest.fixture
def pg_engine(postgres_ready_url: str) -> Iterator[Engine]:
    """The parent's engine on a fresh PostgreSQL schema of this test's own, at the workers' start time."""
    store = SqlStore(postgres_ready_url)
    yield Engine(store, KAP_PATHWAY, clock=FakeClock(scale_workers.T0))
    store.close()


def run_processes(target: Callable[..., None], args: Callable[[int, Any, Any], tuple[Any, ...]],
                  timeout: float) -> dict[int, list[tuple[Any, ...]]]:
    """Start PROCESSES processes on ``target`` (``args(n, barrier, results)``); their reports, by process."""
    barrier = _spawn.Barrier(PROCESSES, timeout=scale_workers.BARRIER_TIMEOUT)
    results = _spawn.Queue()
    processes = [_spawn.Process(target=target, args=args(n, barrier, results)) for n in range(PROCESSES)]
    for p in processes:
        p.start()
    reports: dict[int, list[tuple[Any, ...]]] = {}
    try:
        for _ in processes:
            worker, report = results.get(timeout=timeout)
            reports[worker] = report
    except queue.Empty:
        pytest.fail(f"only {sorted(reports)} of {PROCESSES} processes reported within {timeout:g} s")
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():  # never leave a process behind a failed test
                p.kill()
                p.join()
    errors = [entry for report in reports.values() for entry in report if entry[0] == "error"]
    assert not errors, errors
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    return reports


def assert_one_chain_per_case(engine: Engine, url: str) -> None:
    """Every case's audit events are numbered 1..n with no gap or repeat, and every chain verifies."""
    rows = query(url, "SELECT c.id, c.event_count, count(a.seq), min(a.case_seq), max(a.case_seq), "
                      "count(DISTINCT a.case_seq) FROM cases c LEFT JOIN audit_events a ON a.case_id = c.id "
                      "GROUP BY c.id, c.event_count")
    for case_id, event_count, events, first, last, distinct in rows:
        assert (events, first, last, distinct) == (event_count, 1, event_count, event_count), case_id
    assert engine.verify_audit().ok


def test_conflicting_triggers_from_processes_have_one_winner_per_version(
    pg_engine: Engine, postgres_ready_url: str
) -> None:
    """Four processes hold or resume the same cases with the version each read: one wins, three conflict."""
    cases, rounds = [open_case(pg_engine, last_name=f"Client-{n}") for n in range(12)], 10
    start = {c: pg_engine.case(c).version for c in cases}
    reports = run_processes(
        scale_workers.fire_rounds,
        lambda n, barrier, results: (postgres_ready_url, cases, rounds, n, barrier, results),
        timeout=240,
    )

    entries = [e for report in reports.values() for e in report]
    assert len(entries) == PROCESSES * len(cases) * rounds
    wins = Counter((e[1], e[3]) for e in entries if e[0] == "win")
    conflicts = Counter((e[1], e[3]) for e in entries if e[0] == "conflict")
    for case_id in cases:
        versions = range(start[case_id], start[case_id] + rounds)
        assert [wins[(case_id, v)] for v in versions] == [1] * rounds, case_id  # exactly one winner per version
        assert [conflicts[(case_id, v)] for v in versions] == [PROCESSES - 1] * rounds, case_id
    assert all(e[4] == e[3] + 1 for e in entries if e[0] == "win")  # each winner wrote the very next version

    for case_id in cases:  # no lost update: every win is in the history, in order, and nothing else was written
        case = pg_engine.case(case_id)
        assert case.version == start[case_id] + rounds and case.state == "inquiry"
        history = pg_engine.history(case_id)
        assert [ev.kind for ev in history] == ["opened"] + ["transition"] * rounds
        assert [ev.trigger for ev in history[1:]] == ["hold", "resume"] * (rounds // 2)
    assert_one_chain_per_case(pg_engine, postgres_ready_url)


def test_unversioned_records_from_processes_queue_on_the_case_and_none_is_lost(
    pg_engine: Engine, postgres_ready_url: str
) -> None:
    """Concurrent record() calls without expected_version: none lost, and (queued on the row) none refused."""
    case_id, per_process = open_case(pg_engine), 60
    reports = run_processes(
        scale_workers.record_many,
        lambda n, barrier, results: (postgres_ready_url, case_id, per_process, n, barrier, results),
        timeout=240,
    )

    entries = [e for report in reports.values() for e in report]
    assert len(entries) == PROCESSES * per_process
    written = {e[1]: e[2] for e in entries if e[0] == "ok"}
    conflicts = sum(e[0] == "conflict" for e in entries)
    assert len(written) + conflicts == PROCESSES * per_process
    case = pg_engine.case(case_id)
    assert case.version == 1 + len(written)
    assert sorted(written.values()) == list(range(2, 2 + len(written)))  # no two successes share a version
    facts = pg_engine.facts(case_id, "payment")
    assert sorted(f.data["reference"] for f in facts) == sorted(written)  # no success lost, no phantom
    assert sum(ev.kind == "fact" for ev in pg_engine.history(case_id)) == len(written)
    assert_one_chain_per_case(pg_engine, postgres_ready_url)
    # Stricter than "written or refused": a writer loads the case FOR UPDATE, so writers of one case
    # queue on its row and none loses a compare-and-swap it never asked for.
    assert conflicts == 0


@pytest.mark.slow
def test_four_worker_processes_act_on_10k_due_timers_exactly_once(
    pg_engine: Engine, postgres_ready_url: str, tmp_path: Path
) -> None:
    """10,000 due reminders, four worker processes: each timer settled once, each message delivered once.

    The cases are opened through the engine (by the four processes, before a barrier), so every timer
    has a real case, a real plan and a real audit chain behind it: ``act_on_timer`` checks the timer
    against the case's plan and notes its fate in the case's history. Each worker's notifier appends
    the keys it delivers to a file of its own, repeats included.
    """
    total, per_process = 10_000, 10_000 // PROCESSES
    reports = run_processes(
        scale_workers.open_then_work,
        lambda n, barrier, results: (postgres_ready_url, per_process, str(tmp_path), n, 50, barrier, results),
        timeout=300,
    )

    def scalar(sql: str) -> Any:
        return query(postgres_ready_url, sql)[0][0]

    # every case opened through the engine, each with its one inquiry_unanswered timer
    assert scalar("SELECT count(*) FROM cases") == total
    timers = query(postgres_ready_url, "SELECT status, reminder, count(*), count(DISTINCT key) FROM timers "
                                       "GROUP BY status, reminder")
    assert timers == [("done", "inquiry_unanswered", total, total)]
    by_worker = dict(query(postgres_ready_url, "SELECT claimed_by, count(*) FROM timers GROUP BY claimed_by"))
    assert sum(by_worker.values()) == total and len(by_worker) >= 2, by_worker  # shared out, not one worker
    # acted on once: one audited note per timer, written in the transaction that closed it
    notes = query(postgres_ready_url, "SELECT count(*), count(DISTINCT data) FROM audit_events "
                                      "WHERE kind = 'reminder'")
    assert notes == [(total, total)]
    # claimed once each: a timer and a message are each one claim of one worker
    assert sum(r[0][2] for r in reports.values()) == 2 * total
    # each message delivered once: one outbox row per timer, one attempt, and that attempt 'sent'
    outbox = query(postgres_ready_url, "SELECT status, attempts, count(*), count(DISTINCT key) FROM outbox "
                                       "GROUP BY status, attempts")
    assert outbox == [("sent", 1, total, total)]
    attempts = query(postgres_ready_url, "SELECT outcome, count(*), count(DISTINCT outbox_id) "
                                         "FROM delivery_attempts GROUP BY outcome")
    assert attempts == [("sent", total, total)]
    delivered = Counter(line for log in tmp_path.glob("w*.log") for line in log.read_text().splitlines())
    assert len(delivered) == total and set(delivered.values()) == {1}  # what the receiving end saw: each key once
    assert set(delivered) == {k for (k,) in query(postgres_ready_url, "SELECT key FROM outbox")}
    assert_one_chain_per_case(pg_engine, postgres_ready_url)
    assert pg_engine.case(pg_engine.cases(limit=1)[0].id).state == "inquiry"
