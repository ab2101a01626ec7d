"""A running worker works through a burst at once: each loop runs again while it finds a full batch, instead of
taking one batch per interval (a thousand reminders due at nine would otherwise take twenty intervals)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from support import FRONT_DESK, INQUIRY, who

from kapflow.app.dispatch import DeliveryPolicy
from kapflow.testing import FakeClock, ReminderKit
from kapflow.worker import Worker

DESK = {"front_desk": {"email": "desk@practice.example"}}
BATCH = DeliveryPolicy(batch=2)
CASES = 6
HOUR = 3600.0  # the worker's interval: a loop that took one batch per interval would not run again in the test
PATIENCE_S = 60.0  # only a worker that stopped draining waits this long (the test then fails)


@contextmanager
def _kit(directory: Path) -> Iterator[ReminderKit]:
    """Cases whose booking notices (and calendar entries) are due now: more timers and messages than a batch."""
    directory.mkdir()
    kit = ReminderKit(directory, contacts=DESK, policy=BATCH, clock=FakeClock())
    try:
        for _ in range(CASES):
            case_id = kit.engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
            kit.engine.book_appointment(case_id, "evaluation", kit.clock.now() + timedelta(days=5),
                                        actor=FRONT_DESK, **who(case_id))
        yield kit
    finally:
        kit.close()


@contextmanager
def _running(kit: ReminderKit) -> Iterator[Worker]:
    worker = Worker(kit.dispatcher, interval=HOUR, summary_every=HOUR, sequence_every=HOUR)
    thread = threading.Thread(target=lambda: worker.run(install_signals=False), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=PATIENCE_S)


def _reference(tmp_path: Path) -> tuple[int, int]:
    """How many timers and messages the same practice has due, worked through by the loops in turn."""
    with _kit(tmp_path / "reference") as kit:
        kit.run()
        return kit.dispatcher.tally.timers, kit.dispatcher.tally.sent


def test_the_timer_loop_acts_on_every_due_timer_in_one_run(tmp_path: Path) -> None:
    timers, _sent = _reference(tmp_path)
    assert timers > 2 * BATCH.batch
    with _kit(tmp_path / "worker") as kit:
        _drained_by_the_worker(kit, lambda: kit.dispatcher.tally.timers, timers)
        assert kit.dispatcher.run_timers_once() == 0


def test_the_outbox_loop_sends_every_queued_message_in_one_run(tmp_path: Path) -> None:
    _timers, sent = _reference(tmp_path)
    assert sent > 2 * BATCH.batch
    with _kit(tmp_path / "worker") as kit:
        while kit.dispatcher.run_timers_once():  # every message queued before the worker starts
            pass
        _drained_by_the_worker(kit, lambda: kit.dispatcher.tally.sent, sent)
        assert kit.dispatcher.run_outbox_once() == 0
        assert len(kit.email.sent) + len(kit.calendar.events()) == sent


def _drained_by_the_worker(kit: ReminderKit, done: Callable[[], int], expected: int) -> None:
    """Start the worker and wait (``PATIENCE_S`` at most) until ``done()`` counts ``expected``."""
    with _running(kit):
        deadline = time.monotonic() + PATIENCE_S
        while done() != expected:
            assert time.monotonic() < deadline, f"the worker stopped at {kit.dispatcher.tally}"
            time.sleep(0.02)
