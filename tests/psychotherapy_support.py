"""Drive psychotherapy cases through their pathway with synthetic data, for the psychotherapy tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from support import CLIENT, FRONT_DESK, THERAPIST, booking

from kapflow import Engine, Outcome
from kapflow.testing import FakeClock
from kapflow.workflows.measures import answered

INQUIRY = {
    "first_name": "Sample",
    "last_name": "Client-Psy",
    "date_of_birth": "1990-09-21",
    "email": "sample.psy@example.org",
    "phone": "+1 555 010 0161",
    "concerns": ["anxiety", "stress"],
    "message": "Synthetic: looking for weekly sessions.",
}
CONSENT = {"form_version": "2026-02", "signed_on": "2026-01-05"}


class Commands(Protocol):
    """What the helpers need of an engine (an ``Engine``, or a test's checking wrapper around one)."""

    def open_case(self, intake: Any, *, actor: Any) -> Outcome: ...

    def fire(self, case_id: str, trigger: str, *, actor: Any, data: Any = None) -> Outcome: ...

    def record(self, case_id: str, kind: str, data: Any, *, actor: Any) -> Outcome: ...


def open_case(engine: Commands, **changes: object) -> str:
    return engine.open_case({**INQUIRY, **changes}, actor=FRONT_DESK).case_id


def to_intake_booked(engine: Commands, clock: FakeClock, case_id: str, days_ahead: float = 2) -> None:
    """Book the intake ``days_ahead`` from now and move the case to intake_booked."""
    engine.record(case_id, "appointment", booking(case_id, "intake", clock.now() + timedelta(days=days_ahead)),
                  actor=FRONT_DESK)
    engine.fire(case_id, "book_intake", actor=FRONT_DESK)


def checkin(engine: Commands, case_id: str, phq9: int = 9, gad7: int = 7) -> None:
    """The client's PHQ-9 and GAD-7."""
    engine.record(case_id, "questionnaire", answered("PHQ-9", phq9), actor=CLIENT)
    engine.record(case_id, "questionnaire", answered("GAD-7", gad7), actor=CLIENT)


def to_active(engine: Commands, clock: FakeClock, case_id: str) -> None:
    """From a new case to active_treatment: intake booked, consent, baseline scores, a 60-minute intake."""
    to_intake_booked(engine, clock, case_id)
    engine.record(case_id, "consent", CONSENT, actor=FRONT_DESK)
    checkin(engine, case_id, phq9=14, gad7=11)
    clock.advance(days=2)
    engine.fire(case_id, "start_intake", actor=THERAPIST)
    clock.advance(minutes=60)
    engine.fire(case_id, "complete_intake", actor=THERAPIST, data={"goals": "sleep better; fewer panic spells"})


def one_session(engine: Commands, clock: FakeClock, case_id: str, minutes: float = 53) -> None:
    """A psychotherapy session of ``minutes``, started now."""
    engine.fire(case_id, "start_session", actor=THERAPIST)
    clock.advance(minutes=minutes)
    engine.fire(case_id, "complete_session", actor=THERAPIST)


def weekly_sessions(engine: Commands, clock: FakeClock, case_id: str, count: int, minutes: float = 53) -> None:
    """``count`` sessions a week apart, the first a week from now."""
    for _ in range(count):
        clock.advance(days=7)
        one_session(engine, clock, case_id, minutes)


def case_after_one_session(engine: Engine, clock: FakeClock, minutes: float = 53, **open_with: Any) -> str:
    """A new case (``open_with``: ``open_case``'s keywords, such as ``workflow``) in active treatment, with one
    session of ``minutes`` behind it."""
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK, **open_with).case_id
    to_active(engine, clock, case_id)
    one_session(engine, clock, case_id, minutes)
    return case_id
