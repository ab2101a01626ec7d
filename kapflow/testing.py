"""Helpers for embedders' tests: a clock the test moves, in-memory adapters, the worker step by step.

    kit = ReminderKit(tmp_path, contacts={"front_desk": {"email": "desk@example.org"}})
    case_id = kit.engine.open_case({...}, actor=...).case_id
    ...
    kit.advance(hours=47)              # moves the clock, then runs the worker's loops until idle
    assert "evaluation_fee_due_48h" in kit.reminders_sent()

Nothing sleeps: time only moves when the test says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kapflow.adapters.calendar.memory import MemoryCalendar
from kapflow.adapters.notify.memory import MemoryNotifier
from kapflow.bootstrap import build_engine
from kapflow.dispatch import DeliveryPolicy, Dispatcher
from kapflow.domain.messages import Contacts
from kapflow.domain.workflow import Workflow
from kapflow.engine import Engine
from kapflow.store.sql import SqlStore

__all__ = ["FakeClock", "MemoryCalendar", "MemoryNotifier", "ReminderKit", "SteppingClock", "engine_for_tests"]


class FakeClock:
    """A ``Clock`` that stands still until the test moves it. Never sleeps."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a time-zone-aware start, e.g. datetime(..., tzinfo=UTC)")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move forward by ``delta`` or by keyword parts (``hours=47``); returns the new now."""
        step = (delta or timedelta()) + timedelta(**parts)
        if step < timedelta(0):
            raise ValueError("a FakeClock only moves forward")
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("give a time-zone-aware moment")
        with self._lock:
            self._now = moment.astimezone(UTC)


def engine_for_tests(
    directory: Path | str, *, clock: FakeClock | None = None, workflows: Workflow | None = None
) -> Engine:
    """An engine on a fresh SQLite file inside ``directory`` (e.g. pytest's ``tmp_path``)."""
    path = Path(directory) / "kapflow-test.db"
    return build_engine(f"sqlite:///{path}", workflows, clock=clock or FakeClock())


class SteppingClock(FakeClock):
    """A fake clock that, as it moves, calls ``on_step`` every ``step``: a worker that never stops.

    The demo uses it so reminders fall due, and go out, while its story moves on.
    """

    def __init__(self, start: datetime | None = None, *, step: timedelta = timedelta(minutes=15)) -> None:
        super().__init__(start)
        self.step = step
        self.on_step: Callable[[], object] | None = None

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        total = (delta or timedelta()) + timedelta(**parts)
        if total < timedelta(0):
            raise ValueError("a FakeClock only moves forward")
        end = self.now() + total
        while self.now() < end:
            super().advance(min(self.step, end - self.now()))
            if self.on_step is not None:
                self.on_step()
        return self.now()

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("give a time-zone-aware moment")
        if moment < self.now():
            super().set(moment)  # going back (a test's choice) runs nothing
            return
        self.advance(moment - self.now())


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
    ) -> None:
        from kapflow.workflows.kap import KAP_PATHWAY

        if url is None:
            if directory is None:
                raise ValueError("give ReminderKit a directory for its SQLite file, or a database url")
            url = f"sqlite:///{Path(directory) / 'kapflow-reminders.db'}"
        self.clock = clock or FakeClock()
        self.store = SqlStore(url)
        self.engine = Engine(
            self.store, workflows or KAP_PATHWAY, clock=self.clock, contacts=contacts,
            timezone=timezone, calendar_sync=True,
        )
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
        self.store.close()
