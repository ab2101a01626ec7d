"""Suicidality is a signal, not a number: the rules every clinical pathway of the practice shares.

A PHQ-9 whose item 9 ("thoughts that you would be better off dead, or of hurting yourself") is
answered above 0 is a safety signal. It alerts the prescriber and the therapist at once, on the
practice's channel for urgent alerts, with the case's reference only; and it blocks the next
session until a clinician records a safety assessment (the screen used, such as the C-SSRS
screener, its result and the plan), which is audited like every fact. The blocker says what is
needed, never the answer that raised it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, FactEntry
from kapflow.domain.errors import Blocker
from kapflow.domain.facts import Choice, Day, FactSpec, Text
from kapflow.domain.workflow import GuardContext, Moment, Reminder, moment_reading
from kapflow.workflows.measures import phq9_item9

SAFETY_ASSESSMENT_KIND = "safety_assessment"
SIGNAL_MOMENT = "safety_signal"
SCREENS = ("cssrs_screener", "asq", "clinical_interview", "other")
RESULTS = ("no_current_risk", "low_risk", "moderate_risk", "high_risk")

SAFETY_ASSESSMENT = FactSpec(
    SAFETY_ASSESSMENT_KIND,
    (
        Choice("screen", SCREENS),
        Choice("screen_result", RESULTS),
        Text("plan", max_chars=2000),
        Day("assessed_on", required=False),
    ),
    description="a clinician's safety assessment: the screen used (such as the C-SSRS screener), result, plan",
)


def signal_facts(facts: CaseFacts) -> list[FactEntry]:
    """The questionnaires that raised a safety signal (a PHQ-9 with item 9 above 0), in order."""
    return facts.derived(signal_facts, _signals)


def _signals(facts: CaseFacts) -> list[FactEntry]:
    return [f for f in facts.of_kind("questionnaire") if (phq9_item9(f.data) or 0) > 0]


def unresolved_signal(facts: CaseFacts) -> FactEntry | None:
    """The latest safety signal no safety assessment has followed (in recording order), or None."""
    return facts.derived(unresolved_signal, _unresolved) if signal_facts(facts) else None


def _unresolved(facts: CaseFacts) -> FactEntry | None:
    waiting: FactEntry | None = None
    for fact in facts.of_kinds(("questionnaire", SAFETY_ASSESSMENT_KIND)):
        if fact.kind == SAFETY_ASSESSMENT_KIND:
            waiting = None
        elif (phq9_item9(fact.data) or 0) > 0:
            waiting = fact
    return waiting


def signal_moment(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
    """When the latest safety signal was recorded (the urgent alerts count from it)."""
    signals = signal_facts(facts)
    return signals[-1].at if signals else None


class SafetySignalResolved:
    """No safety signal waits for a clinician's safety assessment."""

    thresholds: tuple[str, ...] = ()

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        waiting = unresolved_signal(ctx.facts)
        if waiting is None:
            return None
        return Blocker(
            "safety_assessment_required",
            "a clinician must record a safety assessment (the screen used, its result and the plan) before "
            "the next session",
            facts=(("questionnaire_on", ctx.calendar.local_date(waiting.at).isoformat()),),
        )


def safety_alerts(audiences: tuple[str, ...]) -> tuple[Reminder, ...]:
    """The urgent alert to each of ``audiences`` when a safety signal is recorded: at once, on the practice's
    urgent channel, sent only while no safety assessment has followed; the case's reference only."""
    return tuple(
        Reminder(
            f"safety_signal_alert_{audience}", audience, "email",
            "Urgent: a client's questionnaire answers need a clinician's safety assessment before the next "
            "session. Please review the case now.",
            since=SIGNAL_MOMENT, after=timedelta(0), while_blocked_by="safety_signal_resolved", urgent=True,
            subject="kapflow: urgent safety review needed",
        )
        for audience in audiences
    )


GUARDS: Mapping[str, SafetySignalResolved] = {"safety_signal_resolved": SafetySignalResolved()}
MOMENTS: dict[str, Moment] = {SIGNAL_MOMENT: moment_reading(facts=("questionnaire",))(signal_moment)}
