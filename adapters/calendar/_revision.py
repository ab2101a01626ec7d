"""Rules every calendar adapter applies the same way, so they behave alike under the contract tests.

- Times are stored in the zone they are given in (the practice's: a shared calendar shows clinic
  times, with TZID and VTIMEZONE in iCalendar), to the second (RFC 5545 has no fractions).
- SEQUENCE never goes backwards: a changed event gets at least the stored
  SEQUENCE plus one, so calendar clients accept the change even when a caller
  does not count. Writing an unchanged event again is a no-op, so a retried
  delivery does not bump it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from kapflow.errors import DeliveryFailed
from kapflow.ports import CalendarEvent

CHANNEL = "calendar"


def _zoned(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DeliveryFailed(CHANNEL, f"{name} must be time-zone aware", permanent=True)
    return moment.replace(microsecond=0)


def normalized(event: CalendarEvent) -> CalendarEvent:
    """The event as a calendar stores it; ``DeliveryFailed(permanent=True)`` if it cannot be stored at all."""
    if not event.uid or any(c in event.uid for c in "\r\n"):
        raise DeliveryFailed(CHANNEL, "the event needs a one-line uid", permanent=True)
    starts_at = _zoned(event.starts_at, "starts_at")
    ends_at = _zoned(event.ends_at, "ends_at")
    if ends_at <= starts_at:
        raise DeliveryFailed(CHANNEL, "ends_at must be after starts_at", permanent=True)
    return replace(event, starts_at=starts_at, ends_at=ends_at, sequence=max(event.sequence, 0))


def revised(stored: CalendarEvent | None, event: CalendarEvent) -> CalendarEvent | None:
    """What to write for ``event`` over ``stored`` (both normalized), or None when nothing changed."""
    if stored is None:
        return event
    if replace(stored, sequence=event.sequence) == event and event.sequence <= stored.sequence:
        return None
    return replace(event, sequence=max(event.sequence, stored.sequence + 1))


def cancelled(stored: CalendarEvent | None) -> CalendarEvent | None:
    """The cancelled version of ``stored``, or None when there is nothing to cancel."""
    if stored is None or stored.cancelled:
        return None
    return replace(stored, cancelled=True, sequence=stored.sequence + 1)
