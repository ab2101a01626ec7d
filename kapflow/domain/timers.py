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

Reminders of the workflow itself (an appointment's reminders, notices of its changes, prompts
counted from a moment) are planned whatever the case's state: leaving a state and coming back
never drops them. Counted from a moment, the key carries the moment, so a new one (another
session, a new prescription) replaces the prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from kapflow.domain.appointments import Appointment, AppointmentFacts, appointments
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
from kapflow.domain.case import CaseFacts, to_iso
from kapflow.domain.workflow import Reminder, Workflow


@dataclass(frozen=True)
class PlannedTimer:
    key: str
    case_id: str
    reminder: str
    due_at: datetime
    appointment_id: str | None = None
    counts_back: bool = False  # due before an appointment: booked too late for it, it is recorded skipped
    deadline: datetime | None = None  # its message is worth nothing from then on (its appointment's start)
    catch_up: bool = False  # counted from a moment: planned late, it is due at once rather than missed


def entered_at(facts: CaseFacts, opened_at: datetime) -> datetime:
    last = facts.last_move()
    return last.at if last else opened_at


def plan_timers(
    wf: Workflow, case_id: str, state: str, facts: CaseFacts, opened_at: datetime,
    cal: PracticeCalendar = UTC_CALENDAR,
) -> dict[str, PlannedTimer]:
    """Every timer the case should have while it is in ``state``, by key.

    The state's own reminders, then the workflow's (those of the case's appointments, notices of
    their changes, prompts counted from a moment), which follow the case whatever its state; a
    closed case keeps only the notices. ``cal`` is the practice's calendar: delays of whole days
    count its days (business days skip its weekends and closed days), hours are elapsed time.
    """
    here = wf.state(state)
    reminders = here.reminders + (tuple(r for r in wf.reminders if r.on_appointment) if here.final else wf.reminders)
    if not reminders:
        return {}
    planned: dict[str, PlannedTimer] = {}
    for r in reminders:
        for timer in _timers_of(wf, r, case_id, facts, opened_at, cal):
            planned[timer.key] = timer
    return planned


def _timers_of(
    wf: Workflow, r: Reminder, case_id: str, facts: CaseFacts, opened_at: datetime, cal: PracticeCalendar
) -> Iterator[PlannedTimer]:
    if r.since is not None:
        moment = wf.moments[r.since](facts, cal)
        if moment is not None:
            assert r.after is not None  # validated with the workflow
            key = f"{case_id}:{r.since}@{to_iso(moment)}:{r.name}"
            yield PlannedTimer(key, case_id, r.name, cal.later(moment, r.after), catch_up=True)
    elif r.after is not None:
        key = f"{case_id}:m{facts.move_count()}:{r.name}"
        yield PlannedTimer(key, case_id, r.name, _after(entered_at(facts, opened_at), r, cal))
    else:
        yield from _appointment_timers(wf, r, case_id, facts, cal)


def _appointment_timers(
    wf: Workflow, r: Reminder, case_id: str, facts: CaseFacts, cal: PracticeCalendar
) -> Iterator[PlannedTimer]:
    assert wf.appointments is not None  # validated with the workflow
    for appt in appointments(case_id, facts, wf.appointments).values():
        if r.appointment_kind is not None and appt.kind != r.appointment_kind:
            continue
        key = f"{case_id}:{appt.id}:s{appt.sequence}:{r.name}"
        if r.before_appointment is not None:
            if appt.active:
                due = appt.starts_at - r.before_appointment  # a lead before an appointment is elapsed time
                # A lead before the start must arrive before it; a step after the start has no deadline.
                deadline = appt.starts_at if r.before_appointment > timedelta(0) else None
                yield PlannedTimer(key, case_id, r.name, due, appt.id, counts_back=True, deadline=deadline)
        elif r.on_appointment == appointment_event(appt):
            changed = last_changes(case_id, facts, wf.appointments).get(appt.id, appt.booked_at)
            yield PlannedTimer(key, case_id, r.name, changed, appt.id, deadline=appt.starts_at)


def appointment_event(appt: Appointment) -> str | None:
    """What last happened to ``appt`` that its client hears of: booked, moved or cancelled (else None)."""
    if appt.status == "cancelled":
        return "cancelled"
    if appt.status == "booked":
        return "booked" if appt.sequence == 0 else "moved"
    return None  # attended, no-show: nothing to tell


def last_changes(case_id: str, facts: CaseFacts, carriers: AppointmentFacts) -> dict[str, datetime]:
    """When each appointment last changed (booked, moved, cancelled...), by id."""
    return facts.derived((last_changes, carriers.booking, carriers.update),
                         lambda f: _fold_changes(f, carriers))


def _fold_changes(facts: CaseFacts, carriers: AppointmentFacts) -> dict[str, datetime]:
    changed: dict[str, datetime] = {}
    for fact in facts.of_kinds((carriers.booking, carriers.update)):
        if fact.kind == carriers.booking:
            changed[f"a{len(changed) + 1}"] = fact.at
        elif str(fact.data.get("appointment")) in changed:
            changed[str(fact.data["appointment"])] = fact.at
    return changed


def _after(since: datetime, r: Reminder, cal: PracticeCalendar) -> datetime:
    assert r.after is not None
    if r.business_days:  # whole business days on the local calendar, then any part of a day as elapsed time
        whole_days = r.after.days
        return cal.add_business_days(since, whole_days) + (r.after - timedelta(days=whole_days))
    return cal.later(since, r.after)
