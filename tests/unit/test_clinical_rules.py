"""Clinical rules the pure domain holds: closed cases, what a refusal says, required data, unused guards."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseRecord, fold_fact, fold_move
from kapflow.domain.decision import fact_refusal, fire_refusal
from kapflow.domain.errors import NotPermitted, TransitionBlocked, TransitionNotAvailable, WorkflowDefinitionError
from kapflow.domain.versions import Change, diff_workflows
from kapflow.domain.workflow import Transition, Workflow
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

WF = KAP_PATHWAY
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def case_in(state: str, moves: tuple[tuple[str, str, str], ...] = ()) -> CaseRecord:
    """A KAP case in ``state`` after ``moves`` (trigger, from, to), each an hour apart."""
    inquiry = {"first_name": "Sample", "last_name": "Client", "date_of_birth": "1985-06-30",
               "email": "client@example.org"}
    raw: dict[str, Any] = fold_fact({}, "inquiry", T0, "fd", WF.facts["inquiry"].spec(inquiry, T0))
    for n, (trigger, src, dest) in enumerate(moves, 1):
        raw = fold_move(raw, trigger, src, dest, T0 + timedelta(hours=n))
    return CaseRecord("case-rules", "kap", WF.version, state, None, 1 + len(moves), 1 + len(moves), "", raw, T0, T0)


PRESCRIPTION = {"prescriber": "NP Sample", "issued_on": "2026-03-01", "expires_on": "2026-09-01"}


@pytest.mark.parametrize("state", ["ineligible", "withdrawn", "completed"])
def test_a_closed_case_refuses_a_clinical_fact_with_case_closed(state: str) -> None:
    """A prescription on a case in a final state is refused with the case_closed blocker."""
    parsed = WF.facts["prescription"].spec(PRESCRIPTION, T0)
    refusal = fact_refusal(case_in(state), WF, "prescription", "prescriber", parsed, T0, PracticeCalendar())
    assert isinstance(refusal, TransitionBlocked)
    assert [b.code for b in refusal.blockers] == ["case_closed"]
    assert refusal.fact_kind == "prescription"


def test_a_closed_case_still_takes_a_payment_of_its_balance() -> None:
    """The payment fact kind declares it may be recorded on a closed case; the open case takes anything."""
    parsed = WF.facts["payment"].spec({"amount": "165.00", "purpose": "psychotherapy"}, T0)
    assert fact_refusal(case_in("withdrawn"), WF, "payment", "billing", parsed, T0, PracticeCalendar()) is None
    rx = WF.facts["prescription"].spec(PRESCRIPTION, T0)
    assert fact_refusal(case_in("evaluated"), WF, "prescription", "prescriber", rx, T0, PracticeCalendar()) is None


@pytest.mark.parametrize(("wf", "money"), [(KAP_PATHWAY, ["billing_adjustment", "payment"]),
                                           (PSYCHOTHERAPY_PATHWAY, ["payment"])], ids=lambda w: getattr(w, "name", ""))
def test_each_workflow_declares_only_money_for_closed_cases(wf: Workflow, money: list[str]) -> None:
    """Of the shipped fact kinds, only a payment (and, where the workflow bills, a ledger correction) may be
    recorded on a closed case: nothing clinical."""
    assert sorted(k for k, fk in wf.facts.items() if fk.on_closed_case) == money


def test_a_refused_fact_names_its_kind_not_a_made_up_trigger() -> None:
    """A wrong role recording a fact: the refusal names the fact kind, and no trigger."""
    refusal = fact_refusal(case_in("evaluated"), WF, "prescription", "front_desk", {}, T0, PracticeCalendar())
    assert isinstance(refusal, NotPermitted)
    assert refusal.fact_kind == "prescription" and refusal.trigger == ""
    assert "record" not in refusal.trigger
    assert "a prescription" in refusal.message
    assert refusal.as_dict()["fact_kind"] == "prescription"


DOSED = (("start_kap_session", "ready_for_kap", "dosing"),
         ("discharge", "dosing", "integration_psychotherapy"))


def test_a_session_before_integration_says_what_is_missing() -> None:
    """A second KAP session before the first one's integration names the integration and its date."""
    refusal = fire_refusal(case_in("integration_psychotherapy", DOSED), WF, None, "start_kap_session",
                           "therapist", {}, T0, PracticeCalendar())
    assert isinstance(refusal, TransitionNotAvailable)
    assert [b.code for b in refusal.blockers] == ["integration_pending"]
    assert "the integration psychotherapy of the KAP session on 2026-03-02 is not completed" in refusal.message
    assert [b["code"] for b in refusal.audited_blockers()] == ["transition_not_available", "integration_pending"]


