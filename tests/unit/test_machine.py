"""The compiled state machine: one per workflow version, moves exactly as the pathway defines."""

from __future__ import annotations

import pytest

from kapflow.domain.case import PREVIOUS_STATE
from kapflow.errors import MoveUndefined
from kapflow.machine import CompiledMachine, compiled
from kapflow.workflows.kap import KAP_PATHWAY

HOLDABLE = ("inquiry", "evaluation_booked", "evaluated", "ready_for_kap", "reassessment")
WITHDRAWABLE = (
    "inquiry", "evaluation_booked", "evaluating", "evaluated", "intention_setting", "ready_for_kap",
    "integration_psychotherapy", "integration_session", "reassessment", "on_hold", "safety_review",
)
FINAL = ("ineligible", "completed", "withdrawn")

# Written out from the pathway's diagram (workflows/kap/definition.py docstring), not derived from it.
EXPECTED_MOVES: dict[tuple[str, str], str] = {
    ("inquiry", "book_evaluation"): "evaluation_booked",
    ("evaluation_booked", "release_evaluation"): "inquiry",
    ("evaluation_booked", "start_evaluation"): "evaluating",
    ("evaluating", "find_suitable"): "evaluated",
    ("evaluating", "find_ineligible"): "ineligible",
    ("evaluated", "start_intention_setting"): "intention_setting",
    ("intention_setting", "complete_intention_setting"): "ready_for_kap",
    ("ready_for_kap", "start_kap_session"): "dosing",
    ("dosing", "discharge"): "integration_psychotherapy",
    ("integration_psychotherapy", "complete_integration"): "ready_for_kap",
    ("ready_for_kap", "start_integration_session"): "integration_session",
    ("integration_session", "complete_integration_session"): "ready_for_kap",
    ("ready_for_kap", "begin_reassessment"): "reassessment",
    ("reassessment", "complete_reassessment"): "ready_for_kap",
    ("ready_for_kap", "complete_treatment"): "completed",
    ("reassessment", "complete_treatment"): "completed",
    ("dosing", "end_session_early"): "integration_psychotherapy",
    **{(state, "hold_for_safety_review"): "safety_review"
       for state in ("dosing", "integration_psychotherapy", "ready_for_kap")},
    ("safety_review", "continue_after_review"): "integration_psychotherapy",
    ("safety_review", "pause_after_review"): "on_hold",
    ("safety_review", "end_plan_after_review"): "completed",
    **{(state, "hold"): "on_hold" for state in HOLDABLE},
    **{(state, "withdraw"): "withdrawn" for state in WITHDRAWABLE},
}


@pytest.fixture(scope="module")
def machine() -> CompiledMachine:
    return compiled(KAP_PATHWAY)


def test_compiled_is_shared_for_the_same_workflow() -> None:
    """compiled() returns the very same machine for the same workflow object."""
    first = compiled(KAP_PATHWAY)
    assert compiled(KAP_PATHWAY) is first
    assert first.workflow is KAP_PATHWAY


def test_compiled_differs_per_version() -> None:
    """Another workflow version gets a machine of its own, built from that version."""
    other = KAP_PATHWAY.with_thresholds("machine-test", window_days=10)
    machine = compiled(other)
    assert machine is not compiled(KAP_PATHWAY)
    assert machine.workflow is other
    assert machine.next_state("ready_for_kap", "start_kap_session", None) == "dosing"


def test_expected_moves_cover_the_pathway() -> None:
    """The table of expected moves names every (state, trigger) pair the pathway defines, and no other."""
    defined = {
        (src, t.trigger) for t in KAP_PATHWAY.transitions if t.dest != PREVIOUS_STATE for src in t.sources
    }
    assert defined == set(EXPECTED_MOVES)


@pytest.mark.parametrize(
    ("state", "trigger", "dest"),
    [pytest.param(s, t, d, id=f"{s}-{t}") for (s, t), d in sorted(EXPECTED_MOVES.items())],
)
def test_next_state(machine: CompiledMachine, state: str, trigger: str, dest: str) -> None:
    """Each KAP transition leads from its source to its destination."""
    assert machine.next_state(state, trigger, None) == dest


@pytest.mark.parametrize("held_from", HOLDABLE)
def test_resume_returns_to_the_held_from_state(machine: CompiledMachine, held_from: str) -> None:
    """Resuming a case on hold returns it to the state it was held from."""
    assert machine.next_state(held_from, "hold", None) == "on_hold"
    assert machine.next_state("on_hold", "resume", held_from) == held_from


def test_resume_after_a_paused_review_returns_to_the_review(machine: CompiledMachine) -> None:
    """A plan paused by the prescriber's review resumes into the review, never past its decision."""
    assert machine.next_state("safety_review", "pause_after_review", None) == "on_hold"
    assert machine.next_state("on_hold", "resume", "safety_review") == "safety_review"


@pytest.mark.parametrize("previous", [None, "dosing", "completed", "nowhere"])
def test_resume_without_a_holdable_previous_state(machine: CompiledMachine, previous: str | None) -> None:
    """Resume is undefined when the case was not held from a holdable state."""
    with pytest.raises(MoveUndefined):
        machine.next_state("on_hold", "resume", previous)


def test_no_auto_transitions(machine: CompiledMachine) -> None:
    """No to_<state> trigger exists from any state to any state."""
    states = [s.name for s in KAP_PATHWAY.states]
    for source in states:
        for target in states:
            with pytest.raises(MoveUndefined):
                machine.next_state(source, f"to_{target}", None)
    assert not [t for t in KAP_PATHWAY.triggers() if t.startswith("to_")]


def test_undefined_move_raises(machine: CompiledMachine) -> None:
    """A trigger that does not leave the given state raises MoveUndefined naming both."""
    with pytest.raises(MoveUndefined) as info:
        machine.next_state("inquiry", "discharge", None)
    assert (info.value.trigger, info.value.state) == ("discharge", "inquiry")
    assert info.value.code == "move_undefined"


def test_unknown_trigger_raises(machine: CompiledMachine) -> None:
    """A trigger the workflow does not have raises MoveUndefined, not KeyError."""
    with pytest.raises(MoveUndefined):
        machine.next_state("inquiry", "teleport", None)


def test_no_withdrawal_during_dosing(machine: CompiledMachine) -> None:
    """A client cannot be withdrawn while dosing (the clinician must discharge first)."""
    with pytest.raises(MoveUndefined):
        machine.next_state("dosing", "withdraw", None)
    with pytest.raises(MoveUndefined):
        machine.next_state("dosing", "hold", None)


@pytest.mark.parametrize("final", FINAL)
def test_nothing_leaves_a_final_state(machine: CompiledMachine, final: str) -> None:
    """Every trigger is undefined from a final state."""
    for trigger in KAP_PATHWAY.triggers():
        with pytest.raises(MoveUndefined):
            machine.next_state(final, trigger, "ready_for_kap")


def test_unknown_state_raises_move_undefined(machine: CompiledMachine) -> None:
    """A state the workflow does not define raises MoveUndefined like any other undefined move."""
    with pytest.raises(MoveUndefined):
        machine.next_state("nowhere", "hold", None)
