"""The safety signal as pure rules: which answers raise it, what resolves it, what the blocker says (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kapflow.config import load_settings
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, fold_fact
from kapflow.domain.workflow import GuardContext
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY
from kapflow.workflows.safety import SafetySignalResolved, signal_moment, unresolved_signal

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ASSESSMENT = {"screen": "cssrs_screener", "screen_result": "low_risk", "plan": "safety plan reviewed"}


def answered(raw: dict[str, Any], item9: int, at: datetime, instrument: str = "PHQ-9") -> dict[str, Any]:
    items = [0] * (9 if instrument == "PHQ-9" else 7)
    items[-1] = item9
    return fold_fact(raw, "questionnaire", at, "client", {"instrument": instrument, "items": items})


def assessed(raw: dict[str, Any], at: datetime) -> dict[str, Any]:
    return fold_fact(raw, "safety_assessment", at, "np", ASSESSMENT)


def check(raw: dict[str, Any]) -> str | None:
    ctx = GuardContext("case-1", "ready_for_kap", "start_kap_session", CaseFacts(raw), T0 + timedelta(days=9),
                       {}, calendar=PracticeCalendar())
    blocker = SafetySignalResolved()(ctx)
    return None if blocker is None else blocker.message


@pytest.mark.parametrize("item9", [1, 2, 3])
def test_any_answer_above_0_on_item_9_raises_the_signal(item9: int) -> None:
    raw = answered({}, item9, T0)
    assert unresolved_signal(CaseFacts(raw)) is not None
    assert signal_moment(CaseFacts(raw), PracticeCalendar()) == T0


def test_item_9_at_0_a_gad_7_or_a_total_only_phq_9_raise_nothing() -> None:
    raw = answered({}, 0, T0)
    raw = answered(raw, 3, T0, instrument="GAD-7")  # a GAD-7's seventh item is not about self-harm
    raw = fold_fact(raw, "questionnaire", T0, "client", {"instrument": "PHQ-9", "score": 20})
    assert unresolved_signal(CaseFacts(raw)) is None and check(raw) is None


def test_an_assessment_after_the_signal_resolves_it_and_a_later_signal_needs_another() -> None:
    raw = assessed(answered({}, 1, T0), T0)  # the same instant: recorded after, so it counts
    assert check(raw) is None
    raw = answered(raw, 2, T0 + timedelta(days=7))
    assert check(raw) is not None
    raw = assessed(raw, T0 + timedelta(days=7, hours=1))
    assert check(raw) is None


def test_an_assessment_before_the_signal_does_not_resolve_it() -> None:
    raw = answered(assessed({}, T0), 1, T0 + timedelta(minutes=5))
    assert check(raw) is not None


def test_the_blocker_says_what_is_needed_not_the_answer() -> None:
    message = check(answered({}, 3, T0))
    assert message == ("a clinician must record a safety assessment (the screen used, its result and the plan) "
                       "before the next session")


def test_both_pathways_hold_their_sessions_on_it_and_alert_their_clinicians() -> None:
    kap = KAP_PATHWAY.transitions_named("start_kap_session")[0]
    psy = PSYCHOTHERAPY_PATHWAY.transitions_named("start_session")[0]
    assert "safety_signal_resolved" in kap.guards and "safety_signal_resolved" in psy.guards
    assert {r.audience for r in KAP_PATHWAY.reminders if r.since == "safety_signal"} == {"prescriber", "therapist"}
    assert {r.audience for r in PSYCHOTHERAPY_PATHWAY.reminders if r.since == "safety_signal"} == {"therapist"}
    assert all(r.urgent and r.after == timedelta(0) for r in KAP_PATHWAY.reminders if r.since == "safety_signal")
    assert KAP_PATHWAY.facts["safety_assessment"].roles == frozenset({"prescriber", "therapist"})


def test_the_urgent_channel_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "kapflow.toml"
    path.write_text('urgent_channel = "sms"\n', encoding="utf-8")
    assert load_settings(path, {}).urgent_channel == "sms"
