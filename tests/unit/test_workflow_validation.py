"""Workflow definitions are validated when built; every problem is reported at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from kapflow.domain.appointments import AppointmentFacts
from kapflow.domain.case import PREVIOUS_STATE
from kapflow.domain.errors import Blocker, WorkflowDefinitionError
from kapflow.domain.facts import FactSpec, Text
from kapflow.domain.workflow import (
    ALL_FACTS,
    ClientFields,
    FactKind,
    GuardContext,
    Reminder,
    State,
    Transition,
    Workflow,
    validate,
)
from kapflow.workflows.kap import KAP_PATHWAY, THRESHOLDS, build_kap_workflow

STAFF = frozenset({"staff"})
INTAKE = FactSpec("inquiry", (Text("name"),))
BOOKING = FactSpec("appointment", (Text("kind"),))
CHANGE = FactSpec("appointment_update", (Text("appointment"),))


@dataclass(frozen=True)
class StubGuard:
    """A guard that never blocks and reads the thresholds it is given."""

    thresholds: tuple[str, ...] = ()

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        return None


def go(trigger: str, sources: tuple[str, ...], dest: str, **kw: Any) -> Transition:
    return Transition(trigger, sources, dest, kw.pop("roles", STAFF), **kw)


BASE_STATES = (State("a"), State("b"), State("done", final=True))
BASE_TRANSITIONS = (go("go", ("a",), "b"), go("finish", ("b",), "done"))


def build(**changes: Any) -> Workflow:
    """A small sound workflow a -go-> b -finish-> done, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "name": "mini",
        "version": "1",
        "initial": "a",
        "states": BASE_STATES,
        "transitions": BASE_TRANSITIONS,
        "roles": frozenset({"staff"}),
        "guards": {},
        "facts": {"inquiry": FactKind(INTAKE, STAFF)},
        "thresholds": {},
        "intake_fact": "inquiry",
    }
    fields.update(changes)
    return Workflow(**fields)


def problems_of(**changes: Any) -> tuple[str, ...]:
    with pytest.raises(WorkflowDefinitionError) as info:
        build(**changes)
    return info.value.problems


def with_reminder(reminder: Reminder, **changes: Any) -> tuple[str, ...]:
    """The problems of the base workflow with ``reminder`` in state b (it books evaluations, unless changed)."""
    states = (State("a"), State("b", reminders=(reminder,)), State("done", final=True))
    books = {"inquiry": FactKind(INTAKE, STAFF), "appointment": FactKind(BOOKING, STAFF),
             "appointment_update": FactKind(CHANGE, STAFF)}
    changes = {"facts": books, "appointments": AppointmentFacts(kinds=("evaluation",)), **changes}
    return problems_of(states=states, **changes)


def test_the_base_workflow_is_sound() -> None:
    """The hand-built base workflow validates, so each broken variant fails only for its own reason."""
    wf = build()
    assert validate(wf) == []
    assert wf.key == ("mini", "1")
    assert wf.transition_from("a", "go") is BASE_TRANSITIONS[0]


def test_unknown_guard_in_a_transition() -> None:
    """A transition naming a guard the workflow does not have is refused."""
    transitions = (go("go", ("a",), "b", guards=("ghost",)), BASE_TRANSITIONS[1])
    assert problems_of(transitions=transitions) == ("transition 'go' names unknown guard 'ghost'",)


def test_known_guard_in_a_transition_is_accepted() -> None:
    """The same transition is sound once the guard is registered."""
    transitions = (go("go", ("a",), "b", guards=("ghost",)), BASE_TRANSITIONS[1])
    assert validate(build(transitions=transitions, guards={"ghost": StubGuard()})) == []


def test_unknown_guard_in_a_fact_kind() -> None:
    """A fact kind naming a guard the workflow does not have is refused."""
    facts = {"inquiry": FactKind(INTAKE, STAFF, guards=("ghost",))}
    assert problems_of(facts=facts) == ("fact kind 'inquiry' names unknown guard 'ghost'",)


def test_staff_roles_must_be_roles_of_the_workflow() -> None:
    assert problems_of(staff_roles=frozenset({"staff", "janitor"})) == (
        "staff role 'janitor' is not one of the workflow's roles",
    )
    assert build(staff_roles=STAFF).staff_roles == STAFF


