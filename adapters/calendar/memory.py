"""A calendar in a dict: for tests and demos. Same rules as the real ones (``_revision``)."""

from __future__ import annotations

import threading

from kapflow.adapters.calendar._revision import cancelled, normalized, revised
from kapflow.ports import CalendarEvent


class MemoryCalendar:
    """Keeps events by uid; ``writes`` counts the changes actually stored."""

    def __init__(self) -> None:
        self._events: dict[str, CalendarEvent] = {}
        self._lock = threading.Lock()
        self.writes = 0

    def check(self) -> None:
        """Nothing to check: memory is always there."""

    def upsert(self, event: CalendarEvent) -> None:
        event = normalized(event)
        with self._lock:
            self._store(revised(self._events.get(event.uid), event))

    def cancel(self, uid: str) -> None:
        with self._lock:
            self._store(cancelled(self._events.get(uid)))

    def get(self, uid: str) -> CalendarEvent | None:
        with self._lock:
            return self._events.get(uid)

    def events(self) -> list[CalendarEvent]:
        """Every event, cancelled ones included, by start time."""
        with self._lock:
            return sorted(self._events.values(), key=lambda e: (e.starts_at, e.uid))

    def _store(self, event: CalendarEvent | None) -> None:
        if event is not None:
            self._events[event.uid] = event
            self.writes += 1
