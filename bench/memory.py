"""Steps per second on the same path without a database, each family timed as a block (``blocks``).

Per-step interleaving (as the durable families use) would charge each microsecond step with the
cost of reading two clocks and with the caches another family just evicted; blocks of a whole
repetition, in rotating order, with the medians compared, do not.

- kapflow: what ``engine.fire`` does between reading and writing the case row: find the transition,
  check the role, evaluate every KAP guard of it on the case's projection (``CaseFacts``), move with
  the compiled shared ``transitions`` machine, fold the move into the projection. No hashing, no
  timer planning, no SQL. Each case has its own parsed projection (about 17 KB of objects), as the
  store keeps it for a case it committed last: a step reads its case's data from wherever the last
  step on that case left it, not from the processor's caches.
- transitions_bare: one shared ``transitions.Machine`` (``model=None``, ``auto_transitions=False``)
  over ``paths.STATES``, each transition with one trivial condition, fired on a plain object.
- transitions_per_fire_machine: a ``transitions.Machine`` built on the case object for every fire
  with the library's defaults (``auto_transitions=True``), as a naive request handler would;
  ``transitions_per_fire_machine_no_auto`` is the same with ``auto_transitions=False``, and
  ``transitions_per_fire_machine_whole_pathway`` builds the whole KAP pathway's machine (14 states)
  with the defaults, as a handler serving the real workflow would; the headline figure uses the
  8-state machine of the path, like every other family.
- python_statemachine: a ``StateMachine`` class with the same 8 transitions (trivial conditions),
  one instance per case.
- spiff: a SpiffWorkflow ``BpmnWorkflow`` per case on ``kap8.bpmn``, its user task completed and the
  engine stepped; the parsed spec is shared.

Instances are created before the timing, as kapflow's cases are opened before it (and as the durable
families prepare theirs): creating them is opening a case, not a step of the path. Counted in the
steps, it was a third of Spiff's time, and ``vs_spiff`` read 1.4 times what it is.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import spiff_kap8
from measure import Op, Sizes, median, rate, rotate
from paths import DISCHARGE, FRONT_DESK, INTAKE, OBSERVATION, PATH, START, STATES, TRIGGERS, facts_for
from statemachine import State, StateMachine
from transitions import Machine

from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.payload import canonical_json, check_payload
from kapflow.domain.verdict import evaluate
from kapflow.domain.workflow import GuardContext
from kapflow.machine import compiled
from kapflow.workflows.kap import KAP_PATHWAY


def _always(*_args: object, **_kwargs: object) -> bool:
    return True


TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": s.trigger, "source": s.source, "dest": s.dest, "conditions": [_always]} for s in PATH
]


class Plain:
    """The case object the ``transitions`` machines fire on (a per-fire Machine adds methods to it)."""

    trigger: Callable[[str], bool]  # added by a Machine built on the object

    def __init__(self, state: str) -> None:
        self.state = state


class Kap8(StateMachine):
    inquiry = State(initial=True)
    evaluation_booked = State()
    evaluating = State()
    evaluated = State()
    intention_setting = State()
    ready_for_kap = State()
    dosing = State()
    integration_psychotherapy = State()

    book_evaluation = inquiry.to(evaluation_booked, cond="ok")
    start_evaluation = evaluation_booked.to(evaluating, cond="ok")
    find_suitable = evaluating.to(evaluated, cond="ok")
    start_intention_setting = evaluated.to(intention_setting, cond="ok")
    complete_intention_setting = intention_setting.to(ready_for_kap, cond="ok")
    start_kap_session = ready_for_kap.to(dosing, cond="ok")
    discharge = dosing.to(integration_psychotherapy, cond="ok")
    complete_integration = integration_psychotherapy.to(ready_for_kap, cond="ok")

    def ok(self) -> bool:
        return True


def projection_text() -> str:
    """The text of a case's projection once the path's facts are recorded, as stored in its row."""
    wf = KAP_PATHWAY
    intake = wf.facts[wf.intake_fact].spec(check_payload(INTAKE), START)
    facts = fold_fact({}, wf.intake_fact, START, FRONT_DESK.id, intake)
    for kind, data, actor in facts_for(START):
        facts = fold_fact(facts, kind, START, actor.id, wf.facts[kind].spec(check_payload(data), START))
    return canonical_json(facts)


def prepared_projections(cases: int) -> list[dict[str, Any]]:
    """Each case's projection, parsed from its own copy of the text, as the engine holds it per case.

    One object shared by every case would keep a single case's data in the processor's caches for
    all of them and flatter the step by a fifth (measured at 1,500 cases: 77k against 61k steps/s);
    every other family's cases own their objects too.
    """
    text = projection_text()
    return [json.loads(text) for _ in range(cases)]


def kapflow(cases: int) -> Op:
    wf = KAP_PATHWAY
    machine = compiled(wf)
    facts = prepared_projections(cases)
    states = [PATH[0].source] * cases
    previous: list[str | None] = [None] * cases
    ids = [f"case-{c}" for c in range(cases)]  # the engine has the id from the case row
    # Each fire has an instant of its own, which the engine reads off its clock: microseconds before
    # the facts' instant until the dosing, after the observation since. Made here, as a clock would
    # have them ready; formatting them (folding the move) is part of the step.
    before = [START - timedelta(microseconds=c) for c in range(cases)]
    after = [START + OBSERVATION + timedelta(microseconds=c) for c in range(cases)]

    def op(s: int, c: int) -> None:
        step = PATH[s]
        state = states[c]
        now = after[c] if s >= DISCHARGE else before[c]
        transition = wf.transition_from(state, step.trigger)
        if transition is None or step.actor.role not in transition.roles:
            raise RuntimeError(f"{step.trigger} not allowed from {state}")
        ctx = GuardContext(ids[c], state, step.trigger, CaseFacts(facts[c]), now, wf.thresholds, step.data)
        verdict = evaluate(wf, transition, ctx)
        if not verdict.allowed:
            raise RuntimeError(f"{step.trigger} blocked: {[b.code for b in verdict.blockers]}")
        dest = machine.next_state(state, step.trigger, previous[c])
        facts[c] = fold_move(facts[c], step.trigger, state, dest, now)
        previous[c], states[c] = state, dest

    return op


def transitions_bare(cases: int) -> Op:
    machine = Machine(model=None, states=list(STATES), transitions=TRANSITIONS, initial=STATES[0],
                      auto_transitions=False)
    objs = [Plain(STATES[0]) for _ in range(cases)]
    events = machine.events

    def op(s: int, c: int) -> None:
        if not events[TRIGGERS[s]].trigger(objs[c]):
            raise RuntimeError("the bare machine refused a move")

    return op


# The whole KAP pathway as plain ``transitions`` data (14 states, every transition but the
# return-to-previous ``resume``, which the path never takes), for the per-fire Machine of the workflow.
KAP_STATES = [s.name for s in KAP_PATHWAY.states]
KAP_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": t.trigger, "source": list(t.sources), "dest": t.dest, "conditions": [_always]}
    for t in KAP_PATHWAY.transitions
    if t.dest in KAP_STATES
]


def per_fire_machine(auto_transitions: bool, whole_pathway: bool = False) -> Callable[[int], Op]:
    states_list = KAP_STATES if whole_pathway else list(STATES)
    transitions = KAP_TRANSITIONS if whole_pathway else TRANSITIONS

    def make(cases: int) -> Op:
        states = [STATES[0]] * cases

        def op(s: int, c: int) -> None:
            case = Plain(states[c])  # as loaded from a database row
            if auto_transitions:
                Machine(model=case, states=states_list, transitions=transitions, initial=case.state)
            else:
                Machine(model=case, states=states_list, transitions=transitions, initial=case.state,
                        auto_transitions=False)
            if not case.trigger(TRIGGERS[s]):
                raise RuntimeError("the per-fire machine refused a move")
            states[c] = case.state

        return op

    return make


def python_statemachine(cases: int) -> Op:
    machines = [Kap8() for _ in range(cases)]

    def op(s: int, c: int) -> None:
        machines[c].send(TRIGGERS[s])

    return op


def spiff(cases: int) -> Op:
    flows = [spiff_kap8.start() for _ in range(cases)]  # the spec parsed once, by the first

    def op(s: int, c: int) -> None:
        spiff_kap8.step(flows[c], TRIGGERS[s])

    return op


def blocks(makers: dict[str, tuple[Callable[[int], Op], int]], repetitions: int) -> dict[str, list[float]]:
    """Steps per second of each family, once per repetition: its whole path on its cases in one block.

    The order of the families rotates from repetition to repetition, and the garbage collector runs
    before each block, so each family pays for its own garbage (a Machine per fire leaves cycles that
    the collector must find) and not for another's.
    """
    runs: dict[str, list[float]] = {name: [] for name in makers}
    for rep in range(repetitions):
        for name in rotate(list(makers), rep):
            make, cases = makers[name]
            op = make(cases)
            gc.collect()
            start = time.perf_counter()
            for s in range(len(PATH)):
                for c in range(cases):
                    op(s, c)
            runs[name].append(rate(len(PATH) * cases, time.perf_counter() - start))
    return runs


def run(sizes: Sizes) -> dict[str, Any]:
    """The ``memory`` section of results.json."""
    n, few = sizes.memory_cases, sizes.per_fire_cases
    runs = blocks(
        {
            "kapflow": (kapflow, n),
            "transitions_bare": (transitions_bare, n),
            # The naive handler builds the machine of the case's workflow: the whole KAP pathway.
            "transitions_per_fire_machine": (per_fire_machine(True, whole_pathway=True), few),
            "transitions_per_fire_machine_no_auto": (per_fire_machine(False), few),
            "transitions_per_fire_machine_path_only": (per_fire_machine(True), few),
            "python_statemachine": (python_statemachine, n),
            "spiff": (spiff, n),
        },
        sizes.repetitions,
    )
    result: dict[str, Any] = {name: median(values) for name, values in runs.items()}
    k = result["kapflow"]
    result["vs_bare"] = k / result["transitions_bare"]
    result["vs_per_fire_machine"] = k / result["transitions_per_fire_machine"]
    result["vs_spiff"] = k / result["spiff"]
    result["vs_python_statemachine"] = k / result["python_statemachine"]
    result["vs_per_fire_machine_path_only"] = k / result["transitions_per_fire_machine_path_only"]
    result["measures"] = (
        "steps/s on the 8-step path in one process, no database, each family a block of its own per repetition "
        "(order rotating, garbage collected before each); kapflow = transition lookup + role + every KAP guard "
        "on the projection + the compiled shared machine + folding the move into the projection"
    )
    result["steps_per_repetition"] = {"main": n * len(PATH), "per_fire": few * len(PATH)}
    result["per_repetition"] = runs
    return result
