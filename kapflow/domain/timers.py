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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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


def add_business_days(start: datetime, days: int) -> datetime:
    """``start`` plus ``days`` weekdays (Saturday and Sunday skipped), same time of day."""
    moment = start
    left = days
    while left > 0:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            left -= 1
    return moment


def entered_at(facts: CaseFacts, opened_at: datetime) -> datetime:
    last = facts.last_move()
    return last.at if last else opened_at


def plan_timers(
    wf: Workflow, case_id: str, state: str, facts: CaseFacts, opened_at: datetime
) -> dict[str, PlannedTimer]:
    """Every timer the case should have while it is in ``state``, by key."""
    reminders = wf.state(state).reminders
    if not reminders:
        return {}
    entry = facts.move_count()
    since = entered_at(facts, opened_at)
    planned: dict[str, PlannedTimer] = {}
    for r in reminders:
        if r.after is not None:
            key = f"{case_id}:m{entry}:{r.name}"
            planned[key] = PlannedTimer(key, case_id, r.name, _after(since, r))
            continue
        assert r.before_appointment is not None and wf.appointments is not None  # validated with the workflow
        for appt in appointments(case_id, facts, wf.appointments).values():
            if appt.kind == r.appointment_kind and appt.active:
                key = f"{case_id}:{appt.id}:s{appt.sequence}:{r.name}"
                due = appt.starts_at - r.before_appointment
                planned[key] = PlannedTimer(key, case_id, r.name, due, appt.id, counts_back=True)
    return planned


def _after(since: datetime, r: Reminder) -> datetime:
    assert r.after is not None
    if r.business_days:
        whole_days = r.after.days
        return add_business_days(since, whole_days) + (r.after - timedelta(days=whole_days))
    return since + r.after
