"""Due timers claimed and acted on by the worker's timer loop, with 100k timers pending.

A template case is opened through the engine: in ``inquiry`` it has one timer, the front desk's
"inquiry unanswered" reminder, due 2 business days later. ``clone.clone_case`` copies it until
``timers_pending`` timers are pending. The fake clock is then set just past their due time, so all
are due (a backlog, the hardest case for the claim query), and ``Dispatcher.run_timers_once`` runs
until ``timers_acted`` of them are done: each batch is claimed (one transaction: select due rows,
mark them claimed with a lease), then the batch is acted on in one transaction (for each timer: load
the case, check the timer is still planned, close the timer, append the reminder note to the audit
history, queue the email in the outbox; then one commit). Delivering the queued emails (``run_outbox_once`` to a
``MemoryNotifier``) is timed after it, separately.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from clone import clone_case
from measure import Sizes, rate
from paths import FRONT_DESK, INTAKE, new_clock

from kapflow.adapters.notify.memory import MemoryNotifier
from kapflow.app.dispatch import DeliveryPolicy, Dispatcher
from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.workflows.kap import KAP_PATHWAY

CONTACTS = {"front_desk": {"email": "front.desk@example.org"}}
WORKER = "bench-worker"


def build(path: Path, pending: int) -> str:
    clock = new_clock()
    store = SqlStore(f"sqlite:///{path}")
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock, contacts=CONTACTS)
        template = engine.open_case(INTAKE, actor=FRONT_DESK).case_id
        if len(store.queue().timers(template)) != 1:
            raise RuntimeError("the template case should have exactly one pending timer")
    finally:
        store.close()
    clone_case(path, template, [f"case-bench-{i:07d}" for i in range(pending - 1)])
    return template


def run(sizes: Sizes, directory: Path) -> dict[str, Any]:
    """``timer_claim_per_s`` and the ``timers`` section of results.json."""
    path = directory / "timers.db"
    started = time.perf_counter()
    template = build(path, sizes.timers_pending)
    build_s = time.perf_counter() - started
    clock = new_clock()
    store = SqlStore(f"sqlite:///{path}", create=False)
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock, contacts=CONTACTS)
        queue = store.queue()
        due = datetime.fromisoformat(queue.timers(template)[0]["due_at"])  # the clones share it
        clock.set(due + timedelta(minutes=5))
        email = MemoryNotifier("email")
        policy = DeliveryPolicy()
        dispatcher = Dispatcher(engine, {"email": email}, worker_id=WORKER, policy=policy)
        acted = 0
        start = time.perf_counter()
        while acted < sizes.timers_acted:
            handled = dispatcher.run_timers_once()
            if handled == 0:
                raise RuntimeError("no due timer was claimed")
            acted += handled
        timers_s = time.perf_counter() - start
        delivered = 0
        start = time.perf_counter()
        while delivered < acted:
            handled = dispatcher.run_outbox_once()
            if handled == 0:
                break
            delivered += handled
        outbox_s = time.perf_counter() - start
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        (done,) = conn.execute("SELECT count(*) FROM timers WHERE status = 'done'").fetchone()
    if done != acted or len(email.sent) != delivered or delivered != acted:
        raise RuntimeError(f"acted on {acted}, done {done}, delivered {delivered}: the loop lost work")
    return {
        "claim_per_s": rate(acted, timers_s),
        "delivery_per_s": rate(delivered, outbox_s),
        "pending": sizes.timers_pending,
        "acted": acted,
        "batch": policy.batch,
        "build_s": build_s,
        "measures": "Dispatcher.run_timers_once on SQLite with all timers pending and due: each batch claimed in "
        "one transaction, then acted on in another (per timer: close it, audit note, email queued in the outbox; "
        "one commit per batch); delivery_per_s: run_outbox_once delivering those emails to a MemoryNotifier, timed "
        "separately",
    }
