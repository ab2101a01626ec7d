"""The workflow-independent half of the Hypothesis state machines (tests/integration/test_*stateful.py).

``WorkflowMachine`` runs random commands on up to a few cases of one workflow, each example on a
fresh SQLite file, and checks every command against what it wrote: a refusal adds exactly one audit
row and changes nothing else, an invalid command or an idempotent replay writes nothing, a success
writes one audit row and moves the case as its result says, a final state takes no transition. Its
invariants: the audit chain verifies, every case's history replays to its row, and the workflow's
own rules (restated by each test module) hold over every case.

A workflow's machine subclasses ``command_rules(...)`` (this machine with the rules that open cases,
fire any trigger and record any fact, drawn from the workflow's strategies) and brings the rest: the
workflow, its first intake, how to build its engine, its rules restated (``rule_violations``,
``check_move``), its ``step`` along the pathway and the rules that take it. ``run_machine`` runs one
with fixed examples and returns the states it reached.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import closing, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from strategies import stateful_clock_steps
from support import CLIENT, FRONT_DESK

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor, AuditEvent, CaseFacts, CaseRecord, Outcome, replay_events
from kapflow.domain.payload import canonical_json
from kapflow.domain.workflow import Workflow
from kapflow.errors import (
    InvalidInput,
    KapflowError,
    NotPermitted,
    Refused,
    TransitionBlocked,
    TransitionNotAvailable,
    UnknownCase,
)
from kapflow.testing import FakeClock

Command = tuple[str, str, str, Actor, Any]
"""(op, case id, trigger or fact kind or initial state, actor, data): one command as the machine sent it."""
Counts = tuple[int, int, int, tuple[tuple[str, int], ...]]
"""Rows in cases, audit_events, idempotency_keys, and (name, rows) of every other table."""


def _posted_kinds(wf: Workflow) -> frozenset[str]:
    """The fact kinds the engine records after a command on its own: charges, good faith estimates."""
    billing = wf.billing
    if billing is None:
        return frozenset()
    return frozenset({billing.facts.charge, *((billing.estimate.kind,) if billing.estimate else ())})


def machine_settings(*, examples: int, steps: int) -> settings:
    """A state machine's Hypothesis settings: ``examples`` runs of ``steps`` commands, the same on every run."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI cannot pass or fail by luck
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@dataclass(frozen=True)
class Snapshot:
    case: CaseRecord | None
    counts: Counts