def test_a_trigger_unavailable_elsewhere_keeps_the_plain_reason() -> None:
    """From inquiry, a KAP session is just not available: no pending step to name."""
    refusal = fire_refusal(case_in("inquiry"), WF, None, "start_kap_session", "therapist", {}, T0, PracticeCalendar())
    assert isinstance(refusal, TransitionNotAvailable)
    assert refusal.blockers == ()
    assert [b["code"] for b in refusal.audited_blockers()] == ["transition_not_available"]


def test_a_guard_nothing_names_is_a_definition_error() -> None:
    """A registered guard that no transition, fact kind, reminder or state names can never run."""
    guards = {**WF.guards, "never_asked": WF.guards["consent_signed"]}
    with pytest.raises(WorkflowDefinitionError) as info:
        replace(WF, guards=guards, facts=dict(WF.facts))
    assert "guard 'never_asked' is named by no transition, fact kind, reminder or state" in str(info.value)


def test_a_state_pending_guard_must_be_known() -> None:
    """A state's pending guard is checked like any other guard name."""
    states = tuple(replace(s, pending=("no_such_guard",)) if s.name == "dosing" else s for s in WF.states)
    with pytest.raises(WorkflowDefinitionError) as info:
        replace(WF, states=states, guards=dict(WF.guards), facts=dict(WF.facts))
    assert "state 'dosing' names unknown pending guard 'no_such_guard'" in str(info.value)


def test_a_transition_cancels_only_known_appointment_kinds() -> None:
    """A transition's ``cancels`` names appointment kinds of the workflow."""
    bad = tuple(replace(t, cancels=("massage",)) if t.trigger == "release_evaluation" else t
                for t in WF.transitions)
    with pytest.raises(WorkflowDefinitionError) as info:
        replace(WF, transitions=bad, guards=dict(WF.guards), facts=dict(WF.facts))
    assert "transition 'release_evaluation' cancels unknown appointment kind 'massage'" in str(info.value)


def test_release_evaluation_declares_it_cancels_the_evaluation() -> None:
    """Releasing the unpaid slot cancels the evaluation appointment."""
    release = WF.transition_from("evaluation_booked", "release_evaluation")
    assert isinstance(release, Transition) and release.cancels == ("evaluation",)


def test_a_version_diff_shows_what_cancels_and_what_a_closed_case_takes() -> None:
    """The diff between versions names a changed ``cancels``, ``pending`` and ``on_closed_case``."""
    transitions = tuple(replace(t, cancels=()) if t.trigger == "release_evaluation" else t for t in WF.transitions)
    states = tuple(replace(s, pending=()) if s.name == "integration_psychotherapy" else s for s in WF.states)
    facts = {**WF.facts, "payment": replace(WF.facts["payment"], on_closed_case=False)}
    new = replace(WF, version="x", transitions=transitions, states=states, guards=dict(WF.guards), facts=facts)
    diff = diff_workflows(WF, new)
    changed = {t.name: t.changes for t in diff.transitions_changed}
    assert changed["release_evaluation"] == (Change("cancels", ["evaluation"], []),)
    assert {s.name: s.changes for s in diff.states_changed}["integration_psychotherapy"] == (
        Change("pending", ["previous_integration_done"], []),
    )
    assert {f.name: f.changes for f in diff.facts_changed}["payment"] == (Change("on_closed_case", True, False),)
