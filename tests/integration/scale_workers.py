"""What each process of ``test_postgres_scale.py`` runs: importable by name, so ``spawn`` can start it.

Each function builds its own engine (its own connection pool) on the shared
database, does its part, and puts a plain, picklable report on ``results``.
A process never raises to its parent: an unexpected error becomes an
``("error", ...)`` entry the test fails on, with the process and the error's type.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support import BILLING, FRONT_DESK, INQUIRY

from kapflow.app.dispatch import DeliveryPolicy, Dispatcher
from kapflow.app.engine import Engine
from kapflow.errors import ConcurrencyConflict
from kapflow.ports import Message
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday: inquiry_unanswered falls due Wednesday 09:00
INQUIRY_DUE = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
DESK = "desk@example.org"
BARRIER_TIMEOUT = 120.0


class KeyLog:
    """An email notifier that appends each message's key to a file of this process's own.

    Unlike a Maildir (which keeps one file per key), it keeps every delivery,
    repeats included, so the test can count them; and it costs next to nothing,
    so 10,000 messages measure the queue, not the composing of emails.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    @property
    def channel(self) -> str:
        return "email"

    def check(self) -> None:
        pass

    def send(self, message: Message) -> None:
        os.write(self._fd, f"{message.key}\n".encode())

    def close(self) -> None:
        os.close(self._fd)


def _engine(url: str, clock: FakeClock, **kw: Any) -> tuple[SqlStore, Engine]:
    store = SqlStore(url, create=False)
    return store, Engine(store, KAP_PATHWAY, clock=clock, **kw)


def fire_rounds(url: str, case_ids: list[str], rounds: int, worker: int, barrier: Any, results: Any) -> None:
    """Each round: read every case, wait for the others, then hold or resume each with the version read."""
    report: list[tuple[Any, ...]] = []
    store, engine = _engine(url, FakeClock(T0))
    rng = random.Random(worker)
    try:
        for round_no in range(rounds):
            seen = {c: engine.case(c) for c in case_ids}
            barrier.wait()  # every process has read the same versions before anyone writes
            order = list(case_ids)
            rng.shuffle(order)
            for case_id in order:
                case = seen[case_id]
                trigger, data = ("resume", None) if case.state == "on_hold" else ("hold", {"reason": f"w{worker}"})
                try:
                    out = engine.fire(case_id, trigger, actor=FRONT_DESK, data=data, expected_version=case.version)
                    report.append(("win", case_id, round_no, case.version, out.version, out.state))
                except ConcurrencyConflict:
                    report.append(("conflict", case_id, round_no, case.version))
            barrier.wait()  # the round is over for everyone
    except Exception as exc:  # reported, never raised: the parent fails the test with it
        report.append(("error", worker, type(exc).__name__, traceback.format_exc(limit=5)))
        barrier.abort()
    finally:
        store.close()
        results.put((worker, report))


def record_many(
    url: str, case_id: str, count: int, worker: int, barrier: Any, results: Any, stop: Any = None
) -> None:
    """``count`` payments on one case without expected_version, as fast as possible, all processes at once.

    With a ``stop`` event, the process keeps writing until it is set and then writes ``count`` more, so
    whatever the test does in the meantime happens in the middle of the burst, however slow the machine.
    """
    report: list[tuple[Any, ...]] = []
    store, engine = _engine(url, FakeClock(T0))
    try:
        barrier.wait()
        for n in _payment_numbers(count, stop):
            reference = f"w{worker}-{n}"
            data = {"amount": "1.00", "purpose": "other", "reference": reference}
            try:
                out = engine.record(case_id, "payment", data, actor=BILLING)
                report.append(("ok", reference, out.version))
            except ConcurrencyConflict:
                report.append(("conflict", reference))
    except Exception as exc:
        report.append(("error", worker, type(exc).__name__, traceback.format_exc(limit=5)))
        barrier.abort()
    finally:
        store.close()
        results.put((worker, report))


def _payment_numbers(count: int, stop: Any) -> Iterator[int]:
    n = 0
    while stop is not None and not stop.is_set():
        yield n
        n += 1
    yield from range(n, n + count)


def open_then_work(
    url: str, cases: int, logs: str, worker: int, batch: int, barrier: Any, results: Any
) -> None:
    """Open ``cases`` cases, wait for the others, then run a worker until nothing is due.

    Delivered keys go to ``logs/w<worker>.log``.
    """
    report: list[tuple[Any, ...]] = []
    clock = FakeClock(T0)
    store, engine = _engine(url, clock, contacts={"front_desk": {"email": DESK}})
    log = KeyLog(Path(logs) / f"w{worker}.log")
    try:
        for n in range(cases):
            engine.open_case({**INQUIRY, "last_name": f"Client-{worker}-{n}"}, actor=FRONT_DESK)
        barrier.wait()
        clock.set(INQUIRY_DUE + timedelta(minutes=5))  # every case's reminder is due, well within its grace
        dispatcher = Dispatcher(engine, {"email": log}, worker_id=f"w{worker}",
                                policy=DeliveryPolicy(batch=batch))
        started = time.monotonic()
        handled = dispatcher.run_until_idle(max_rounds=1_000_000)
        report.append(("done", worker, handled, time.monotonic() - started))
    except Exception as exc:
        report.append(("error", worker, type(exc).__name__, traceback.format_exc(limit=5)))
        barrier.abort()
    finally:
        log.close()
        store.close()
        results.put((worker, report))
