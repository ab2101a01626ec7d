"""Acting on a due timer: queue its message (or fire its trigger), or record why not.

A batch of claimed timers is settled in one transaction, each timer together
with its audit event and its outbox row, and only by the worker holding its
lease: a timer is turned into a message at most once, and a message row is
keyed so it cannot be queued twice. One commit per batch, not per timer: the
disk's flush at each commit would otherwise be most of a reminder's cost. If
the batch fails as a whole (the case changed under it, the database refused
it), nothing of it is kept and each timer is settled again in a transaction
of its own. What happened is always recorded, never silently dropped:
``done`` (queued or fired), ``skipped`` (its rule already holds: the fee was
paid), ``missed`` (overdue beyond its grace: the worker was down too long),
``undeliverable`` (no address for its audience), ``cancelled`` (no longer
planned: the case moved on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kapflow.domain.appointments import Appointment, appointments, upcoming
from kapflow.domain.case import Actor, CaseFacts, CaseRecord
from kapflow.domain.errors import Refused
from kapflow.domain.messages import recipient, reminder_message
from kapflow.domain.timers import plan_timers
from kapflow.domain.workflow import GuardContext, Reminder, Workflow
from kapflow.engine import Engine, LostRace
from kapflow.errors import StorageError
from kapflow.logging import get_logger
from kapflow.ports import TimerClaim, UnitOfWork

SYSTEM_ROLE = "system"
_RETRIES = 5
_log = get_logger("kapflow.reminders")


@dataclass(frozen=True)
class TimerOutcome:
    status: str  # done | skipped | missed | undeliverable | cancelled | lost
    detail: str


def act_on_timers(engine: Engine, claims: Sequence[TimerClaim], worker: str) -> list[TimerOutcome]:
    """Settle a batch of claimed timers in one transaction; one by one if the batch fails as a whole.

    Cases are locked in the order of their ids, so workers settling batches that share cases
    cannot deadlock. Triggers to fire are fired after the commit, each as its own command.
    """
    ordered = sorted(claims, key=lambda c: (c.case_id, c.id))
    try:
        with engine.store.write() as uow:
            settled = [_settle(engine, uow, claim, worker) for claim in ordered]
            uow.commit()
    except (LostRace, StorageError) as failed:
        # Nothing of the batch was kept; each timer is settled again in a transaction of its own.
        _log.warning("timer_batch_retried_one_by_one", count=len(ordered), error=type(failed).__name__)
        return [act_on_timer(engine, claim, worker) for claim in ordered]
    return [_after_commit(engine, claim, worker, outcome) for claim, outcome in zip(ordered, settled, strict=True)]


def act_on_timer(engine: Engine, claim: TimerClaim, worker: str) -> TimerOutcome:
    """Settle one claimed timer in a transaction of its own; retried if the case changes under it."""
    for _attempt in range(_RETRIES):
        try:
            with engine.store.write() as uow:
                outcome = _settle(engine, uow, claim, worker)
                uow.commit()
        except LostRace:
            continue
        return _after_commit(engine, claim, worker, outcome)
    return TimerOutcome("lost", "the case kept changing; the timer stays claimed and will be retried")


def _after_commit(engine: Engine, claim: TimerClaim, worker: str, outcome: TimerOutcome) -> TimerOutcome:
    if outcome.status == "fire":
        return _fire(engine, claim, worker, outcome.detail)
    if outcome.status != "lost":
        _log.info("timer_settled", case_id=claim.case_id, status=outcome.status, timer_id=claim.id)
    return outcome


def _settle(engine: Engine, uow: UnitOfWork, claim: TimerClaim, worker: str) -> TimerOutcome:
    """Write what the timer comes to in ``uow`` (the caller commits); a trigger to fire is left to the caller."""
    case = uow.load_case(claim.case_id)
    if case is None:
        return _close(uow, claim, worker, engine, TimerOutcome("cancelled", "the case no longer exists"))
    wf = engine.workflow_of(case)
    facts = case.projection
    now = engine.clock.now()
    if claim.key not in plan_timers(wf, case.id, case.state, facts, case.opened_at):
        return _close(uow, claim, worker, engine, TimerOutcome("cancelled", "no longer planned"))
    reminder = next(r for r in wf.state(case.state).reminders if r.name == claim.reminder)
    verdict = _verdict(engine, wf, case, facts, reminder, claim, now)
    if verdict is not None:
        return _note_and_close(engine, uow, case, claim, worker, reminder, verdict)
    if reminder.fires:
        return TimerOutcome("fire", reminder.fires)
    return _queue_message(engine, uow, case, wf, facts, claim, worker, reminder)


def _verdict(
    engine: Engine, wf: Workflow, case: CaseRecord, facts: CaseFacts, reminder: Reminder,
    claim: TimerClaim, now: datetime,
) -> TimerOutcome | None:
    if reminder.while_blocked_by:  # first: a reminder whose rule holds is not missed, just not needed
        ctx = GuardContext(case.id, case.state, reminder.name, facts, now, wf.thresholds, tz=engine.timezone)
        if wf.guards[reminder.while_blocked_by](ctx) is None:
            return TimerOutcome("skipped", f"{reminder.while_blocked_by} holds now")
    late = now - claim.due_at
    if late > reminder.grace:
        return TimerOutcome("missed", f"due {claim.due_at.isoformat()}, {int(late.total_seconds() // 60)} minutes late")
    return None


def _queue_message(
    engine: Engine, uow: UnitOfWork, case: CaseRecord, wf: Workflow, facts: CaseFacts,
    claim: TimerClaim, worker: str, reminder: Reminder,
) -> TimerOutcome:
    address = recipient(reminder.audience, reminder.channel, facts, engine.contacts, wf.intake_fact)
    if not address:
        verdict = TimerOutcome("undeliverable", f"no {reminder.channel} address for {reminder.audience}")
        return _note_and_close(engine, uow, case, claim, worker, reminder, verdict)
    appt = _appointment_for(case, facts, claim, reminder, engine.clock.now())
    message = reminder_message(
        reminder, timer_key=claim.key, case_id=case.id, address=address, appointment=appt,
        facts=facts, intake_kind=wf.intake_fact, tz=engine.timezone,
    )
    verdict = TimerOutcome("done", f"queued {reminder.channel} message for {reminder.audience}")
    closed = _note_and_close(engine, uow, case, claim, worker, reminder, verdict)
    if closed.status != "lost":  # only the worker holding the timer queues its message
        uow.add_outbox(message, engine.clock.now())
    return closed


def _appointment_for(
    case: CaseRecord, facts: CaseFacts, claim: TimerClaim, reminder: Reminder, now: datetime
) -> Appointment | None:
    """The appointment a message speaks of: the timer's own, else the next one of the reminder's kind."""
    if claim.appointment_id:
        return appointments(case.id, facts).get(claim.appointment_id)
    if reminder.appointment_kind:
        ahead = upcoming(case.id, facts, reminder.appointment_kind, now)
        return ahead[0] if ahead else None
    return None


def _note_and_close(
    engine: Engine, uow: UnitOfWork, case: CaseRecord, claim: TimerClaim, worker: str,
    reminder: Reminder, outcome: TimerOutcome,
) -> TimerOutcome:
    closed = _close(uow, claim, worker, engine, outcome)
    if closed.status != "lost":  # written only once the timer is known to be this worker's
        data = {"reminder": reminder.name, "timer": claim.key, "outcome": outcome.status, "detail": outcome.detail}
        event = engine.audit_event(case, Actor(worker, SYSTEM_ROLE), "reminder", data=data)
        engine.append_note(uow, case, event)
    return closed


def _close(uow: UnitOfWork, claim: TimerClaim, worker: str, engine: Engine, outcome: TimerOutcome) -> TimerOutcome:
    """Close the timer with ``outcome``, first of a timer's writes: "lost" if another worker holds it now."""
    if not uow.finish_timer(claim.id, worker, outcome.status, outcome.detail, engine.clock.now()):
        return TimerOutcome("lost", "another worker took this timer over")
    return outcome


def _fire(engine: Engine, claim: TimerClaim, worker: str, trigger: str) -> TimerOutcome:
    """Fire the reminder's trigger (idempotent on the timer's key), then close the timer."""
    try:
        engine.fire(claim.case_id, trigger, actor=Actor(worker, SYSTEM_ROLE), idempotency_key=f"timer:{claim.id}")
        outcome = TimerOutcome("done", f"fired {trigger}")
    except Refused as refused:
        outcome = TimerOutcome("skipped", f"{trigger} refused: {refused.code}")
    with engine.store.write() as uow:
        closed = _close(uow, claim, worker, engine, outcome)
        uow.commit()
    if closed.status != "lost":
        _log.info("timer_settled", case_id=claim.case_id, status=closed.status, timer_id=claim.id)
    return closed
