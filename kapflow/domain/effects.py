"""What a committed change asks of the outside world: timers to plan or cancel, calendar changes to send.

Computed from the case before and after a command, purely; the engine writes
the result in the command's own transaction (timer rows, outbox rows), so
nothing reaches the outside world for a change that did not commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from kapflow.domain.appointments import Appointment, appointments
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
from kapflow.domain.case import CaseRecord
from kapflow.domain.entries import to_iso
from kapflow.domain.timers import PlannedTimer, planned
from kapflow.domain.workflow import Workflow

CALENDAR = "calendar"
PRACTICE = "practice"
CALENDAR_ALARMS = (timedelta(hours=24),)
NEUTRAL_SUMMARY = "Appointment at the practice"
"""What a calendar event says: calendars are often shared, so it never names the treatment or the client."""


@dataclass(frozen=True)
class OutboxMessage:
    """A row for the outbox: ``key`` is stable, so writing it twice is impossible."""

    key: str
    case_id: str
    channel: str
    audience: str
    recipient: str
    subject: str
    body: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CalendarChange:
    """An appointment's calendar event as the outbox carries it (``payload``) to the calendar adapter."""

    uid: str
    summary: str
    starts_at: datetime
    ends_at: datetime
    location: str
    description: str
    alarms: tuple[timedelta, ...]
    sequence: int
    cancelled: bool

    def as_payload(self) -> dict[str, Any]:
        """JSON-ready; the outbox row's ``payload`` (its keys are the stored format: keep them)."""
        return {
            "uid": self.uid, "summary": self.summary, "starts_at": to_iso(self.starts_at),
            "ends_at": to_iso(self.ends_at), "location": self.location, "description": self.description,
            "alarms_minutes": [int(a.total_seconds() // 60) for a in self.alarms], "sequence": self.sequence,
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CalendarChange:
        return cls(
            uid=str(payload["uid"]), summary=str(payload["summary"]),
            starts_at=datetime.fromisoformat(str(payload["starts_at"])),
            ends_at=datetime.fromisoformat(str(payload["ends_at"])),
            location=str(payload.get("location", "")), description=str(payload.get("description", "")),
            alarms=tuple(timedelta(minutes=int(m)) for m in payload.get("alarms_minutes", ())),
            sequence=int(payload.get("sequence", 0)), cancelled=bool(payload.get("cancelled", False)),
        )


@dataclass(frozen=True)
class SkippedTimer:
    """A reminder whose moment had passed when it was planned: recorded as skipped, with the reason."""

    timer: PlannedTimer
    reason: str


@dataclass(frozen=True)
class Effects:
    """Timers to cancel (by key), to plan, to re-time (same key, new due time), to record as skipped,
    and outbox rows to add."""

    cancel: tuple[str, ...] = ()
    plan: tuple[PlannedTimer, ...] = ()
    outbox: tuple[OutboxMessage, ...] = ()
    retime: tuple[PlannedTimer, ...] = ()
    skip: tuple[SkippedTimer, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.cancel or self.plan or self.outbox or self.retime or self.skip)


def effects_of(
    wf: Workflow, before: CaseRecord | None, after: CaseRecord, *, calendar: bool = False,
    before_wf: Workflow | None = None, cal: PracticeCalendar = UTC_CALENDAR,
) -> Effects:
    """The timers (and, with ``calendar``, calendar messages) that follow ``before`` becoming ``after``.

    ``wf`` is the workflow of ``after``; ``before_wf`` that of ``before`` when it differs (a migration).
    ``cal`` is the practice's calendar, whose days reminders are counted on.
    """
    quiet_before = before is None or not _plans_any(before_wf or wf, before.state)
    if not calendar and quiet_before and not _plans_any(wf, after.state):
        return Effects()  # no reminders on either side: nothing to plan or cancel
    # The plan before first: the projection after extends the one before, and takes the views that one works out
    # (the appointments, the facts parsed) by stepping them, instead of folding a long case a second time.
    planned_before: dict[str, PlannedTimer] = {} if before is None else planned(
        before_wf or wf, before.id, before.state, before.projection, before.opened_at, cal)
    appts_before: Mapping[str, Appointment] = {}
    if calendar and before is not None and wf.appointments:  # what the calendar changes are counted from
        appts_before = appointments(before.id, before.projection, wf.appointments)
    after_facts = after.projection
    planned_after = planned(wf, after.id, after.state, after_facts, after.opened_at, cal)
    if planned_after is planned_before and not calendar:
        return Effects()  # the plan carried over to the new projection (``planned``): the same timers
    now = after.updated_at  # the command's instant
    cancel = tuple(sorted(k for k in planned_before if k not in planned_after))
    new = [_caught_up(t, now) for k, t in sorted(planned_after.items()) if k not in planned_before]
    skip = tuple(SkippedTimer(t, why) for t in new if (why := _too_late(t, now, cal)) is not None)
    skipped = {s.timer.key for s in skip}
    plan = tuple(t for t in new if t.key not in skipped)
    # Same key, another due time: only a new workflow version re-times a reminder (a migration);
    # re-timed to a moment already past, it keeps the time it had.
    retime = tuple(
        t for k, t in sorted(planned_after.items())
        if k in planned_before and planned_before[k].due_at != t.due_at and _too_late(t, now, cal) is None
        and not (t.catch_up and t.due_at < now)
    )
    if not calendar or wf.appointments is None:
        return Effects(cancel, plan, retime=retime, skip=skip)
    changed = appointments(after.id, after_facts, wf.appointments).changed_since(appts_before)
    return Effects(cancel, plan, tuple(calendar_message(a) for a in changed), retime, skip)


def _plans_any(wf: Workflow, state: str) -> bool:
    return bool(wf.state(state).reminders or wf.reminders)


def _caught_up(timer: PlannedTimer, now: datetime) -> PlannedTimer:
    """A prompt counted from a moment and planned after its time is due now (not found missed later)."""
    return replace(timer, due_at=now) if timer.catch_up and timer.due_at < now else timer


def _too_late(timer: PlannedTimer, now: datetime, cal: PracticeCalendar) -> str | None:
    """Why a reminder planned now is pointless (its moment has passed), or None.

    A reminder counting back from an appointment booked too late for it (an evaluation booked two
    hours ahead gets no 24-hour reminder), or any message about an appointment that has already
    started, is recorded as skipped with this reason rather than sent late or dropped unseen.
    """
    if timer.deadline is not None and now >= timer.deadline:
        return f"the appointment had already started ({cal.time_text(timer.deadline)})"
    if timer.counts_back and timer.due_at < now:
        return f"booked after its moment ({cal.time_text(timer.due_at)})"
    return None


def calendar_message(appt: Appointment) -> OutboxMessage:
    """The calendar change for an appointment's current version (its key carries the SEQUENCE)."""
    change = CalendarChange(
        uid=appt.uid,
        summary=NEUTRAL_SUMMARY,
        starts_at=appt.starts_at,
        ends_at=appt.ends_at,
        location=appt.location.replace("_", " "),
        description=f"kapflow case {appt.case_id}, appointment {appt.id}",
        alarms=CALENDAR_ALARMS,
        sequence=appt.sequence,
        cancelled=appt.status == "cancelled",
    )
    return OutboxMessage(
        key=f"{appt.uid}:s{appt.sequence}:{appt.status}",
        case_id=appt.case_id,
        channel=CALENDAR,
        audience=PRACTICE,
        recipient="",
        subject=change.summary,
        body="",
        payload=change.as_payload(),
    )

