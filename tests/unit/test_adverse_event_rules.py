"""Adverse events as pure rules: the fact's spec, the review guard, the hold's moment and its timers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapflow.domain.calendar import UTC_CALENDAR
from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.errors import Blocker, InvalidFact
from kapflow.domain.timers import plan_timers
from kapflow.domain.workflow import GuardContext
from kapflow.workflows.kap import KAP_PATHWAY, THRESHOLDS
from kapflow.workflows.kap.moments import serious_event_unheld

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SPEC = KAP_PATHWAY.facts["adverse_event"].spec


def event(severity: str, kind: str = "excessive_sedation", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "severity": severity, "onset": T0.isoformat(), "action_taken": "synthetic: observed",
            **extra}


class Case:
    def __init__(self) -> None:
        self.raw: dict[str, Any] = {"facts": [], "moves": []}

    def fact(self, data: Mapping[str, Any], at: datetime) -> Case:
        self.raw = fold_fact(self.raw, "adverse_event", at, "tester", SPEC(data, at))
        return self

    def move(self, trigger: str, at: datetime) -> Case:
        self.raw = fold_move(self.raw, trigger, "s", "d", at)
        return self

    def review(self, now: datetime) -> Blocker | None:
        ctx = GuardContext("case-1", "ready_for_kap", "start_kap_session", CaseFacts(self.raw), now, THRESHOLDS)
        return KAP_PATHWAY.guards["safety_review_done"](ctx)


def test_the_spec_takes_each_type_and_severity() -> None:
    """Every listed type and severity is accepted; an unknown one is refused, naming the field."""
    for kind in ("blood_pressure_rise", "nausea_or_vomiting", "excessive_sedation", "distressing_dissociation",
                 "fall", "allergic_reaction"):
        for severity in ("mild", "moderate", "severe", "serious"):
            assert SPEC(event(severity, kind), T0)["severity"] == severity
    with pytest.raises(InvalidFact, match="severity"):
        SPEC(event("catastrophic"), T0)
    with pytest.raises(InvalidFact, match="action_taken"):
        SPEC({k: v for k, v in event("mild").items() if k != "action_taken"}, T0)


def test_other_needs_a_description() -> None:
    """An event of type other says what happened."""
    with pytest.raises(InvalidFact, match="details"):
        SPEC(event("mild", "other"), T0)
    assert SPEC(event("mild", "other", details="synthetic: headache"), T0)["type"] == "other"


def test_only_a_serious_event_waits_for_review() -> None:
    """Mild to severe events are recorded and block nothing; a serious one blocks until the prescriber continues."""
    case = Case().fact(event("severe"), T0)
    assert case.review(T0) is None
    case.fact(event("serious"), T0 + timedelta(minutes=5))
    blocker = case.review(T0 + timedelta(minutes=10))
    assert blocker is not None and blocker.code == "adverse_event_review_pending"
    assert "prescriber" in blocker.message
    case.move("hold_for_safety_review", T0 + timedelta(minutes=6)).move("pause_after_review", T0 + timedelta(hours=1))
    assert case.review(T0 + timedelta(hours=2)) is not None  # a pause is no release
    case.move("continue_after_review", T0 + timedelta(days=1))
    assert case.review(T0 + timedelta(days=2)) is None


def test_a_hold_without_a_serious_event_waits_for_review_too() -> None:
    """A clinician's hold (vitals high, no serious event) also waits for the prescriber's decision."""
    case = Case().move("hold_for_safety_review", T0)
    blocker = case.review(T0)
    assert blocker is not None and blocker.code == "safety_review_pending"
    assert case.move("continue_after_review", T0 + timedelta(hours=1)).review(T0 + timedelta(hours=1)) is None


def test_start_kap_session_checks_the_review() -> None:
    """Dosing is guarded by the review: no path into dosing skips it."""
    (start,) = KAP_PATHWAY.transitions_named("start_kap_session")
    assert "safety_review_done" in start.guards


STEPS = st.lists(
    st.tuples(st.sampled_from(["mild", "severe", "serious", "hold", "pause", "continue"]), st.integers(1, 600)),
    max_size=12,
)


@given(steps=STEPS)
def test_review_and_hold_follow_the_latest_serious_event(steps: list[tuple[str, int]]) -> None:
    """For any sequence of events and review steps: dosing waits while a serious event or hold is not continued
    past, and the worker's hold is due exactly while a serious event is neither held nor continued past."""
    case, now = Case(), T0
    serious = hold = released = None
    for step, gap in steps:
        now += timedelta(minutes=gap)
        if step in ("mild", "severe", "serious"):
            case.fact(event(step), now)
            serious = now if step == "serious" else serious
        else:
            case.move({"hold": "hold_for_safety_review", "pause": "pause_after_review",
                       "continue": "continue_after_review"}[step], now)
            hold = now if step == "hold" else hold
            released = now if step == "continue" else released
    waits = any(t is not None and (released is None or released < t) for t in (serious, hold))
    assert (case.review(now) is not None) == waits
    taken_up = max((t for t in (hold, released) if t is not None), default=None)
    due = serious if serious is not None and (taken_up is None or taken_up < serious) else None
    assert serious_event_unheld(CaseFacts(case.raw), UTC_CALENDAR) == due


def _timers(state: str, case: Case) -> dict[str, datetime]:
    planned = plan_timers(KAP_PATHWAY, "case-1", state, CaseFacts(case.raw), T0)
    return {t.reminder: t.due_at for t in planned.values()}


def test_the_hold_is_planned_at_the_event_and_dropped_once_held() -> None:
    """In dosing, a serious event plans the hold due at once; once held (or in a later session) it is gone."""
    case = Case().move("start_kap_session", T0)
    timers = _timers("dosing", case)
    assert timers["vitals_still_out_of_range"] == T0 + timedelta(hours=3)
    assert "serious_event_hold" not in timers
    case.fact(event("serious"), T0 + timedelta(minutes=20))
    assert _timers("dosing", case)["serious_event_hold"] == T0 + timedelta(minutes=20)
    case.move("hold_for_safety_review", T0 + timedelta(minutes=21))
    assert "serious_event_hold" not in _timers("safety_review", case)
    case.move("continue_after_review", T0 + timedelta(days=1))
    assert "serious_event_hold" not in _timers("integration_psychotherapy", case)
    assert "serious_event_hold" not in _timers("ready_for_kap", case)


def test_staff_alert_names_no_clinical_detail() -> None:
    """The prescriber's alert names neither the drug, the dose nor the dosing."""
    alert = next(r for r in KAP_PATHWAY.state("dosing").reminders if r.name == "vitals_still_out_of_range")
    clinical = re.compile(r"ketamine|\bKAP\b|troche|dos(e|ing)|blood pressure|adverse|allerg", re.IGNORECASE)
    for text in (alert.template, alert.subject):
        assert not clinical.search(text), text
