"""Which reminders a case should have pending, as a pure function of its state and facts.

The engine computes the plan before and after every command and writes only
the difference: new keys become timer rows, keys that left the plan are
cancelled. Keys are stable, so planning is idempotent:

- a reminder counted from entering a state is keyed by that entry (the
  number of moves so far), so re-entering the state plans a fresh one;
- a reminder counted back from an appointment is keyed by the appointment and
  its change count, so a reschedule replaces it and a cancelled appointment
  drops it, while leaving and re-entering the state finds the same key (and
  never sends it twice).

It also holds the practice's calendar arithmetic (local dates, the same wall-clock time some days
on), which reminders counted in business days and the day-counting guards share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from kapflow.domain.appointments import appointments
from kapflow.domain.case import CaseFacts
from kapflow.domain.workflow import Reminder, Workflow


@dataclass(frozen=True)
class PlannedTimer:
    key: str
    case_id: str
    reminder: str
    due_at: datetime
    appointment_id: str | None = None
    counts_back: bool = False  # due before an appointment: not planned once already past


# --- the practice's calendar: rules that count days count its dates and wall-clock days, not 24-hour
# spans of UTC (a week after Monday 10:00 is the next Monday at 10:00 on its clocks, DST or not).


def local_date(moment: datetime, tz: tzinfo) -> date:
    """The practice's calendar date at ``moment``."""
    return moment.astimezone(tz).date()


def at_local_wall_time(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant of the naive local time ``wall`` in ``tz``.

    A time the clocks skip (02:30 on a spring-forward night) is read with the offset before the
    change, so it lands as long after midnight as it says (03:30 the new time); a time they repeat
    (01:30 on a fall-back night) is its first occurrence.
    """
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def local_days_later(moment: datetime, days: int, tz: tzinfo) -> datetime:
    """``days`` calendar days after ``moment`` at the same wall-clock time in ``tz``, as a UTC instant."""
    wall = moment.astimezone(tz).replace(tzinfo=None)
    return at_local_wall_time(wall + timedelta(days=days), tz)


def local_start_of_day(day: date, tz: tzinfo) -> datetime:
    """The UTC instant the practice's calendar date ``day`` begins."""
    return at_local_wall_time(datetime(day.year, day.month, day.day), tz)


def local_time_text(moment: datetime, tz: tzinfo) -> str:
    """``moment`` as the practice reads it, with its zone's abbreviation: ``2026-03-09 10:00 EDT``."""
    shown = moment.astimezone(tz)
    return f"{shown:%Y-%m-%d %H:%M} {shown.tzname() or ''}".rstrip()


def add_business_days(start: datetime, days: int, tz: tzinfo = UTC) -> datetime:
    """``start`` plus ``days`` business days on the calendar of ``tz``, at the same local time (a UTC instant).

    Weekdays are the practice's: Saturday and Sunday are skipped as they fall in ``tz``, and the
    result keeps ``start``'s wall-clock time there, across a DST change as well (a Friday 21:00
    EST start lands on Tuesday 21:00 EDT). ``tz`` defaults to UTC, the calendar of a practice
    that names no zone.
    """
    wall = start.astimezone(tz).replace(tzinfo=None)
    left = days
    while left > 0:
        wall += timedelta(days=1)
        if wall.weekday() < 5:
            left -= 1
    return at_local_wall_time(wall, tz)


def entered_at(facts: CaseFacts, opened_at: datetime) -> datetime:
    last = facts.last_move()
    return last.at if last else opened_at


def plan_timers(
    wf: Workflow, case_id: str, state: str, facts: CaseFacts, opened_at: datetime, tz: tzinfo = UTC
) -> dict[str, PlannedTimer]:
    """Every timer the case should have while it is in ``state``, by key.

    ``tz`` is the practice's time zone: a reminder due ``after`` business days counts them on its
    calendar (see ``add_business_days``). Other delays are elapsed time: ``after`` without business
    days and ``before_appointment`` are exact spans (24 hours before an appointment is 24 hours).
    """
    reminders = wf.state(state).reminders
    if not reminders:
        return {}
    entry = facts.move_count()
    since = entered_at(facts, opened_at)
    planned: dict[str, PlannedTimer] = {}
    for r in reminders:
        if r.after is not None:
            key = f"{case_id}:m{entry}:{r.name}"
            planned[key] = PlannedTimer(key, case_id, r.name, _after(since, r, tz))
            continue
        assert r.before_appointment is not None and wf.appointments is not None  # validated with the workflow
        for appt in appointments(case_id, facts, wf.appointments).values():
            if appt.kind == r.appointment_kind and appt.active:
                key = f"{case_id}:{appt.id}:s{appt.sequence}:{r.name}"
                due = appt.starts_at - r.before_appointment
                planned[key] = PlannedTimer(key, case_id, r.name, due, appt.id, counts_back=True)
    return planned


def _after(since: datetime, r: Reminder, tz: tzinfo) -> datetime:
    assert r.after is not None
    if r.business_days:  # whole business days on the local calendar, then any part of a day as elapsed time
        whole_days = r.after.days
        return add_business_days(since, whole_days, tz) + (r.after - timedelta(days=whole_days))
    return since + r.after
