"""Reminders end to end: due reminders claimed, rendered and accepted by a local SMTP server, with one worker.

``timers.build`` makes ``reminders_due`` cases whose "inquiry unanswered" reminder to the front desk
is due (copies of one engine-written case). One worker's two loops then run in turn
(``Dispatcher.run_timers_once``: claim a batch, close each timer, note it on the case, queue the email;
``run_outbox_once``: claim the queued emails, check each is still wanted, send it through
``SmtpNotifier`` on a connection kept between messages, settle it, one commit each) until the server,
aiosmtpd in a process of its own (``smtp_sink.py``), has accepted every one. ``delivered_per_s`` is
that count over the time taken. For scale, the same run times plain ``smtplib`` sending as many small
messages to the same server, over one connection and with a connection per message.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from api import free_port
from measure import Sizes, rate
from paths import new_clock
from timers import CONTACTS, WORKER, build

from kapflow.adapters.notify.smtp import SmtpNotifier
from kapflow.app.dispatch import Dispatcher
from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.workflows.kap import KAP_PATHWAY

SINK = Path(__file__).with_name("smtp_sink.py")
SENDER = "reminders@practice.example"


@contextmanager
def smtp_sink(delay_ms: int = 0) -> Iterator[tuple[int, list[int]]]:
    """The counting server on a free port (answering each message ``delay_ms`` late); after the block, the
    list holds how many messages it accepted."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(SINK), str(port), str(delay_ms)], stdout=subprocess.PIPE,
                               text=True)
    accepted: list[int] = []
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")
        yield port, accepted
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
        accepted.append(int(out.strip() or 0))


def _plain(n: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = SENDER, "front.desk@example.org", f"Reminder {n}"
    mail.set_content("A synthetic reminder for the benchmark.")
    return mail


def smtplib_rates(port: int, count: int) -> tuple[float, float]:
    """Plain smtplib: messages/s over one connection, and with a connection per message."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for n in range(count):
            smtp.send_message(_plain(n))
    persistent = rate(count, time.perf_counter() - start)
    start = time.perf_counter()
    for n in range(count):
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.send_message(_plain(n))
    return persistent, rate(count, time.perf_counter() - start)


def run(sizes: Sizes, directory: Path) -> dict[str, Any]:
    """The ``reminders`` section of results.json."""
    due_count = sizes.timers_acted
    path = directory / "reminders.db"
    template = build(path, due_count)
    clock = new_clock()
    store = SqlStore(f"sqlite:///{path}", create=False)
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock, contacts=CONTACTS)
        due = datetime.fromisoformat(store.queue().timers(template)[0]["due_at"])
        clock.set(due + timedelta(minutes=5))
        with smtp_sink() as (port, accepted):
            email = SmtpNotifier("127.0.0.1", port, SENDER, starttls=False, allow_cleartext_loopback=True,
                                 clock=clock)
            dispatcher = Dispatcher(engine, {"email": email}, worker_id=WORKER)
            start = time.perf_counter()
            sent = 0
            while sent < due_count:
                claimed = dispatcher.run_timers_once()
                delivered = dispatcher.run_outbox_once()
                if not claimed and not delivered:
                    raise RuntimeError(f"the worker stopped after {sent} of {due_count} reminders")
                sent = dispatcher.tally.sent
            elapsed = time.perf_counter() - start
            dispatcher.close()
            persistent, per_connection = smtplib_rates(port, min(due_count, 500))
    finally:
        store.close()
    if accepted[0] != due_count + 2 * min(due_count, 500):
        raise RuntimeError(f"the server accepted {accepted[0]} messages: the worker lost or repeated some")
    return {
        "delivered_per_s": rate(due_count, elapsed),
        "reminders": due_count,
        "smtplib_one_connection_per_s": persistent,
        "smtplib_connection_per_message_per_s": per_connection,
        "measures": "one worker's timer and outbox loops in turn on SQLite, until aiosmtpd (a process of its own) "
        "accepted every due reminder: claimed, noted on its case, rendered, sent over a kept SMTP connection and "
        "settled (one commit per message); smtplib_* send small messages to the same server, for scale",
    }
