"""The audit log's sequencer while processes write: every committed row gets one position, in order.

Four spawned processes write at once (``scale_workers``): two record payments on a case of their
own as fast as they can, two open cases and then run a dispatcher, which fires the cases'
reminders and delivers the messages (audit events, outbox rows and delivery attempts: every table
the log covers). Meanwhile two threads of the test process, each with its own engine and
connection pool, run ``engine.sequence_audit_log`` over and over: on PostgreSQL they contend for
the advisory lock, on SQLite for the database's write lock.

What is checked afterwards is read straight from the database: no row waits, the positions are
exactly 0..n-1 with the rows and ``log_entries`` agreeing on each, the placed ranges the sequencer
runs reported tile 0..n-1 with no overlap (no two runs placed at once, nothing placed twice), each
case's events sit in the log in ``case_seq`` order, and ``engine.verify_log`` finds no problem.
"""

from __future__ import annotations

import multiprocessing
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from integration import scale_workers
from support import FRONT_DESK, INQUIRY, query

from kapflow.app.audit_log import Sequenced
from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

PROCESSES = 4
SEQUENCERS = 2
_spawn = multiprocessing.get_context("spawn")


def _writer(
    n: int, url: str, logs: str, payer: str, payments: int, cases: int, barrier: Any, results: Any
) -> tuple[Callable[..., None], tuple[Any, ...]]:
    """Even processes: ``payments`` payments on case ``payer``. Odd ones: ``cases`` cases, then a dispatcher."""
    if n % 2 == 0:
        return scale_workers.record_many, (url, payer, payments, n, barrier, results)
    return scale_workers.open_then_work, (url, cases, logs, n, 50, barrier, results)


def _sequencer(url: str, stop: threading.Event, runs: list[Sequenced], errors: list[BaseException]) -> None:
    """Sequence until ``stop``, a batch at a time, keeping what each run reports."""
    store = SqlStore(url, create=False)
    engine = Engine(store, KAP_PATHWAY, clock=FakeClock(scale_workers.T0))
    try:
        while not stop.is_set():
            runs.append(engine.sequence_audit_log(max_batches=1))
    except BaseException as exc:
        errors.append(exc)
    finally:
        store.close()


def _run(url: str, payments: int, cases: int, timeout: float) -> list[Sequenced]:
    """The writers and the sequencers at once; returns every sequencer run's report (the final one last)."""
    store = SqlStore(url, create=False)
    try:
        engine = Engine(store, KAP_PATHWAY, clock=FakeClock(scale_workers.T0))
        payers = {  # record_many writes to a case that exists
            n: engine.open_case({**INQUIRY, "last_name": f"Payer-{n}"}, actor=FRONT_DESK).case_id
            for n in range(0, PROCESSES, 2)
        }
        runs = _write_while_sequencing(url, payers, payments, cases, timeout)
        return [*runs, engine.sequence_audit_log()]  # what the writers committed after the sequencers stopped
    finally:
        store.close()


def _write_while_sequencing(
    url: str, payers: dict[int, str], payments: int, cases: int, timeout: float
) -> list[Sequenced]:
    stop = threading.Event()
    runs: list[list[Sequenced]] = [[] for _ in range(SEQUENCERS)]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_sequencer, args=(url, stop, runs[i], errors)) for i in range(SEQUENCERS)]
    with tempfile.TemporaryDirectory(prefix="kapflow-seq-") as logs:
        barrier = _spawn.Barrier(PROCESSES, timeout=scale_workers.BARRIER_TIMEOUT)
        results = _spawn.Queue()
        processes = []
        for n in range(PROCESSES):
            target, args = _writer(n, url, logs, payers.get(n, ""), payments, cases, barrier, results)
            processes.append(_spawn.Process(target=target, args=args))
        for t in threads:
            t.start()
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
            stop.set()
            for t in threads:
                t.join(timeout=60)
            for p in processes:
                p.join(timeout=30)
                if p.is_alive():  # never leave a process behind a failed test
                    p.kill()
                    p.join()
    assert not errors, errors
    failed = [entry for report in reports.values() for entry in report if entry[0] == "error"]
    assert not failed, failed
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    return [run for thread_runs in runs for run in thread_runs]


