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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from kapflow.domain.appointments import Appointment, AppointmentFacts, appointments
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
from kapflow.domain.case import EVERY_MOVE, CaseFacts
from kapflow.domain.entries import to_iso
from kapflow.domain.workflow import ReadingMoment, Reminder, Workflow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)  # slots: a kept case holds a dozen, each one object for the cycle collector
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
    planned = _planned_for(wf, here.reminders, case_id, facts, opened_at, cal) if here.reminders else {}
    for key, timer in _workflow_timers(wf, here.final, case_id, facts, cal).items():
        planned[key] = timer
    return planned


def _workflow_timers(
    wf: Workflow, final: bool, case_id: str, facts: CaseFacts, cal: PracticeCalendar,
) -> dict[str, PlannedTimer]:
    """The timers of the workflow's own reminders (of a closed case: only the notices of appointments' changes),
    kept with the projection while nothing they are planned from changes, when every moment they count from says
    what it reads (``ReadingMoment``): they follow no state, so most commands leave them as they were."""
    reminders, reads = _workflow_reminders(wf, final)
    if not reminders:
        return {}

    def plan(f: CaseFacts) -> dict[str, PlannedTimer]:
        return _planned_for(wf, reminders, case_id, f, None, cal)

    if reads is None:
        return plan(facts)
    return _kept(facts, (_workflow_timers, case_id, final), (wf, cal), plan, reads)


Reads = tuple[frozenset[str], frozenset[str]]
"""The fact kinds and the triggers of the moves a plan is worked out from."""

_PER_WORKFLOW: dict[tuple[object, int, object], tuple[Workflow, Any]] = {}


def _once_per_workflow(what: Callable[..., T], wf: Workflow, arg: object) -> T:
    """``what(wf, arg)``, worked out once per workflow (held with it: ids are reused once an object is gone)."""
    key = (what, id(wf), arg)
    found = _PER_WORKFLOW.get(key)
    if found is not None and found[0] is wf:
        return cast(T, found[1])
    value = what(wf, arg)
    if len(_PER_WORKFLOW) > 256:
        _PER_WORKFLOW.clear()  # workflows built on the fly (tests): a cache, not a record
    _PER_WORKFLOW[key] = (wf, value)
    return value


def _workflow_reminders(wf: Workflow, final: bool) -> tuple[tuple[Reminder, ...], Reads | None]:
    """The workflow's reminders a case in a final state (or not) plans, and what they are planned from
    (``_reads_of``): worked out once per workflow."""
    return _once_per_workflow(_find_workflow_reminders, wf, final)


def _find_workflow_reminders(wf: Workflow, final: bool) -> tuple[tuple[Reminder, ...], Reads | None]:
    reminders = tuple(r for r in wf.reminders if r.on_appointment) if final else wf.reminders
    return reminders, _reads_of(wf, reminders)


def _reads_of(wf: Workflow, reminders: tuple[Reminder, ...]) -> Reads | None:
    """What the timers of ``reminders`` are planned from: their moments' reads, their appointments' facts and,
    for a reminder counted from entering the state, every move (its key counts them); None when a moment among
    them does not say what it reads."""
    kinds: set[str] = set()
    triggers: set[str] = set()
    every_move = False
    for r in reminders:
        moment = wf.moments[r.since] if r.since is not None else None
        if moment is not None and not isinstance(moment, ReadingMoment):
            return None
        if moment is not None:
            kinds |= moment.facts
            triggers |= moment.moves
        elif r.after is not None:
            every_move = True
        elif wf.appointments is not None:
            kinds |= {wf.appointments.booking, wf.appointments.update}
    return frozenset(kinds), EVERY_MOVE if every_move else frozenset(triggers)


def _plan_reads(wf: Workflow, state: str) -> Reads | None:
    """What the whole plan of a case in ``state`` is planned from (its state's reminders and the workflow's), or
    None when a moment among them does not say: worked out once per workflow and state."""
    return _once_per_workflow(_find_plan_reads, wf, state)


def _find_plan_reads(wf: Workflow, state: str) -> Reads | None:
    here = wf.state(state)
    own = _reads_of(wf, here.reminders)
    workflow = _workflow_reminders(wf, here.final)[1]
    if own is None or workflow is None:
        return None
    return own[0] | workflow[0], _either(own[1], workflow[1])