def test_read_access_names_only_the_workflow_s_roles_and_fact_kinds() -> None:
    """The minimum necessary is checked when the workflow loads: a typo would hide a kind or grant nothing."""
    assert problems_of(read_access={"ghost": frozenset({"inquiry"}), "staff": frozenset({"inquiry", "vitals"})}) == (
        "read access names role 'ghost', which is not one of the workflow's roles",
        "read access of 'staff' names fact kind 'vitals', which the workflow does not record",
    )
    everything = build(read_access={"staff": frozenset({ALL_FACTS})})
    assert everything.readable("staff") == frozenset(everything.facts)
    assert everything.readable("client") == frozenset()  # a role not named reads nothing


def test_unknown_role_in_a_transition() -> None:
    """A transition that may be fired by a role the workflow does not define is refused."""
    transitions = (go("go", ("a",), "b", roles=frozenset({"staff", "ghost"})), BASE_TRANSITIONS[1])
    assert problems_of(transitions=transitions) == ("transition 'go' names unknown role 'ghost'",)


def test_transition_without_roles() -> None:
    """A transition nobody may fire is refused."""
    transitions = (go("go", ("a",), "b", roles=frozenset()), BASE_TRANSITIONS[1])
    assert problems_of(transitions=transitions) == ("transition 'go' names no role that may fire it",)


def test_unknown_role_in_a_fact_kind() -> None:
    """A fact kind recordable by a role the workflow does not define is refused."""
    facts = {"inquiry": FactKind(INTAKE, frozenset({"ghost"}))}
    assert problems_of(facts=facts) == ("fact kind 'inquiry' names unknown role 'ghost'",)


def test_fact_kind_registered_under_another_name() -> None:
    """A fact kind whose key differs from its spec's kind is refused."""
    facts = {"inquiry": FactKind(INTAKE, STAFF), "note": FactKind(INTAKE, STAFF)}
    assert problems_of(facts=facts) == ("fact kind 'note' is registered with the spec of 'inquiry'",)


def test_intake_fact_must_be_recorded() -> None:
    """The fact a case opens with must be one of the recorded kinds."""
    assert problems_of(intake_fact="referral") == ("intake fact 'referral' is not a recorded fact kind",)


def test_unreachable_state() -> None:
    """A non-final state no path from the initial state reaches is refused."""
    states = (*BASE_STATES, State("island"))
    transitions = (*BASE_TRANSITIONS, go("leave", ("island",), "done"))
    assert problems_of(states=states, transitions=transitions) == (
        "state 'island' is unreachable: no path from 'a' reaches it",
    )


def test_unreachable_final_state() -> None:
    """A final state that no path reaches is refused, named as a final state."""
    states = (*BASE_STATES, State("lost", final=True))
    assert problems_of(states=states) == ("final state 'lost' is unreachable: no path from 'a' reaches it",)


def test_non_final_state_with_no_way_out() -> None:
    """A reachable non-final state with no outgoing transition is a dead end."""
    transitions = (go("go", ("a",), "b"), go("finish", ("a",), "done"))
    assert problems_of(transitions=transitions) == ("non-final state 'b' has no way out",)


def test_states_that_can_never_reach_a_final_state() -> None:
    """States caught in a loop with no exit to a final state are each reported."""
    states = (State("a"), State("b"), State("c"), State("done", final=True))
    transitions = (
        go("go", ("a",), "b"),
        go("next", ("b",), "c"),
        go("back", ("c",), "b"),
        go("finish", ("a",), "done"),
    )
    assert problems_of(states=states, transitions=transitions) == (
        "state 'b' can never reach a final state",
        "state 'c' can never reach a final state",
    )


def test_workflow_without_final_state() -> None:
    """A workflow with no final state is refused."""
    states = (State("a"), State("b"))
    transitions = (go("go", ("a",), "b"), go("back", ("b",), "a"))
    problems = problems_of(states=states, transitions=transitions)
    assert "the workflow has no final state" in problems
    assert "state 'a' can never reach a final state" in problems


def test_same_trigger_twice_from_one_state() -> None:
    """Two transitions with the same trigger from one state would be ambiguous."""
    transitions = (*BASE_TRANSITIONS, go("go", ("a",), "done"))
    assert problems_of(transitions=transitions) == ("trigger 'go' is defined 2 times from state 'a'",)


def test_same_trigger_from_different_states_is_fine() -> None:
    """One trigger may leave several states (as withdraw does in the KAP pathway)."""
    transitions = (*BASE_TRANSITIONS, go("quit", ("a",), "done"), go("quit", ("b",), "done"))
    assert validate(build(transitions=transitions)) == []


