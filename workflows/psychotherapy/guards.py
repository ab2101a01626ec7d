"""The psychotherapy pathway's guards: pure checks of a case's facts, moves and the clock.

Each guard names the thresholds it reads (checked when the workflow loads)
and answers with a ``Blocker``: a stable code and a sentence front-desk staff
can act on. Guards the practice's pathways share (appointments, consent,
bookings of one kind) come from ``kapflow.workflows.clinical_guards``.
"""

from __future__ import annotations

from kapflow.domain.appointments import upcoming
from kapflow.domain.case import CaseFacts, Move
from kapflow.domain.errors import Blocker
from kapflow.domain.workflow import Guard, GuardContext
from kapflow.workflows.clinical_guards import (
    AppointmentBooked,
    AppointmentNotInPast,
    AppointmentOpen,
    ConsentSigned,
    WhenBooking,
    days,
    missing_questionnaires,
    whole,
)

INTAKE_DONE = "complete_intake"
SESSION_START = "start_session"
SESSION_DONE = "complete_session"
SESSION = "psychotherapy_session"
CONSENT_FORM = "consent to psychotherapy treatment form"


def completed_sessions(facts: CaseFacts) -> list[Move]:
    """The completion of every psychotherapy session, in order (sessions ended early do not count)."""
    return facts.moves_by(SESSION_DONE)


class _Base:
    thresholds: tuple[str, ...] = ()


class BaselineQuestionnaires(_Base):
    """The intake's baseline: a PHQ-9 and a GAD-7 on record."""

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        missing = missing_questionnaires(ctx.facts, None)
        if not missing:
            return None
        return Blocker(
            "baseline_questionnaires_missing",
            f"record the client's baseline {' and '.join(missing)} before completing the intake",
            facts=(("missing", ",".join(missing)),),
        )


class QuestionnairesCurrent(_Base):
    """After every ``questionnaire_every_sessions`` completed sessions, a PHQ-9 and a GAD-7 before the next."""

    thresholds = ("questionnaire_every_sessions",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        every = whole(ctx, "questionnaire_every_sessions")
        done = completed_sessions(ctx.facts)
        if every < 1 or len(done) < every:
            return None  # the baseline taken at the intake covers the first sessions
        due_since = done[len(done) // every * every - 1].at
        missing = missing_questionnaires(ctx.facts, due_since)
        if not missing:
            return None
        return Blocker(
            "questionnaires_due",
            f"{len(done)} sessions done and the PHQ-9 and GAD-7 are due every {every}: record "
            f"{' and '.join(missing)} before the next session",
            facts=(("sessions", str(len(done))), ("every", str(every)), ("missing", ",".join(missing))),
        )


class SessionBillableLength(_Base):
    """The session under way has lasted long enough to bill as psychotherapy (90832 and up)."""

    thresholds = ("min_billable_minutes",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        started = ctx.facts.last_move(SESSION_START)
        lasted = int((ctx.now - started.at).total_seconds() // 60) if started else 0
        minimum = whole(ctx, "min_billable_minutes")
        if lasted >= minimum:
            return None
        return Blocker(
            "session_too_short",
            f"the session has lasted {lasted} minutes; a psychotherapy visit bills from {minimum} minutes: "
            "continue it, or end it early (not billed)",
            facts=(("minutes", str(lasted)), ("minimum", str(minimum))),
        )


class InactivityElapsed(_Base):
    """No session (nor the start or resumption of treatment) for ``inactivity_days``."""

    thresholds = ("inactivity_days",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        # In active treatment the case's last move is its entry there: a session completed or
        # ended, the intake completed, or a resume from hold.
        entered = ctx.facts.last_move()
        if entered is None or ctx.now - entered.at >= days(ctx, "inactivity_days"):
            return None
        limit = whole(ctx, "inactivity_days")
        since = (ctx.now - entered.at).days
        on = entered.at.astimezone(ctx.tz).date().isoformat()
        return Blocker(
            "not_inactive",
            f"the last session (or the start or resumption of treatment) was {since} days ago, on {on}; "
            f"a case is discharged for inactivity after {limit} days without a session",
            facts=(("last_activity", on), ("inactivity_days", str(limit))),
        )


class NoSessionBooked(_Base):
    """No psychotherapy session booked ahead: a client with a session to come is not inactive."""

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        ahead = upcoming(ctx.case_id, ctx.facts, SESSION, ctx.now, ctx.carriers)
        if not ahead:
            return None
        on = ahead[0].starts_at.astimezone(ctx.tz).date().isoformat()
        return Blocker(
            "session_booked",
            f"a session is booked for {on}; cancel it first if the client is to be discharged for inactivity",
            facts=(("appointment", ahead[0].id), ("starts_on", on)),
        )


class IntakeCompleted(_Base):
    """The intake assessment is complete (sessions are booked only after it)."""

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if ctx.facts.last_move(INTAKE_DONE):
            return None
        return Blocker("intake_not_completed", "complete the intake assessment before booking psychotherapy sessions")


def psychotherapy_guards() -> dict[str, Guard]:
    """Every named guard of the psychotherapy pathway."""
    return {
        "intake_booked": AppointmentBooked("intake"),
        "appointment_open": AppointmentOpen(),
        "appointment_not_in_past": AppointmentNotInPast(),
        "consent_signed": ConsentSigned(CONSENT_FORM),
        "baseline_questionnaires": BaselineQuestionnaires(),
        "questionnaires_current": QuestionnairesCurrent(),
        "session_billable_length": SessionBillableLength(),
        "inactivity_elapsed": InactivityElapsed(),
        "no_session_booked": NoSessionBooked(),
        "session_booking_after_intake": WhenBooking(SESSION, IntakeCompleted()),
    }
