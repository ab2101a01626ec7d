"""RFC 5545 text for kapflow's calendar events: the one module that imports ``icalendar``.

An event is written as a VEVENT with DTSTART/DTEND in the zone its times
carry (the practice's: ``TZID`` with its ``VTIMEZONE``, or UTC), SEQUENCE, STATUS
(CONFIRMED or CANCELLED) and one DISPLAY VALARM per alarm, triggered that
long before the start. The alarm text is a fixed word: an alarm pops up on
screens, so it must not repeat the summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from icalendar import STATUS, Alarm, Calendar, Event

from kapflow.ports import CalendarEvent

PRODID = "-//kapflow//kapflow calendar//EN"
ALARM_TEXT = "Reminder"


class InvalidIcs(ValueError):
    """The text is not iCalendar kapflow can read back (no such event, or missing times)."""


def _vevent(event: CalendarEvent, stamp: datetime) -> Event:
    vevent = Event.new(
        uid=event.uid,
        summary=event.summary,
        start=event.starts_at,
        end=event.ends_at,
        sequence=event.sequence,
        status=STATUS.CANCELLED if event.cancelled else STATUS.CONFIRMED,
        stamp=stamp,
    )
    # Empty LOCATION/DESCRIPTION lines would read back as "" anyway; leave them out.
    if event.location:
        vevent.add("location", event.location)
    if event.description:
        vevent.add("description", event.description)
    for before in event.alarms:
        vevent.add_component(Alarm.new_display(ALARM_TEXT, -before))
    return vevent


def _calendar(name: str | None = None) -> Calendar:
    # Calendar() rather than Calendar.new(): new() adds a random UID, and a
    # feed's text should change only when its events do.
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    if name:
        calendar.add("x-wr-calname", name)
    return calendar


def event_ics(event: CalendarEvent, *, stamp: datetime) -> str:
    """A VCALENDAR holding the one VEVENT (the shape of a CalDAV resource and of an .ics file)."""
    calendar = _calendar()
    calendar.add_component(_vevent(event, stamp))
    calendar.add_missing_timezones()  # a VTIMEZONE for a TZID, so any client shows the clinic's time
    return bytes(calendar.to_ical()).decode()


def parse_event(text: str | bytes, uid: str) -> CalendarEvent:
    """The event ``uid`` in iCalendar text; ``InvalidIcs`` if it is not there or not readable."""
    try:
        calendar = Calendar.from_ical(text)
    except ValueError as exc:
        raise InvalidIcs(f"not iCalendar ({type(exc).__name__})") from None
    for vevent in calendar.events:
        if str(vevent.get("uid", "")) == uid:
            return _event(vevent, uid)
    raise InvalidIcs("no VEVENT with that uid")


def _event(vevent: Event, uid: str) -> CalendarEvent:
    try:
        start, end = vevent.start, vevent.end
    except Exception:  # icalendar raises its own error types for missing or inconsistent times
        raise InvalidIcs("the VEVENT has no usable DTSTART/DTEND") from None
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise InvalidIcs("the VEVENT is an all-day event")
    return CalendarEvent(
        uid=uid,
        summary=str(vevent.get("summary", "")),
        starts_at=start,
        ends_at=end,
        location=str(vevent.get("location", "")),
        description=str(vevent.get("description", "")),
        alarms=tuple(_alarms(vevent)),
        sequence=int(vevent.get("sequence", 0)),
        cancelled=str(vevent.get("status", "")).upper() == "CANCELLED",
    )


def _alarms(vevent: Event) -> Iterable[timedelta]:
    for alarm in vevent.walk("VALARM"):
        trigger = alarm.get("trigger")
        related = str(trigger.params.get("RELATED", "START")).upper() if trigger is not None else ""
        # Only start-relative offsets are ours; others (absolute, RELATED=END) came from elsewhere.
        if trigger is not None and isinstance(trigger.dt, timedelta) and related == "START":
            yield -trigger.dt


def feed_ics(texts: Iterable[str | bytes], *, name: str) -> str:
    """One VCALENDAR with every VEVENT of the given calendars, as a subscribable feed."""
    calendar = _calendar(name)
    for text in texts:
        for vevent in Calendar.from_ical(text).events:
            calendar.add_component(vevent)
    return bytes(calendar.to_ical()).decode()
