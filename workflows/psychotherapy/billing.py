"""The visits a psychotherapy case has had, each with the CPT code its length earns.

Read from the case's moves, so the time billed is the time the engine's
clock saw between the therapist starting and completing a visit: nobody types
it. The intake assessment is a psychiatric diagnostic evaluation (90791,
whatever its length); a psychotherapy session is coded by time, with the
bands as workflow thresholds: 90832 from ``min_billable_minutes`` (16),
90834 from ``cpt_90834_minutes`` (38), 90837 from ``cpt_90837_minutes`` (53).
A visit left any other way (a session ended early, an intake the client
withdrew from) is listed with no code: it is not a billable visit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from kapflow.domain.case import CaseFacts
from kapflow.domain.workflow import Threshold

INTAKE_CODE = "90791"
_STARTS = {"start_intake": "intake_assessment", "start_session": "psychotherapy"}
_INTAKE_DONE = ("complete_intake", "refer_out")  # a referral is an assessment performed all the same


@dataclass(frozen=True)
class Visit:
    """One visit: what it was, when it started, how many whole minutes it lasted, its CPT code (None: not billed)."""

    service: str
    started_at: datetime
    minutes: int
    code: str | None

    @property
    def billable(self) -> bool:
        return self.code is not None


def psychotherapy_code(minutes: int, thresholds: Mapping[str, Threshold]) -> str | None:
    """The psychotherapy CPT code for a session of ``minutes``; None below the shortest billable length."""
    if minutes >= thresholds["cpt_90837_minutes"]:
        return "90837"
    if minutes >= thresholds["cpt_90834_minutes"]:
        return "90834"
    if minutes >= thresholds["min_billable_minutes"]:
        return "90832"
    return None


def visits(facts: CaseFacts, thresholds: Mapping[str, Threshold]) -> list[Visit]:
    """Every finished visit of the case, in order (a visit still under way is not listed yet)."""
    found: list[Visit] = []
    started: tuple[str, datetime] | None = None
    for move in facts.moves():
        if move.trigger in _STARTS:
            started = (_STARTS[move.trigger], move.at)
        elif started is not None:  # the move that follows a visit's start ends it
            service, at = started
            minutes = int((move.at - at).total_seconds() // 60)
            code: str | None = None
            if move.trigger in _INTAKE_DONE:
                code = INTAKE_CODE
            elif move.trigger == "complete_session":
                code = psychotherapy_code(minutes, thresholds)
            found.append(Visit(service, at, minutes, code))
            started = None
    return found
