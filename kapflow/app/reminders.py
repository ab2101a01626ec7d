"""Acting on a due timer: queue its message (or fire its trigger), or record why not.

A batch of claimed timers is settled in one transaction, each timer together
with its audit event and its outbox row, and only by the worker holding its
lease: a timer is turned into a message at most once, and a message row is
keyed so it cannot be queued twice. One commit per batch, not per timer: the
disk's flush at each commit would otherwise be most of a reminder's cost. If
the batch fails as a whole (the case changed under it, the database refused
it), nothing of it is kept and each timer is settled again in a transaction
of its own. What happened is always recorded, never silently dropped (see
``TimerStatus``).

A timer whose settlement raises (a bug, a row edited by hand) must not stop the
others: the attempt is recorded on its row, which stays claimed until its
backoff ends, and after ``TimerRetry.attempts`` failures it is parked as
``failed`` with a note on its case's audit history (``kapflow timers --failed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from kapflow.app.cases import fire
from kapflow.app.context import AppContext
from kapflow.app.events import note_event
from kapflow.app.runner import ONCE, Transaction
from kapflow.domain.appointments import STANDARD, Appointment, appointments, upcoming
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import Actor, CaseFacts, CaseRecord
from kapflow.domain.entries import to_iso
from kapflow.domain.errors import ConcurrencyConflict, KapflowError, Refused
from kapflow.domain.events import EventKind, TimerStatus
from kapflow.domain.messages import missed_step_message, reminder_message, route
from kapflow.domain.timers import plan_timers
from kapflow.domain.workflow import WORKER_ROLE, GuardContext, Reminder, Workflow
from kapflow.logging import get_logger
from kapflow.ports import TimerClaim

SYSTEM_ROLE = WORKER_ROLE
_log = get_logger("kapflow.reminders")


@dataclass(frozen=True)
class TimerOutcome:
    """How one timer was settled, and why, in words for the audit history and the timers table."""

    status: TimerStatus
    detail: str


@dataclass(frozen=True)
class TimerRetry:
    """How a timer whose settlement fails is retried: ``attempts`` in all, with exponential backoff."""

    attempts: int = 8
    first_backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(hours=2)

    def backoff(self, failed: int) -> timedelta:
        """How long to wait after the ``failed``-th failed attempt."""
        grown: timedelta = self.first_backoff * (2 ** min(max(failed - 1, 0), 30))
        return min(grown, self.max_backoff)


@dataclass(frozen=True)
class _Fire:
    """A timer whose reminder fires a trigger: fired after the commit, as a command of its own."""

    trigger: str


def act_on_timers(
    app: AppContext, claims: Sequence[TimerClaim], worker: str, retry: TimerRetry | None = None
) -> list[TimerOutcome]:
    """Settle a batch of claimed timers in one transaction; one by one if the batch fails as a whole.

    Cases are locked in the order of their ids, so workers settling batches that share cases
    cannot deadlock. Triggers to fire are fired after the commit, each as its own command.
    """
    retry = retry or TimerRetry()
    ordered = sorted(claims, key=lambda c: (c.case_id, c.id))
    try:
        settled = app.runner.run(lambda tx: [_settle(app, tx, claim, worker) for claim in ordered], policy=ONCE)
    except Exception as failed:  # a lost race, the database, or one timer that cannot be settled
        # Nothing of the batch was kept; each timer is settled again in a transaction of its own.
        _log.warning("timer_batch_retried_one_by_one", count=len(ordered), error=type(failed).__name__)
        return [act_on_timer(app, claim, worker, retry) for claim in ordered]
    return [_guarded_after_commit(app, claim, worker, outcome, retry)
            for claim, outcome in zip(ordered, settled, strict=True)]


def act_on_timer(app: AppContext, claim: TimerClaim, worker: str, retry: TimerRetry | None = None) -> TimerOutcome:
    """Settle one claimed timer in a transaction of its own; run again if the case changes under it."""
    retry = retry or TimerRetry()
    try:
        outcome = app.runner.run(lambda tx: _settle(app, tx, claim, worker), case_id=claim.case_id)
    except ConcurrencyConflict:
        return TimerOutcome(TimerStatus.LOST, "the case kept changing; the timer stays claimed and will be retried")
    except Exception as exc:  # this timer cannot be settled; the others must be
        return _failed(app, claim, worker, exc, retry)
    return _guarded_after_commit(app, claim, worker, outcome, retry)


def _guarded_after_commit(
    app: AppContext, claim: TimerClaim, worker: str, outcome: TimerOutcome | _Fire, retry: TimerRetry
) -> TimerOutcome:
    try:
        return _after_commit(app, claim, worker, outcome)
    except Exception as exc:  # firing its trigger failed: retried like any failed timer
        return _failed(app, claim, worker, exc, retry)


def _failed(app: AppContext, claim: TimerClaim, worker: str, exc: Exception, retry: TimerRetry) -> TimerOutcome:
    """Record a failed attempt: claimable again after its backoff, or parked with a note on its case.

    The detail names the error's class (and a kapflow error's code), never its text: that may quote
    a client's data.
    """
    attempt = claim.attempts + 1
    what = type(exc).__name__ + (f" {exc.code}" if isinstance(exc, KapflowError) else "")
    retry_at = None if attempt >= retry.attempts else app.clock.now() + retry.backoff(attempt)
    if retry_at is None:
        detail = f"attempt {attempt} of {retry.attempts} failed ({what}); parked: see the case's history"
        outcome = TimerOutcome(TimerStatus.FAILED, detail)
    else:
        detail = f"attempt {attempt} of {retry.attempts} failed ({what}); next attempt after {to_iso(retry_at)}"
        outcome = TimerOutcome(TimerStatus.LOST, detail)  # still claimed: taken again when its backoff ends

    def body(tx: Transaction, note: bool) -> TimerOutcome:
        if not tx.uow.fail_timer(claim.id, worker, attempt, detail, tx.now(), retry_at):
            return TimerOutcome(TimerStatus.LOST, "another worker took this timer over")
        case = tx.uow.load_case(claim.case_id) if retry_at is None and note else None
        if case is not None:
            data = {"reminder": claim.reminder, "timer": claim.key, "outcome": TimerStatus.FAILED, "detail": detail}
            tx.note(case, note_event(case, Actor(worker, SYSTEM_ROLE), EventKind.REMINDER, at=tx.now(), data=data))
        return outcome

    try:
        recorded = app.runner.run(lambda tx: body(tx, True), case_id=claim.case_id)
    except Exception as again:  # the case itself cannot be read or noted: park it all the same
        _log.warning("timer_failure_not_audited", case_id=claim.case_id, timer_id=claim.id,
                     error=type(again).__name__)
        try:
            recorded = app.runner.run(lambda tx: body(tx, False), case_id=claim.case_id)
        except Exception as lost:  # the lease runs out and the timer is tried again
            _log.error("timer_failure_not_recorded", case_id=claim.case_id, timer_id=claim.id,
                       error=type(lost).__name__)
            return TimerOutcome(TimerStatus.LOST, "the failure could not be recorded; the lease will run out")
    log = _log.error if retry_at is None else _log.warning
    log("timer_parked" if retry_at is None else "timer_failed", case_id=claim.case_id, timer_id=claim.id,
        attempt=attempt, error=what)
    return recorded


def _after_commit(app: AppContext, claim: TimerClaim, worker: str, outcome: TimerOutcome | _Fire) -> TimerOutcome:
    if isinstance(outcome, _Fire):
        return _fire(app, claim, worker, outcome.trigger)
    if outcome.status != TimerStatus.LOST:
        _log.info("timer_settled", case_id=claim.case_id, status=outcome.status, timer_id=claim.id)
    return outcome


def _settle(app: AppContext, tx: Transaction, claim: TimerClaim, worker: str) -> TimerOutcome | _Fire:
    """Write what the timer comes to in ``tx``; a trigger to fire is left to the caller."""
    # Read from the row, not the store's kept copy: a batch spans many cases, mostly changed last by the
    # practice's API servers, and one stale copy would send the whole batch round again.
    case = tx.uow.load_case(claim.case_id, current=True)
    if case is None:
        return _close(tx, claim, worker, TimerOutcome(TimerStatus.CANCELLED, "the case no longer exists"))
    wf = app.workflows.of(case)
    facts = case.projection
    now = tx.now()
    planned = plan_timers(wf, case.id, case.state, facts, case.opened_at, app.practice).get(claim.key)
    reminder = wf.reminder(case.state, claim.reminder)
    if planned is None or reminder is None:
        return _close(tx, claim, worker, TimerOutcome(TimerStatus.CANCELLED, "no longer planned"))
    verdict = _verdict(app, wf, case, facts, reminder, claim, planned.deadline, now)
    if verdict is not None:
        closed = _note_and_close(tx, case, claim, worker, reminder, verdict)
        if closed.status == TimerStatus.MISSED and reminder.fires and reminder.missed_alert:
            _alert_missed_step(app, tx, case, wf, claim, reminder)
        return closed
    if reminder.fires:
        return _Fire(reminder.fires)
    return _queue_message(app, tx, case, wf, facts, claim, worker, reminder, planned.deadline)


def _verdict(
    app: AppContext, wf: Workflow, case: CaseRecord, facts: CaseFacts, reminder: Reminder,
    claim: TimerClaim, deadline: datetime | None, now: datetime,
) -> TimerOutcome | None:
    """Why the due timer is not acted on (recorded on its row and the case's history), or None.

    A reminder whose rule holds is not missed, just not needed: those checks come first.
    """
    unwanted = not_wanted(app.practice, wf, case, facts, reminder, deadline, now)
    if unwanted is not None:
        return unwanted
    late = now - claim.due_at
    if late > reminder.grace:
        minutes = int(late.total_seconds() // 60)
        return TimerOutcome(TimerStatus.MISSED, f"due {app.practice.time_text(claim.due_at)}, {minutes} minutes late")
    return None


def not_wanted(
    cal: PracticeCalendar, wf: Workflow, case: CaseRecord, facts: CaseFacts, reminder: Reminder,
    deadline: datetime | None, now: datetime,
) -> TimerOutcome | None:
    """Why a reminder that came due is no longer wanted now (skipped, in words), or None while it still is.

    The reminder's own rule: the states it is wanted in, the guard it waits on to block or to hold, and the
    start of its appointment. The worker asks before acting on a timer; a staff member's work list asks
    whether the alert still stands (``kapflow.app.work``).
    """
    if reminder.in_states and case.state not in reminder.in_states:
        return TimerOutcome(TimerStatus.SKIPPED, f"not wanted while the case is in {case.state}")
    ctx = GuardContext(case.id, case.state, reminder.name, facts, now, wf.thresholds, calendar=cal,
                       carriers=wf.appointments or STANDARD)
    if reminder.while_blocked_by and wf.guards[reminder.while_blocked_by](ctx) is None:
        return TimerOutcome(TimerStatus.SKIPPED, f"{reminder.while_blocked_by} holds now")
    if reminder.while_holds and (blocker := wf.guards[reminder.while_holds](ctx)) is not None:
        return TimerOutcome(TimerStatus.SKIPPED, f"{reminder.while_holds} no longer holds ({blocker.code})")
    if deadline is not None and now >= deadline:
        return TimerOutcome(TimerStatus.SKIPPED, f"its appointment started at {cal.time_text(deadline)}")
    return None


def _alert_missed_step(
    app: AppContext, tx: Transaction, case: CaseRecord, wf: Workflow, claim: TimerClaim, reminder: Reminder
) -> None:
    """Tell ``missed_alert`` that an automatic step was not taken: the case waits for a person now."""
    assert reminder.fires is not None and reminder.missed_alert is not None
    routed = route(reminder.missed_alert, reminder.channel or "email", case.projection, app.contacts,
                   wf.intake_fact, wf.client, app.channels)
    if routed is None:
        _log.warning("missed_step_alert_undeliverable", case_id=case.id, role=reminder.missed_alert)
        return
    channel, address = routed
    step = reminder.fires.replace("_", " ")
    tx.uow.add_outbox(missed_step_message(
        timer_key=claim.key, case_id=case.id, channel=channel, audience=reminder.missed_alert, address=address,
        step=step, due=app.practice.time_text(claim.due_at), console_url=app.console_url,
    ), tx.now())


def _queue_message(
    app: AppContext, tx: Transaction, case: CaseRecord, wf: Workflow, facts: CaseFacts,
    claim: TimerClaim, worker: str, reminder: Reminder, deadline: datetime | None,
) -> TimerOutcome:
    preferred = app.urgent_channel if reminder.urgent and app.urgent_channel else reminder.channel
    routed = route(reminder.audience, preferred, facts, app.contacts, wf.intake_fact, wf.client, app.channels)
    if routed is None:
        verdict = TimerOutcome(TimerStatus.UNDELIVERABLE, f"no {reminder.channel} address for {reminder.audience}")
        return _note_and_close(tx, case, claim, worker, reminder, verdict)
    channel, address = routed
    appt = _appointment_for(wf, case, facts, claim, reminder, tx.now())
    message = reminder_message(
        reminder, timer_key=claim.key, case_id=case.id, channel=channel, address=address, appointment=appt,
        facts=facts, intake_kind=wf.intake_fact, client=wf.client, cal=app.practice, console_url=app.console_url,
        deadline=deadline,
    )
    verdict = TimerOutcome(TimerStatus.DONE, f"queued {channel} message for {reminder.audience}")
    closed = _note_and_close(tx, case, claim, worker, reminder, verdict)
    if closed.status != TimerStatus.LOST:  # only the worker holding the timer queues its message
        tx.uow.add_outbox(message, tx.now())
    return closed


def _appointment_for(
    wf: Workflow, case: CaseRecord, facts: CaseFacts, claim: TimerClaim, reminder: Reminder, now: datetime
) -> Appointment | None:
    """The appointment a message speaks of: the timer's own, else the next one of the reminder's kind."""
    if wf.appointments is None:
        return None
    if claim.appointment_id:
        return appointments(case.id, facts, wf.appointments).get(claim.appointment_id)
    if reminder.appointment_kind:
        ahead = upcoming(case.id, facts, reminder.appointment_kind, now, wf.appointments)
        return ahead[0] if ahead else None
    return None


def _note_and_close(
    tx: Transaction, case: CaseRecord, claim: TimerClaim, worker: str, reminder: Reminder, outcome: TimerOutcome,
) -> TimerOutcome:
    closed = _close(tx, claim, worker, outcome)
    if closed.status != TimerStatus.LOST:  # written only once the timer is known to be this worker's
        data = {"reminder": reminder.name, "timer": claim.key, "outcome": outcome.status, "detail": outcome.detail}
        tx.note(case, note_event(case, Actor(worker, SYSTEM_ROLE), EventKind.REMINDER, at=tx.now(), data=data))
    return closed


def _close(tx: Transaction, claim: TimerClaim, worker: str, outcome: TimerOutcome) -> TimerOutcome:
    """Close the timer with ``outcome``, first of a timer's writes: lost if another worker holds it now."""
    if not tx.uow.finish_timer(claim.id, worker, outcome.status, outcome.detail, tx.now()):
        return TimerOutcome(TimerStatus.LOST, "another worker took this timer over")
    return outcome


def _fire(app: AppContext, claim: TimerClaim, worker: str, trigger: str) -> TimerOutcome:
    """Fire the reminder's trigger (idempotent on the timer's key), then close the timer."""
    try:
        fire(app, claim.case_id, trigger, actor=Actor(worker, SYSTEM_ROLE), data=None,
             idempotency_key=f"timer:{claim.id}", expected_version=None)
        outcome = TimerOutcome(TimerStatus.DONE, f"fired {trigger}")
    except Refused as refused:
        outcome = TimerOutcome(TimerStatus.SKIPPED, f"{trigger} refused: {refused.code}")
    closed = app.runner.run(lambda tx: _close(tx, claim, worker, outcome), case_id=claim.case_id)
    if closed.status != TimerStatus.LOST:
        _log.info("timer_settled", case_id=claim.case_id, status=closed.status, timer_id=claim.id)
    return closed