def _either(moves: frozenset[str], more: frozenset[str]) -> frozenset[str]:
    """The moves a view reads that reads both ``moves`` and ``more``."""
    return EVERY_MOVE if moves is EVERY_MOVE or more is EVERY_MOVE else moves | more


def _planned_for(
    wf: Workflow, reminders: tuple[Reminder, ...], case_id: str, facts: CaseFacts, opened_at: datetime | None,
    cal: PracticeCalendar,
) -> dict[str, PlannedTimer]:
    """The timers ``reminders`` plan for the case (``opened_at``: when it was opened, for a state's reminders)."""
    planned: dict[str, PlannedTimer] = {}
    by_appointment: list[Reminder] = []
    moments: dict[str, datetime | None] = {}  # several reminders may count from one moment: computed once
    entered: datetime | None = None  # and several from entering the state (its last move parsed once)
    for r in reminders:
        if r.since is not None:
            if r.since not in moments:
                moments[r.since] = moment_at(wf, r.since, facts, cal)
            timer = _since_timer(r, case_id, moments[r.since], cal)
        elif r.after is not None:
            assert opened_at is not None  # only a state's reminders count from entering it (validated)
            entered = entered or entered_at(facts, opened_at)
            timer = PlannedTimer(f"{case_id}:m{facts.move_count()}:{r.name}", case_id, r.name, _after(entered, r, cal))
        else:
            by_appointment.append(r)
            continue
        if timer is not None:
            planned[timer.key] = timer
    if by_appointment:
        assert wf.appointments is not None  # validated with the workflow
        # Most of a workflow's reminders are its appointments'; most cases have none booked or cancelled now.
        for appt in _live(case_id, facts, wf.appointments):
            for r in by_appointment:
                if r.appointment_kind is None or r.appointment_kind == appt.kind:
                    timer = _appointment_timer(wf, r, case_id, facts, appt)
                    if timer is not None:
                        planned[timer.key] = timer
    return planned