class CheckedEngine:
    """Looks like an Engine to the tests' pathway helpers; every command goes through the machine's checks."""

    def __init__(self, machine: WorkflowMachine) -> None:
        self._m = machine

    def open_case(self, intake: Mapping[str, Any], *, actor: Actor, idempotency_key: str | None = None) -> Outcome:
        return self._m.command(
            None, ("open", "", "inquiry", actor, intake), idempotency_key,
            lambda: self._m.engine.open_case(intake, actor=actor, idempotency_key=idempotency_key),
        )

    def fire(
        self, case_id: str, trigger: str, *, actor: Actor, data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        return self._m.command(
            case_id, ("fire", case_id, trigger, actor, data), idempotency_key,
            lambda: self._m.engine.fire(case_id, trigger, actor=actor, data=data, idempotency_key=idempotency_key),
        )

    def record(
        self, case_id: str, kind: str, data: Any, *, actor: Actor, idempotency_key: str | None = None
    ) -> Outcome:
        return self._m.command(
            case_id, ("record", case_id, kind, actor, data), idempotency_key,
            lambda: self._m.engine.record(case_id, kind, data, actor=actor, idempotency_key=idempotency_key),
        )


def command_id(command: Command) -> str | None:
    """What makes two commands the same for an idempotency key (None: data that is not JSON)."""
    op, case_id, name, actor, data = command
    try:
        body = canonical_json(data)
    except (TypeError, ValueError):
        return None
    return json.dumps([op, case_id, name, repr(actor), body])


class WorkflowMachine(RuleBasedStateMachine):
    """Checks every command and the invariants of any workflow; subclasses say which and add its rules."""

    workflow: ClassVar[Workflow]
    first_intake: ClassVar[Mapping[str, Any]]
    """The inquiry the front desk opens the first case with."""
    reached: ClassVar[Counter[str]] = Counter()
    """For each state, in how many examples of the current run some case was seen in it (the coverage check);
    each subclass counts on its own."""
    db_prefix: ClassVar[str] = "kapflow-stateful-"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.reached = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.states = {s.name for s in self.workflow.states}
        self.final = {s.name for s in self.workflow.states if s.final}
        self.tmp = Path(tempfile.mkdtemp(prefix=self.db_prefix))
        self.path = self.tmp / "stateful.db"
        self.clock = FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
        try:
            self.engine = self.make_engine(f"sqlite:///{self.path}", self.clock)
        except BaseException:  # no teardown() runs for a machine that was never built
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.store = self.engine.store
        self.checked = CheckedEngine(self)
        self.case_ids: list[str] = []
        self.keyed: dict[str, tuple[str | None, Outcome]] = {}
        self.ended: dict[str, tuple[str, int]] = {}  # case -> (final state, transitions made) when first seen final
        self.seen: set[str] = set()

    def teardown(self) -> None:
        self.reached.update(self.seen)
        self.engine.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------- the workflow's part

    def make_engine(self, url: str, clock: FakeClock) -> Engine:
        """The engine under test, running ``self.workflow`` on the SQLite file at ``url``."""
        raise NotImplementedError

    def rule_violations(self, case: CaseRecord) -> list[str]:
        """The workflow's rules, restated, over the case's whole history: what they find broken."""
        raise NotImplementedError

    def check_move(self, before: CaseRecord, move: AuditEvent) -> None:
        """Check one transition the engine allowed, against the case as it was just before it."""

    def step(self, case_id: str, state: str, **how: Any) -> None:
        """One natural next step along the pathway for a case in ``state`` (``how``: what the rule drew)."""
        raise NotImplementedError

    # -------------------------------------------------------------- checking

    def _counts(self) -> Counts:
        """Rows in cases, audit_events, idempotency_keys, and in every other table (timers, outbox, ...)."""
        with closing(sqlite3.connect(self.path)) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            n = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        main = ("cases", "audit_events", "idempotency_keys")
        others = tuple((t, c) for t, c in n.items() if t not in main)
        return n["cases"], n["audit_events"], n["idempotency_keys"], others

    def _snapshot(self, case_id: str | None) -> Snapshot:
        case = self.store.get_case(case_id) if case_id else None
        return Snapshot(case, self._counts())

    def command(self, case_id: str | None, command: Command, key: str | None, call: Callable[[], Outcome]) -> Outcome:
        """Run one engine command and check what it wrote against what its result says."""
        before = self._snapshot(case_id)
        cid = command_id(command)
        known = self.keyed.get(key) if key else None
        try:
            out = call()
        except Refused as exc:
            self._check_refused(case_id, before, command, exc)
            raise
        except (InvalidInput, UnknownCase) as exc:
            event(f"invalid input: {type(exc).__name__}")
            self._check_nothing_written(case_id, before)
            if known is not None and known[0] == cid and cid is not None:
                raise AssertionError(f"the same keyed command was not replayed: {exc!r}") from exc
            raise
        if known is not None:
            assert cid is not None and known[0] == cid, "a reused key ran a different command"
            assert out == replace(known[1], replayed=True), (out, known[1])
            self._check_nothing_written(case_id, before)
            event("idempotent replay")
            return out
        assert not out.replayed
        self._check_success(case_id, before, command, out, key)
        if key:
            self.keyed[key] = (cid, out)
        return out

    def _check_nothing_written(self, case_id: str | None, before: Snapshot) -> None:
        assert self._counts() == before.counts
        if case_id and before.case is not None:
            assert self.store.get_case(case_id) == before.case

    def _check_refused(self, case_id: str | None, before: Snapshot, command: Command, exc: Refused) -> None:
        """A refused command changes nothing but the audit history: one row, naming who and every blocker."""
        event(f"refused: {exc.code}")
        if case_id is None or before.case is None:  # open_case by a role that may not: no case to audit on
            assert isinstance(exc, NotPermitted)
            self._check_nothing_written(case_id, before)
            return
        after = self.store.get_case(case_id)
        assert after is not None
        b = before.case
        assert (after.state, after.previous_state, after.version, after.facts, after.updated_at) == (
            b.state, b.previous_state, b.version, b.facts, b.updated_at,
        )
        assert after.event_count == b.event_count + 1
        cases, events, keys, others = before.counts
        assert self._counts() == (cases, events + 1, keys, others)  # only the refusal's audit row
        refusal = self.store.history(case_id)[-1]
        actor = command[3]
        assert refusal.kind == "refused" and refusal.case_seq == after.event_count
        assert (refusal.actor, refusal.role) == (actor.id, actor.role)
        assert refusal.trigger == (command[2] if command[0] == "fire" else None)
        # Not available: the code, then what the state waits for (State.pending), if anything.
        codes = [bl.code for bl in exc.blockers] if isinstance(exc, TransitionBlocked) else [
            exc.code, *(bl.code for bl in getattr(exc, "blockers", ()))]
        assert codes and [x["code"] for x in refusal.blockers] == codes
        if command[0] == "fire" and b.state in self.final:
            assert isinstance(exc, TransitionNotAvailable), exc  # a final state takes no transition

    def _check_success(
        self, case_id: str | None, before: Snapshot, command: Command, out: Outcome, key: str | None
    ) -> None:
        cases, events, keys, _others = before.counts  # a change may add timers and outbox rows
        key_rows = keys + (1 if key else 0)
        if command[0] == "open":
            assert self._counts()[:3] == (cases + 1, events + 1, key_rows)
            self.case_ids.append(out.case_id)
            return
        assert before.case is not None and case_id is not None
        after = self.store.get_case(case_id)
        assert after is not None
        written = self.store.history(case_id)[before.case.event_count:]
        # After the command's own event, the engine's follow-ups, each a fact of its own: a move may cancel
        # appointments on entry (Transition.cancels); a visit completed or attended posts its charges, and a
        # plan set or extended its good faith estimate.
        follow = written[1:]
        posted = _posted_kinds(self.workflow)
        cancels = [ev for ev in follow if ev.data.get("kind") not in posted]
        assert command[0] == "fire" or not cancels
        assert all(ev.kind == "fact" and ev.data["fact"]["action"] == "cancel" for ev in cancels), cancels
        assert all(ev.kind == "fact" for ev in follow), follow
        assert self._counts()[:3] == (cases, events + 1 + len(follow), key_rows)
        assert after.version == before.case.version + 1 + len(follow) == out.version
        assert after.event_count == before.case.event_count + 1 + len(follow) == out.case_seq
        last = written[0]
        assert last.actor == command[3].id and last.role == command[3].role
        if command[0] == "record":
            assert last.kind == "fact" and after.state == before.case.state
            return
        assert before.case.state not in self.final, f"{command[2]} left final state {before.case.state}"
        assert last.kind == "transition" and last.trigger == command[2] == out.trigger
        assert (last.from_state, last.to_state) == (before.case.state, after.state)
        event(f"moved: {command[2]}")
        self.check_move(before.case, last)

    def check_reads_write_nothing(self, case_id: str, trigger: str, *, refused: type[KapflowError]) -> None:
        """check (by the client; ``refused`` may be raised), available and cases write nothing."""
        before = self._snapshot(case_id)
        with suppress(refused):
            self.engine.check(case_id, trigger, actor=CLIENT)
        self.engine.available(case_id)
        self.engine.cases(limit=10)
        assert self._snapshot(case_id) == before

    # ------------------------------------------------------------------ picking

    def _pick(self, i: int) -> str:
        return self.case_ids[i % len(self.case_ids)]

    def _push(self, i: int, **how: Any) -> None:
        """``step`` the ``i``-th case not yet in a final state, so that deep states are reached; a refused
        command ends the step (its checks have run)."""
        open_ids = [c for c in self.case_ids if self.engine.case(c).state not in self.final]
        if not open_ids:
            return
        case_id = open_ids[i % len(open_ids)]
        state = self.engine.case(case_id).state
        with suppress(KapflowError):
            self.step(case_id, state, **how)

    def _resume(self, case_id: str) -> None:
        """The front desk resumes a case on hold: it returns to the state it was held from."""
        before = self.engine.case(case_id)
        out = self.checked.fire(case_id, "resume", actor=FRONT_DESK)
        assert out.state == before.previous_state

    # -------------------------------------------------------------------- rules

    @initialize()
    def open_first_case(self) -> None:
        self.checked.open_case(self.first_intake, actor=FRONT_DESK)

    @rule(step=stateful_clock_steps())
    def advance_clock(self, step: timedelta) -> None:
        self.clock.advance(step)

    # --------------------------------------------------------------- invariants

    @invariant()
    def audit_chain_verifies(self) -> None:
        report = self.engine.verify_audit()
        assert report.ok, report.as_dict()
        assert report.cases == len(self.case_ids)

    @invariant()
    def every_case_replays_and_keeps_the_rules(self) -> None:
        for case_id in self.case_ids:
            case = self.engine.case(case_id)
            self.seen.add(case.state)
            event(f"state {case.state}")
            assert case.state in self.states and (case.previous_state is None or case.previous_state in self.states)
            history = self.engine.history(case_id)
            assert replay_events(history) == (case.state, case.previous_state, case.version, case.facts)
            assert [ev.case_seq for ev in history] == list(range(1, case.event_count + 1))
            assert case.version == 1 + sum(1 for ev in history if ev.kind in ("transition", "fact"))
            violations = self.rule_violations(case)
            assert not violations, violations

    @invariant()
    def final_states_take_no_transition(self) -> None:
        for case_id in self.case_ids:
            case = self.engine.case(case_id)
            moves = CaseFacts(case.facts).move_count()
            if case.state in self.final:
                ended = self.ended.setdefault(case_id, (case.state, moves))
                assert ended == (case.state, moves), f"{case_id} moved after ending in {ended[0]}"
                assert self.engine.available(case_id) == []


def run_machine(machine: type[WorkflowMachine], *, examples: int, steps: int) -> Counter[str]:
    """Run ``machine`` as a test, ``examples`` runs of ``steps`` commands, the same on every run; return for
    each state in how many examples some case was seen in it (``machine.reached``, for the coverage check)."""
    machine.reached.clear()
    run_state_machine_as_test(machine, settings=machine_settings(examples=examples, steps=steps))
    return machine.reached


def command_rules(
    *,
    intakes: st.SearchStrategy[dict[str, Any]],
    actors: st.SearchStrategy[Actor],
    triggers: st.SearchStrategy[str],
    trigger_data: st.SearchStrategy[dict[str, Any] | None],
    facts: st.SearchStrategy[tuple[str, Any]],
    keys: tuple[str, ...],
    max_cases: int,
) -> type[WorkflowMachine]:
    """A ``WorkflowMachine`` with the rules every workflow's machine has, drawing from the workflow's strategies:
    open a case (up to ``max_cases``), fire any trigger, record any fact, by any actor, with or without a key."""

    class WithCommands(WorkflowMachine):
        @precondition(lambda self: len(self.case_ids) < max_cases)
        @rule(intake=intakes, actor=actors, key=st.none() | st.sampled_from(keys))
        def open_case(self, intake: dict[str, Any], actor: Actor, key: str | None) -> None:
            with suppress(KapflowError):
                self.checked.open_case(intake, actor=actor, idempotency_key=key)

        @rule(i=st.integers(0, max_cases - 1), trigger=triggers, actor=actors, data=trigger_data,
              key=st.none() | st.none() | st.sampled_from(keys))
        def fire_anything(
            self, i: int, trigger: str, actor: Actor, data: dict[str, Any] | None, key: str | None
        ) -> None:
            """Any trigger, by any role, with any data: most are refused, some move the case."""
            with suppress(KapflowError):
                self.checked.fire(self._pick(i), trigger, actor=actor, data=data, idempotency_key=key)

        @rule(i=st.integers(0, max_cases - 1), fact=facts, actor=actors,
              key=st.none() | st.none() | st.sampled_from(keys))
        def record_anything(self, i: int, fact: tuple[str, Any], actor: Actor, key: str | None) -> None:
            """Any fact, well-formed or not, by any role."""
            with suppress(KapflowError):
                self.checked.record(self._pick(i), fact[0], fact[1], actor=actor, idempotency_key=key)

    return WithCommands
