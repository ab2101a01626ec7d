"""Helpers for embedders' tests: a clock the test moves, and an engine on a throwaway database.

    clock = FakeClock(datetime(2026, 1, 5, 9, tzinfo=UTC))
    engine = engine_for_tests(tmp_path, clock=clock)
    clock.advance(hours=47)
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kapflow.bootstrap import build_engine
from kapflow.domain.workflow import Workflow
from kapflow.engine import Engine

__all__ = ["FakeClock", "engine_for_tests"]


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
