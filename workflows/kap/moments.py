"""Moments of a KAP case that prompts are counted from: its last KAP session, the lapse of its prescription.

Each is a pure function of the case's facts (``kapflow.domain.workflow.Moment``), None while there
is none. A prompt counted from a moment is keyed by it, so a new session or a new prescription
replaces the prompt that counted from the old one.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts
from kapflow.domain.workflow import Moment

DOSING = "start_kap_session"
MORNING = timedelta(hours=9)
"""Prompts counted from a date (a prescription's last day) are timed at 09:00 that day, practice time."""


def last_kap_session(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """When the last KAP session started."""
    move = facts.last_move(DOSING)
    return move.at if move else None


def prescription_lapses(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """The morning of the last day the latest prescription is valid."""
    latest = facts.latest("prescription")
    if latest is None:
        return None
    last_day = date.fromisoformat(str(latest.data["expires_on"]))
    return cal.at_wall_time(datetime(last_day.year, last_day.month, last_day.day) + MORNING)


MOMENTS: dict[str, Moment] = {
    "last_kap_session": last_kap_session,
    "prescription_lapses": prescription_lapses,
}
