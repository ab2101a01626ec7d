"""Moments of a KAP case that prompts are counted from: its last KAP session, the lapse of its prescription,
a serious adverse event not yet taken up by a safety review, its latest good faith estimate.

Each is a pure function of the case's facts (``kapflow.domain.workflow.Moment``), None while there
is none. A prompt counted from a moment is keyed by it, so a new session or a new prescription
replaces the prompt that counted from the old one.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts
from kapflow.domain.workflow import Moment, moment_reading

DOSING = "start_kap_session"
MORNING = timedelta(hours=9)
"""Prompts counted from a date (a prescription's last day) are timed at 09:00 that day, practice time."""


def last_kap_session(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """When the last KAP session started."""
    move = facts.last_move(DOSING)
    return move.at if move else None


def estimate_recorded(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """When the latest good faith estimate was recorded (with the plan set or extended that asked for it)."""
    latest = facts.latest("good_faith_estimate")
    return latest.at if latest else None


def prescription_lapses(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """The morning of the last day the latest prescription is valid."""
    latest = facts.latest("prescription")
    if latest is None:
        return None
    last_day = date.fromisoformat(str(latest.data["expires_on"]))
    return cal.at_wall_time(datetime(last_day.year, last_day.month, last_day.day) + MORNING)


HOLD_FOR_REVIEW = "hold_for_safety_review"
CONTINUE_AFTER_REVIEW = "continue_after_review"


def last_serious_event(facts: CaseFacts) -> datetime | None:
    """When the latest serious adverse event was recorded."""
    serious = [f.at for f in facts.of_kind("adverse_event") if f.data["severity"] == "serious"]
    return serious[-1] if serious else None


def serious_event_unheld(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """When the latest serious adverse event was recorded, while no safety review has taken it up.

    A review took it up once the case was held for review, or the prescriber continued the plan,
    at or after it: so the hold is fired once per event, never again after the review's decision.
    """
    serious = last_serious_event(facts)
    if serious is None:
        return None
    for trigger in (HOLD_FOR_REVIEW, CONTINUE_AFTER_REVIEW):
        move = facts.last_move(trigger)
        if move is not None and move.at >= serious:
            return None
    return serious


# Each says what it reads, so a case's plan keeps it while a command changes none of that (``moment_reading``).
MOMENTS: dict[str, Moment] = {
    "last_kap_session": moment_reading(moves=(DOSING,))(last_kap_session),
    "estimate_recorded": moment_reading(facts=("good_faith_estimate",))(estimate_recorded),
    "prescription_lapses": moment_reading(facts=("prescription",))(prescription_lapses),
    "serious_adverse_event": moment_reading(facts=("adverse_event",), moves=(HOLD_FOR_REVIEW, CONTINUE_AFTER_REVIEW))(
        serious_event_unheld),
}