def test_final_state_with_outgoing_transition() -> None:
    """A final state must stay final: no transition may leave it."""
    transitions = (*BASE_TRANSITIONS, go("reopen", ("done",), "a"))
    assert problems_of(transitions=transitions) == ("transition 'reopen' leaves final state 'done'",)


def test_unknown_source_state() -> None:
    """A transition leaving a state that is not defined is refused."""
    transitions = (*BASE_TRANSITIONS, go("jump", ("nowhere",), "done"))
    assert problems_of(transitions=transitions) == ("transition 'jump' leaves unknown state 'nowhere'",)


def test_unknown_dest_state() -> None:
    """A transition entering a state that is not defined is refused."""
    transitions = (*BASE_TRANSITIONS, go("jump", ("a",), "nowhere"))
    assert problems_of(transitions=transitions) == ("transition 'jump' enters unknown state 'nowhere'",)


def test_transition_without_source() -> None:
    """A transition that leaves no state is refused."""
    transitions = (*BASE_TRANSITIONS, go("jump", (), "done"))
    assert problems_of(transitions=transitions) == ("transition 'jump' has no source state",)


def test_trigger_must_be_a_name() -> None:
    """A trigger must be a valid identifier (it becomes a method name in the machine)."""
    transitions = (*BASE_TRANSITIONS, go("jump now", ("a",), "done"))
    assert problems_of(transitions=transitions) == ("trigger 'jump now' is not a valid name",)


def test_unknown_initial_state() -> None:
    """The initial state must be one of the defined states."""
    assert problems_of(initial="start") == ("initial state 'start' is not a defined state",)


def test_duplicate_state() -> None:
    """A state defined twice is refused."""
    states = (*BASE_STATES, State("b"))
    assert problems_of(states=states) == ("state 'b' is defined twice",)


def test_missing_name_and_version() -> None:
    """A workflow needs a name and a version (cases are pinned to both)."""
    problems = problems_of(name="", version="")
    assert problems == ("the workflow has no name", "the workflow has no version")


GUARDED = (go("go", ("a",), "b", guards=("limit_check",)), go("finish", ("b",), "done"))
"""The small workflow with its guard named by a transition (a guard nothing names is refused)."""


def test_guard_reading_unknown_threshold() -> None:
    """A guard that reads a threshold the workflow does not define is refused."""
    guards = {"limit_check": StubGuard(("limit",))}
    assert problems_of(guards=guards, transitions=GUARDED) == ("guard 'limit_check' reads unknown threshold 'limit'",)


def test_guard_reading_known_threshold() -> None:
    """The same guard is sound once the threshold is defined."""
    assert validate(
        build(guards={"limit_check": StubGuard(("limit",))}, thresholds={"limit": 3}, transitions=GUARDED)
    ) == []


def test_reminder_for_unknown_role() -> None:
    """A reminder addressed to a role the workflow does not define is refused."""
    reminder = Reminder("r", "ghost", "email", "hello", after=timedelta(days=1))
    assert with_reminder(reminder) == ("reminder 'r' of state 'b' is for unknown role 'ghost'",)


def test_reminder_naming_unknown_guard() -> None:
    """A reminder sent only while an unknown guard blocks is refused."""
    reminder = Reminder("r", "staff", "email", "hello", after=timedelta(days=1), while_blocked_by="ghost")
    assert with_reminder(reminder) == ("reminder 'r' of state 'b' names unknown guard 'ghost'",)


def test_reminder_firing_a_trigger_that_does_not_leave_its_state() -> None:
    """A reminder may fire only a trigger that leaves the state it belongs to."""
    reminder = Reminder("r", "staff", "email", "hello", after=timedelta(days=1), fires="go")
    assert with_reminder(reminder) == ("reminder 'r' of state 'b' fires 'go', which does not leave 'b'",)


def test_reminder_firing_a_trigger_that_leaves_its_state() -> None:
    """A reminder firing a trigger that does leave its state is sound."""
    states = (
        State("a"),
        State("b", reminders=(Reminder("r", "staff", "email", "x", after=timedelta(days=1), fires="finish"),)),
        State("done", final=True),
    )
    worker_may = (go("go", ("a",), "b"), go("finish", ("b",), "done", roles=frozenset({"staff", "system"})))
    assert validate(build(states=states, transitions=worker_may, roles=frozenset({"staff", "system"}))) == []


