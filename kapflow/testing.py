"""Helpers for embedders' tests: a clock the test moves, in-memory adapters, the worker step by step.

    kit = ReminderKit(tmp_path, contacts={"front_desk": {"email": "desk@example.org"}})
    case_id = kit.engine.open_case({...}, actor=...).case_id
    ...
    kit.advance(hours=47)              # moves the clock, then runs the worker's loops until idle
    assert "evaluation_fee_due" in kit.reminders_sent()

Nothing sleeps: time only moves when the test says so.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from kapflow.adapters.calendar.memory import MemoryCalendar
from kapflow.adapters.notify.memory import MemoryNotifier
from kapflow.app.dispatch import DeliveryPolicy, Dispatcher
from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.clocks import ManualClock, SteppingClock
from kapflow.config import Settings
from kapflow.domain.messages import Contacts
from kapflow.domain.workflow import Workflow

__all__ = ["FakeClock", "MemoryCalendar", "MemoryNotifier", "ReminderKit", "SteppingClock", "engine_for_tests"]


FakeClock = ManualClock
"""A ``Clock`` that stands still until the test moves it (``kapflow.clocks.ManualClock``). Never sleeps."""


def engine_for_tests(
    directory: Path | str, *, clock: FakeClock | None = None, workflows: Workflow | None = None
) -> Engine:
    """An engine on a fresh SQLite file inside ``directory`` (e.g. pytest's ``tmp_path``)."""
    path = Path(directory) / "kapflow-test.db"
    return build_engine(f"sqlite:///{path}", workflows, clock=clock or FakeClock())


class ReminderKit:
    """An engine on a database, a fake clock, in-memory email/SMS/calendar, a dispatcher.

    The database is a SQLite file in ``directory``, or ``url`` (any database kapflow runs on,
    e.g. a PostgreSQL schema of the test's own): ``ReminderKit(url="postgresql+psycopg://...")``.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        url: str | None = None,
        clock: FakeClock | None = None,
        workflows: Workflow | list[Workflow] | None = None,
        contacts: Contacts | None = None,
        timezone: str = "UTC",
        policy: DeliveryPolicy | None = None,
        urgent_channel: str | None = None,
    ) -> None:
        if url is None:
            if directory is None:
                raise ValueError("give ReminderKit a directory for its SQLite file, or a database url")
            url = f"sqlite:///{Path(directory) / 'kapflow-reminders.db'}"
        self.clock = clock or FakeClock()
        # Assembled by the composition root, as a deployment is, with in-memory adapters for the worker.
        settings = Settings(contacts=contacts or {}, timezone=timezone, urgent_channel=urgent_channel)
        self.engine = build_engine(url, workflows, clock=self.clock, settings=settings, calendar_sync=True)
        self.store = self.engine.store
        self.email = MemoryNotifier("email")
        self.sms = MemoryNotifier("sms")
        self.calendar = MemoryCalendar()
        self.dispatcher = Dispatcher(
            self.engine, {"email": self.email, "sms": self.sms}, self.calendar,
            worker_id="test-worker", policy=policy,
        )

    def run(self) -> int:
        """Run the worker's loops until nothing is due; returns how many claims were handled."""
        return self.dispatcher.run_until_idle()

    def advance(
        self, delta: timedelta | None = None, *, step: timedelta = timedelta(minutes=15), **parts: float
    ) -> int:
        """Move the clock forward as a worker that never stops sees it: the loops run every ``step``.

        To rehearse downtime instead, move ``clock`` and call ``run()`` once.
        """
        end = self.clock.now() + (delta or timedelta()) + timedelta(**parts)
        handled = self.run()
        while self.clock.now() < end:
            self.clock.advance(min(step, end - self.clock.now()))
            handled += self.run()
        return handled

    def reminders_sent(self, channel: str = "email") -> list[str]:
        """The reminder names of the messages delivered on ``channel``, in order."""
        box = self.email if channel == "email" else self.sms
        return [m.key.split(":")[-2] for m in box.sent]

    def close(self) -> None:
        self.engine.close()
