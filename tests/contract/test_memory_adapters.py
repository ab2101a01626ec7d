"""MemoryNotifier and MemoryCalendar beyond the contract: rehearsing outages, counting writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kapflow.adapters.calendar.memory import MemoryCalendar
from kapflow.adapters.notify.memory import MemoryNotifier
from kapflow.errors import DeliveryFailed
from kapflow.ports import Calendar, CalendarEvent, Message, Notifier


def msg(key: str) -> Message:
    return Message(key=key, channel="email", recipient="alex@example.org", subject="Reminder", body="See you.")


def test_they_satisfy_the_ports() -> None:
    notifier: Notifier = MemoryNotifier()
    calendar: Calendar = MemoryCalendar()
    assert notifier.channel == "email" and calendar.get("x") is None


def test_fail_next_fails_that_many_sends_then_delivers() -> None:
    """Planned failures come first, in order, each counted as an attempt; then sends succeed."""
    notifier = MemoryNotifier("sms")
    notifier.fail_next(2)
    notifier.fail_next(1, permanent=True)
    outcomes = []
    for key in ("a", "b", "c", "d"):
        try:
            notifier.send(msg(key))
            outcomes.append("sent")
        except DeliveryFailed as exc:
            outcomes.append("permanent" if exc.permanent else "transient")
    assert outcomes == ["transient", "transient", "permanent", "sent"]
    assert notifier.keys() == ["d"] and notifier.attempts == 4


def test_clear_forgets_messages_and_planned_failures() -> None:
    notifier = MemoryNotifier()
    notifier.fail_next(3)
    notifier.clear()
    notifier.send(msg("a"))
    assert notifier.keys() == ["a"] and notifier.attempts == 1


def test_fail_next_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        MemoryNotifier().fail_next(-1)


def test_memory_calendar_counts_only_real_writes() -> None:
    """An unchanged upsert and a repeated cancel store nothing."""
    start = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)
    event = CalendarEvent(uid="u@kapflow", summary="Integration", starts_at=start, ends_at=start + timedelta(hours=1))
    calendar = MemoryCalendar()
    calendar.upsert(event)
    calendar.upsert(event)
    calendar.cancel(event.uid)
    calendar.cancel(event.uid)
    assert calendar.writes == 2
    assert [e.uid for e in calendar.events()] == ["u@kapflow"]