def test_reminder_with_both_after_and_before_appointment() -> None:
    """A reminder counts either from entering the state or back from an appointment, not both."""
    reminder = Reminder(
        "r", "staff", "email", "hello",
        after=timedelta(days=1), before_appointment=timedelta(hours=24), appointment_kind="evaluation",
    )
    assert with_reminder(reminder) == (
        "reminder 'r' of state 'b' needs exactly one of 'after', 'before_appointment' or 'on_appointment'",
    )


def test_reminder_with_neither_after_nor_before_appointment() -> None:
    """A reminder with no time at all is refused."""
    reminder = Reminder("r", "staff", "email", "hello")
    assert with_reminder(reminder) == (
        "reminder 'r' of state 'b' needs exactly one of 'after', 'before_appointment' or 'on_appointment'",
    )


def test_reminder_before_appointment_needs_a_kind() -> None:
    """Counting back from an appointment needs the appointment's kind."""
    reminder = Reminder("r", "staff", "email", "hello", before_appointment=timedelta(hours=24))
    assert with_reminder(reminder) == (
        "reminder 'r' of state 'b' counts back from an appointment but names no appointment kind",
    )


def test_reminder_with_neither_channel_nor_trigger() -> None:
    """A reminder that neither sends on a channel nor fires a trigger does nothing and is refused."""
    reminder = Reminder("r", "staff", "", "hello", after=timedelta(days=1))
    assert with_reminder(reminder) == (
        "reminder 'r' of state 'b' names neither a channel to send on nor a trigger to fire",
    )


def test_single_return_to_previous_is_sound() -> None:
    """A hold/resume pair returning to the state the case came from is sound."""
    states = (*BASE_STATES, State("on_hold"))
    transitions = (
        *BASE_TRANSITIONS,
        go("hold", ("a", "b"), "on_hold"),
        go("resume", ("on_hold",), PREVIOUS_STATE),
    )
    assert validate(build(states=states, transitions=transitions)) == []


def test_return_to_previous_with_no_way_in_is_a_dead_end() -> None:
    """A return from a state nothing enters by an ordinary transition has nowhere to go."""
    states = (*BASE_STATES, State("limbo"))
    transitions = (*BASE_TRANSITIONS, go("resume", ("limbo",), PREVIOUS_STATE))
    problems = problems_of(states=states, transitions=transitions)
    assert "state 'limbo' is unreachable: no path from 'a' reaches it" in problems
    assert "non-final state 'limbo' has no way out" in problems


def test_nested_return_to_previous() -> None:
    """A return from a state that a return itself enters is refused (history is one level deep)."""
    states = (*BASE_STATES, State("hold1"), State("hold2"))
    transitions = (
        *BASE_TRANSITIONS,
        go("hold", ("a",), "hold1"),
        go("resume", ("hold1",), PREVIOUS_STATE),
        go("escalate", ("hold1",), "hold2"),
        go("deescalate", ("hold2",), PREVIOUS_STATE),
    )
    assert problems_of(states=states, transitions=transitions) == (
        "transition 'resume' returns from 'hold1', which is itself entered by a return; "
        "a return must go back to a state entered by an ordinary transition",
    )


def test_every_problem_is_reported_in_one_error() -> None:
    """A workflow broken five ways lists all five problems in a single error."""
    states = (
        State("a"),
        State("b", reminders=(Reminder("r", "ghost_role", "email", "x", after=timedelta(days=1)),)),
        State("done", final=True),
        State("island", final=True),
    )
    transitions = (
        go("go", ("a",), "b", guards=("ghost_guard",)),
        go("finish", ("b",), "done", roles=frozenset({"staff", "ghost_role"})),
        go("finish", ("b",), "done"),
    )
    expected = {
        "transition 'go' names unknown guard 'ghost_guard'",
        "transition 'finish' names unknown role 'ghost_role'",
        "trigger 'finish' is defined 2 times from state 'b'",
        "reminder 'r' of state 'b' is for unknown role 'ghost_role'",
        "final state 'island' is unreachable: no path from 'a' reaches it",
    }
    with pytest.raises(WorkflowDefinitionError) as info:
        build(states=states, transitions=transitions)
    assert set(info.value.problems) == expected
    assert len(info.value.problems) == len(expected)
    assert info.value.workflow == "mini"
    assert "(5 problems)" in info.value.message
    assert all(p in info.value.message for p in expected)


