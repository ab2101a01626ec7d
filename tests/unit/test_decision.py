"""The engine's decision, as a pure function: may this role fire this trigger on this case now, and if not, why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseRecord, fold_fact, fold_move
from kapflow.domain.decision import fact_refusal, fire_refusal, not_available_blocker
from kapflow.domain.errors import NotPermitted, TransitionBlocked, TransitionNotAvailable
from kapflow.workflows.kap import KAP_PATHWAY

WF = KAP_PATHWAY
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def booked_case(paid: bool) -> CaseRecord:
    """A case in evaluation_booked, its evaluation in three days, the fee paid or not."""
    inquiry = {"first_name": "Sample", "last_name": "Client", "date_of_birth": "1985-06-30",
               "email": "client@example.org"}
    raw: dict[str, Any] = fold_fact({}, "inquiry", T0, "fd", WF.facts["inquiry"].spec(inquiry, T0))
    booking = {"kind": "evaluation", "starts_at": (T0 + timedelta(days=3)).isoformat(), "clinician": "np-rowan"}
    raw = fold_fact(raw, "appointment", T0, "fd", WF.facts["appointment"].spec(booking, T0))
    if paid:
        payment = {"amount": "250.00", "purpose": "evaluation_fee"}
        raw = fold_fact(raw, "payment", T0, "fd", WF.facts["payment"].spec(payment, T0))
    raw = fold_move(raw, "book_evaluation", "inquiry", "evaluation_booked", T0)
    return CaseRecord("case-decide", "kap", WF.version, "evaluation_booked", "inquiry", 3, 3, "", raw, T0, T0)


def decide(case: CaseRecord, trigger: str, role: str) -> object:
    return fire_refusal(case, WF, WF.transition_from(case.state, trigger), trigger, role, {}, T0, PracticeCalendar())


def test_a_trigger_that_does_not_leave_the_state_is_not_available() -> None:
    refusal = decide(booked_case(paid=True), "discharge", "therapist")
    assert isinstance(refusal, TransitionNotAvailable)
    assert "start_evaluation" in refusal.available
    assert not_available_blocker("evaluation_booked", "discharge").code == "not_available_from_state"


def test_a_role_the_transition_does_not_name_is_not_permitted() -> None:
    refusal = decide(booked_case(paid=True), "start_evaluation", "client")
    assert isinstance(refusal, NotPermitted)
    assert "prescriber" in refusal.allowed


def test_guards_that_fail_are_all_named_and_passing_ones_allow() -> None:
    refusal = decide(booked_case(paid=False), "start_evaluation", "prescriber")
    assert isinstance(refusal, TransitionBlocked)
    assert [b.code for b in refusal.blockers] == ["evaluation_fee_unpaid"]
    assert decide(booked_case(paid=True), "start_evaluation", "prescriber") is None


def test_recording_a_fact_checks_the_role() -> None:
    refusal = fact_refusal(booked_case(paid=True), WF, "prescription", "front_desk", {}, T0, PracticeCalendar())
    assert isinstance(refusal, NotPermitted)
    assert refusal.fact_kind == "prescription" and refusal.trigger == ""  # a fact, not a made-up trigger