def assert_one_position_each(url: str, runs: list[Sequenced]) -> int:
    """The checks of the module's docstring; returns the log's size."""
    sources = {"event": ("audit_events", "seq"), "message": ("outbox", "id"), "delivery": ("delivery_attempts", "id")}
    total = 0
    for source, (table, key) in sources.items():
        rows, waiting = query(url, f"SELECT count(*), count(*) - count(log_position) FROM {table}")[0]
        assert waiting == 0, f"{waiting} of {rows} rows of {table} still wait for a position"
        assert rows > 0, f"the writers wrote no row to {table}: the test proves nothing about it"
        (agreeing,) = query(url, f"SELECT count(*) FROM {table} t JOIN log_entries e ON e.source = :source "
                                 f"AND e.source_id = t.{key} AND e.position = t.log_position", source=source)[0]
        assert agreeing == rows, f"{rows - agreeing} rows of {table} disagree with log_entries"
        total += rows
    entries, distinct, low, high = query(url, "SELECT count(*), count(DISTINCT position), min(position), "
                                              "max(position) FROM log_entries")[0]
    assert (entries, distinct, low, high) == (total, total, 0, total - 1)
    (leaves,) = query(url, "SELECT count(*) FROM log_nodes WHERE level = 0")[0]
    assert leaves == total

    placed = sorted((run.size - run.placed, run.size) for run in runs if run.size is not None and run.placed)
    assert sum(run.placed for run in runs) == total
    edge = 0
    for start, end in placed:  # the runs' ranges tile the log: none overlapped, none placed a row twice
        assert start == edge, f"a run placed [{start}, {end}) while the log ended at {edge}"
        edge = end
    assert edge == total

    last: dict[str, tuple[int, int]] = {}
    for case_id, case_seq, position in query(url, "SELECT case_id, case_seq, log_position FROM audit_events "
                                                  "ORDER BY case_id, case_seq"):
        if case_id in last:
            assert position > last[case_id][1], (case_id, last[case_id], (case_seq, position))
        last[case_id] = (case_seq, position)
    return int(total)


def check(url: str, payments: int, cases: int, timeout: float) -> tuple[int, list[Sequenced]]:
    runs = _run(url, payments, cases, timeout)
    size = assert_one_position_each(url, runs)
    store = SqlStore(url, create=False)
    try:
        report = Engine(store, KAP_PATHWAY).verify_log(None, None)
    finally:
        store.close()
    assert report.status != "failed", report.as_dict()
    assert report.problem_count == 0 and report.size == size and report.unlogged == 0, report.as_dict()
    return size, runs


@pytest.mark.postgres
def test_postgres_sequencers_place_every_row_once_while_processes_write(postgres_ready_url: str) -> None:
    """~3 s of writing by four processes on PostgreSQL; two sequencers, one holding the lock at a time."""
    started = time.monotonic()
    size, runs = check(postgres_ready_url, payments=900, cases=150, timeout=120)
    busy = sum(1 for run in runs if run.size is None)
    placing = sum(1 for run in runs if run.placed)
    assert placing > 1, "the log was placed in one run: the sequencers never ran beside the writers"
    assert busy > 0, "no run found the other sequencer holding the lock: the lock was never put to the test"
    assert size > 1000 and time.monotonic() - started < 60
    print(f"postgres: {size} rows, {placing} runs placed rows, {busy} found the lock taken")


def test_sqlite_sequencers_place_every_row_once_while_processes_write(tmp_path: Path) -> None:
    """The same on a SQLite file: the writers and the sequencers take turns at the write lock."""
    url = f"sqlite:///{tmp_path / 'kapflow.db'}"
    SqlStore(url).close()
    size, runs = check(url, payments=250, cases=40, timeout=120)
    assert sum(1 for run in runs if run.placed) > 1
    print(f"sqlite: {size} rows, {len(runs)} sequencer runs")