def test_kap_pathway_is_valid() -> None:
    """The shipped KAP pathway passes its own validation."""
    assert validate(KAP_PATHWAY) == []
    assert KAP_PATHWAY.key == ("kap", "1")
    assert KAP_PATHWAY.initial == "inquiry"
    assert {s.name for s in KAP_PATHWAY.states if s.final} == {"ineligible", "completed", "withdrawn"}


def test_with_thresholds_creates_a_new_version() -> None:
    """with_thresholds returns a new, valid version and leaves the original untouched."""
    tailored = KAP_PATHWAY.with_thresholds("2-practice", window_days=10, max_systolic=150)
    assert tailored is not KAP_PATHWAY
    assert tailored.key == ("kap", "2-practice")
    assert tailored.thresholds["window_days"] == 10
    assert tailored.thresholds["max_systolic"] == 150
    assert tailored.thresholds["evaluation_fee"] == THRESHOLDS["evaluation_fee"]
    assert KAP_PATHWAY.thresholds["window_days"] == 7
    assert KAP_PATHWAY.thresholds["max_systolic"] == 140
    assert validate(tailored) == []


def test_build_kap_workflow_with_thresholds() -> None:
    """build_kap_workflow applies threshold changes under the version it is given."""
    wf = build_kap_workflow("3", observation_minutes=150)
    assert wf.key == ("kap", "3")
    assert wf.thresholds["observation_minutes"] == 150


def test_with_thresholds_rejects_unknown_thresholds() -> None:
    """Changing a threshold the workflow does not define is refused, naming every unknown one."""
    with pytest.raises(WorkflowDefinitionError) as info:
        KAP_PATHWAY.with_thresholds("2", windows_days=10, max_sistolic=150)
    assert info.value.problems == ("unknown threshold 'max_sistolic'", "unknown threshold 'windows_days'")
    assert info.value.workflow == "kap"


def test_workflow_does_not_share_the_callers_dicts() -> None:
    """Changing the dicts a workflow was built from afterwards neither changes nor invalidates it."""
    guards: dict[str, Any] = {"ghost": StubGuard(("limit",))}
    thresholds = {"limit": 3}
    transitions = (go("go", ("a",), "b", guards=("ghost",)), BASE_TRANSITIONS[1])
    wf = build(transitions=transitions, guards=guards, thresholds=thresholds)
    guards.clear()
    thresholds["limit"] = 99
    assert wf.thresholds["limit"] == 3
    assert validate(wf) == []


def test_client_fields_must_be_fields_of_the_intake() -> None:
    """The fields that name and reach a client are fields of the intake fact, each reported."""
    client = ClientFields(name=("name", "surname"), in_messages=("nickname",), addresses={"email": "email"})
    assert problems_of(client=client) == (
        "client field 'email' is not a field of the intake fact 'inquiry'",
        "client field 'nickname' is not a field of the intake fact 'inquiry'",
        "client field 'surname' is not a field of the intake fact 'inquiry'",
    )


def test_appointment_facts_must_be_recorded() -> None:
    """The fact kinds a workflow says carry its appointments are fact kinds it records."""
    carriers = AppointmentFacts(kinds=("evaluation",), booking="visit", update="visit_change")
    assert problems_of(appointments=carriers) == (
        "appointment fact 'visit' is not a recorded fact kind",
        "appointment fact 'visit_change' is not a recorded fact kind",
    )


def test_a_reminder_speaks_only_of_appointments_the_workflow_books() -> None:
    """A reminder before an appointment needs a workflow that books appointments, of a kind it knows."""
    reminder = Reminder("r", "staff", "email", "t", before_appointment=timedelta(hours=24), appointment_kind="scan")
    assert with_reminder(reminder) == ("reminder 'r' of state 'b' names unknown appointment kind 'scan'",)
    assert with_reminder(reminder, appointments=None) == (
        "reminder 'r' of state 'b' speaks of an appointment, but the workflow books none",
    )


def test_a_reminder_fires_only_what_the_worker_may_fire() -> None:
    """A reminder that fires a trigger the worker's role may not fire would be refused every time: caught at load."""
    reminder = Reminder("r", "staff", "", "", after=timedelta(days=1), fires="finish")
    assert with_reminder(reminder) == (
        "reminder 'r' of state 'b' fires 'finish', which the worker's role 'system' may not fire",
    )
    states = (State("a"), State("b", reminders=(reminder,)), State("done", final=True))
    worker_may = (go("go", ("a",), "b"), go("finish", ("b",), "done", roles=frozenset({"staff", "system"})))
    assert validate(build(states=states, transitions=worker_may, roles=frozenset({"staff", "system"}))) == []