def moment_at(wf: Workflow, name: str, facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """The workflow's moment ``name`` on the case: kept with the projection when it says what it reads."""
    moment = wf.moments[name]
    if not isinstance(moment, ReadingMoment):
        return moment(facts, cal)
    return _kept(facts, (moment_at,), (moment, cal), lambda f: moment.compute(f, cal), (moment.facts, moment.moves))


def planned(
    wf: Workflow, case_id: str, state: str, facts: CaseFacts, opened_at: datetime,
    cal: PracticeCalendar = UTC_CALENDAR,
) -> dict[str, PlannedTimer]:
    """``plan_timers``, kept with the projection (do not modify it): a command plans the case before and
    after it, and the plan before is the one the command before planned after, on the same projection. When
    every moment the plan counts from says what it reads, a projection one more fact or move makes keeps the
    plan unless the plan reads it (``_plan_reads``): recording a fact no reminder counts from (vitals, a
    payment, a charge posted) plans nothing again."""
    return _kept(facts, (plan_timers, case_id, state, opened_at), (wf, cal),
                 lambda f: plan_timers(wf, case_id, state, f, opened_at, cal), _plan_reads(wf, state))


def _kept(facts: CaseFacts, key: tuple[object, ...], owners: tuple[object, object], compute: Callable[[CaseFacts], T],
          reads: Reads | None = None) -> T:
    """``compute(facts)``, kept with the projection (``CaseFacts.derived``: ``reads`` its ``reads`` and ``moves``;
    None, kept with this projection alone) under ``key`` and the ids of ``owners`` (the workflow or moment and the
    calendar it was worked out with)."""
    kinds, moves = reads if reads is not None else (None, frozenset[str]())
    kept = facts.derived((*key, *map(id, owners)), lambda f: (*owners, compute(f)), reads=kinds, moves=moves)
    if kept[0] is owners[0] and kept[1] is owners[1]:  # ids are reused once an object is gone: the objects decide
        return kept[2]
    return compute(facts)


class _Remembered:
    """The timers reminders planned last, by what each was planned from: a command plans its case before and
    after it, and most of a case's timers (its appointments', its prompts counted from a moment) come out the
    same every time; working each out again (a key formatted, a date counted on the practice's calendar) was
    a tenth of a fire. A timer depends on nothing but what its key here holds, so one found is the one that
    would be planned; the reminder and the calendar are held with it, as their ids may be reused once gone.
    """

    SIZE = 4096  # timers: a few hundred cases' worth; all forgotten when full (a cache, not a record)

    def __init__(self) -> None:
        self._timers: dict[tuple[object, ...], tuple[Reminder, object, PlannedTimer | None]] = {}

    def get(self, key: tuple[object, ...], r: Reminder, source: object) -> tuple[bool, PlannedTimer | None]:
        found = self._timers.get(key)
        if found is None or found[0] is not r or found[1] is not source:
            return False, None
        return True, found[2]

    def put(self, key: tuple[object, ...], r: Reminder, source: object, timer: PlannedTimer | None) -> None:
        if len(self._timers) >= self.SIZE:
            self._timers.clear()  # safe under threads: a lookup that misses plans the timer again
        self._timers[key] = (r, source, timer)


_REMEMBERED = _Remembered()


def _since_timer(r: Reminder, case_id: str, moment: datetime | None, cal: PracticeCalendar) -> PlannedTimer | None:
    if moment is None:
        return None
    key = (id(r), id(cal), case_id, moment)
    found, timer = _REMEMBERED.get(key, r, cal)
    if not found:
        assert r.since is not None and r.after is not None  # validated with the workflow
        timer = PlannedTimer(f"{case_id}:{r.since}@{to_iso(moment)}:{r.name}", case_id, r.name,
                             cal.later(moment, r.after), catch_up=True)
        _REMEMBERED.put(key, r, cal, timer)
    return timer


def _appointment_timer(
    wf: Workflow, r: Reminder, case_id: str, facts: CaseFacts, appt: Appointment
) -> PlannedTimer | None:
    assert wf.appointments is not None  # validated with the workflow
    changed = None
    if r.before_appointment is None and r.on_appointment == appointment_event(appt):
        changed = appt.changed_at or appt.booked_at
    key = (id(r), case_id, appt, changed)
    found, timer = _REMEMBERED.get(key, r, None)
    if not found:
        timer = _for_appointment(r, case_id, appt, changed)
        _REMEMBERED.put(key, r, None, timer)
    return timer


def _for_appointment(r: Reminder, case_id: str, appt: Appointment, changed: datetime | None) -> PlannedTimer | None:
    """The timer ``r`` plans for ``appt`` (``changed``: when it last changed, for a notice of the change)."""
    key = f"{case_id}:{appt.id}:s{appt.sequence}:{r.name}"
    if r.before_appointment is not None:
        if not appt.active:
            return None
        due = appt.starts_at - r.before_appointment  # a lead before an appointment is elapsed time
        # A lead before the start must arrive before it; a step after the start has no deadline.
        deadline = appt.starts_at if r.before_appointment > timedelta(0) else None
        return PlannedTimer(key, case_id, r.name, due, appt.id, counts_back=True, deadline=deadline)
    if changed is not None:
        return PlannedTimer(key, case_id, r.name, changed, appt.id, deadline=appt.starts_at)
    return None


def _live(case_id: str, facts: CaseFacts, carriers: AppointmentFacts) -> list[Appointment]:
    """The appointments a reminder may be planned for: booked (reminders before it, notices of its booking or
    move) or cancelled (the notice of it). Attended and missed ones plan nothing, and a year-old case has
    dozens: planning skips them without looking."""
    kinds = frozenset((carriers.booking, carriers.update))
    return facts.derived((_live, case_id, carriers.booking, carriers.update),
                         lambda f: appointments(case_id, f, carriers).select(_LIVE), reads=kinds)


_LIVE = frozenset(("booked", "cancelled"))


def appointment_event(appt: Appointment) -> str | None:
    """What last happened to ``appt`` that its client hears of: booked, moved or cancelled (else None)."""
    if appt.status == "cancelled":
        return "cancelled"
    if appt.status == "booked":
        return "booked" if appt.sequence == 0 else "moved"
    return None  # attended, no-show: nothing to tell


def _after(since: datetime, r: Reminder, cal: PracticeCalendar) -> datetime:
    assert r.after is not None
    if r.business_days:  # whole business days on the local calendar, then any part of a day as elapsed time
        whole_days = r.after.days
        return cal.add_business_days(since, whole_days) + (r.after - timedelta(days=whole_days))
    return cal.later(since, r.after)
