"""Clocks other than the wall clock, for anything that must decide when time moves: the demo, tests, drills.

Both implement the ``Clock`` port (``kapflow.ports.SystemClock`` is the wall
clock). Nothing here sleeps: time moves only when its owner says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class ManualClock:
    """A ``Clock`` that stands still until its owner moves it. Never sleeps."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("a ManualClock needs a time-zone-aware start, e.g. datetime(..., tzinfo=UTC)")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move forward by ``delta`` or by keyword parts (``hours=47``); returns the new now."""
        step = (delta or timedelta()) + timedelta(**parts)
        if step < timedelta(0):
            raise ValueError("a ManualClock only moves forward")
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("give a time-zone-aware moment")
        with self._lock:
            self._now = moment.astimezone(UTC)


class SteppingClock(ManualClock):
    """A manual clock that, as it moves, calls ``on_step`` every ``step``: a worker that never stops.

    The demo uses it so reminders fall due, and go out, while its story moves on.
    """

    def __init__(self, start: datetime | None = None, *, step: timedelta = timedelta(minutes=15)) -> None:
        super().__init__(start)
        self.step = step
        self.on_step: Callable[[], object] | None = None

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        total = (delta or timedelta()) + timedelta(**parts)
        if total < timedelta(0):
            raise ValueError("a ManualClock only moves forward")
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
            super().set(moment)  # going back (the owner's choice) runs nothing
            return
        self.advance(moment - self.now())
