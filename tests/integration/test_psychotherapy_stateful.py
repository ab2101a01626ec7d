"""A Hypothesis state machine drives random commands at psychotherapy cases on a SQLite file and checks invariants."""

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
from typing import Any

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
from psychotherapy_support import CONSENT, INQUIRY, checkin, to_intake_booked
from strategies import (
    psychotherapy_actors,
    psychotherapy_facts,
    psychotherapy_intakes,
    psychotherapy_session_minutes,
    psychotherapy_trigger_data,
    psychotherapy_triggers,
    stateful_clock_steps,
)
from support import CLIENT, FRONT_DESK, THERAPIST

from kapflow import (
    Actor,
    CaseRecord,
    Engine,
    InvalidInput,
    KapflowError,
    NotPermitted,
    Outcome,
    Refused,
    TransitionBlocked,
    TransitionNotAvailable,
    UnknownCase,
    UnknownTrigger,
    build_engine,
)
from kapflow.domain.case import CaseFacts, Move, replay_events
from kapflow.domain.payload import canonical_json
from kapflow.testing import FakeClock
from kapflow.workflows.psychotherapy import build_psychotherapy_workflow

WORKFLOW = build_psychotherapy_workflow("stateful", questionnaire_every_sessions=2)
"""The psychotherapy pathway with check-ins due every 2 sessions, so that 40 steps reach them."""
THRESHOLDS = WORKFLOW.thresholds
STATES = {s.name for s in WORKFLOW.states}
FINAL = {s.name for s in WORKFLOW.states if s.final}
REACHED: Counter[str] = Counter()
"""For each state, in how many examples of the current run some case was seen in it (the coverage check)."""

KEYS = ("key-1", "key-2", "key-3")
MAX_CASES = 2


# ------------------------------------------------------------------ the rules, restated


def session_violations(facts: CaseFacts) -> list[str]:
    """Rules over a case's moves and facts: check-ins before sessions, billable length, inactivity."""
    problems: list[str] = []
    every = int(THRESHOLDS["questionnaire_every_sessions"])
    completed: list[datetime] = []
    started: datetime | None = None
    previous: Move | None = None
    scores = facts.of_kind("questionnaire")
    for m in facts.moves():
        if m.trigger == "start_session":
            started = m.at
            if len(completed) >= every:
                due = completed[len(completed) // every * every - 1]
                done = {f.data["instrument"] for f in scores if due <= f.at <= m.at}
                if done != {"PHQ-9", "GAD-7"}:
                    problems.append(f"session {len(completed) + 1} started without the check-in ({m.at})")
        elif m.trigger == "complete_session":
            assert started is not None
            if m.at - started < timedelta(minutes=THRESHOLDS["min_billable_minutes"]):
                problems.append(f"a session completed after {m.at - started} ({m.at})")
            completed.append(m.at)
        elif m.trigger == "complete_intake" and {f.data["instrument"] for f in scores if f.at <= m.at} != {
            "PHQ-9", "GAD-7",
        }:
            problems.append(f"intake completed without a baseline ({m.at})")
        elif m.trigger == "discharge_inactive":
            assert previous is not None
            if m.at - previous.at < timedelta(days=THRESHOLDS["inactivity_days"]):
                problems.append(f"discharged for inactivity {m.at - previous.at} after the last move ({m.at})")
        previous = m
    return problems


# ------------------------------------------------------------------ the machine


@dataclass(frozen=True)
class Snapshot:
    case: CaseRecord | None
    counts: tuple[int, int, int, tuple[tuple[str, int], ...]]


class CheckedEngine:
    """Looks like an Engine to the psychotherapy_support helpers; every command goes through the machine's checks."""

    def __init__(self, machine: PsychotherapyMachine) -> None:
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


def _command_id(command: tuple[str, str, str, Actor, Any]) -> str | None:
    op, case_id, name, actor, data = command
    try:
        body = canonical_json(data)
    except (TypeError, ValueError):
        return None
    return json.dumps([op, case_id, name, repr(actor), body])


class PsychotherapyMachine(RuleBasedStateMachine):
    """Random fires, facts and clock moves on up to two psychotherapy cases, each example on a fresh SQLite file."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="kapflow-psy-stateful-"))
        self.path = self.tmp / "stateful.db"
        self.clock = FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
        try:
            self.engine: Engine = build_engine(f"sqlite:///{self.path}", WORKFLOW, clock=self.clock)
        except BaseException:  # no teardown() runs for a machine that was never built
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.checked = CheckedEngine(self)
        self.case_ids: list[str] = []
        self.keyed: dict[str, tuple[str | None, Outcome]] = {}
        self.ended: dict[str, tuple[str, int]] = {}  # case -> (final state, transitions made) when first seen final
        self.seen: set[str] = set()

    def teardown(self) -> None:
        REACHED.update(self.seen)
        self.engine.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -------------------------------------------------------------- checking

    def _counts(self) -> tuple[int, int, int, tuple[tuple[str, int], ...]]:
        """Rows in cases, audit_events, idempotency_keys, and in every other table (timers, outbox, ...)."""
        with closing(sqlite3.connect(self.path)) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            n = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        main = ("cases", "audit_events", "idempotency_keys")
        others = tuple((t, c) for t, c in n.items() if t not in main)
        return n["cases"], n["audit_events"], n["idempotency_keys"], others

    def _case(self, case_id: str | None) -> CaseRecord | None:
        if not case_id:
            return None
        try:
            return self.engine.case(case_id)
        except (UnknownCase, InvalidInput):
            return None

    def command(
        self, case_id: str | None, command: tuple[str, str, str, Actor, Any], key: str | None,
        call: Callable[[], Outcome],
    ) -> Outcome:
        """Run one engine command and check what it wrote against what its result says."""
        before = Snapshot(self._case(case_id), self._counts())
        command_id = _command_id(command)
        known = self.keyed.get(key) if key else None
        try:
            out = call()
        except Refused as exc:
            self._check_refused(case_id, before, command, exc)
            raise
        except (InvalidInput, UnknownCase) as exc:
            event(f"invalid input: {type(exc).__name__}")
            self._check_nothing_written(case_id, before)
            raise
        if known is not None:
            assert command_id is not None and known[0] == command_id, "a reused key ran a different command"
            assert out == replace(known[1], replayed=True), (out, known[1])
            self._check_nothing_written(case_id, before)
            return out
        assert not out.replayed
        self._check_success(case_id, before, command, out, key)
        if key:
            self.keyed[key] = (command_id, out)
        return out

    def _check_nothing_written(self, case_id: str | None, before: Snapshot) -> None:
        assert self._counts() == before.counts
        if before.case is not None:
            assert self._case(case_id) == before.case

    def _check_refused(
        self, case_id: str | None, before: Snapshot, command: tuple[str, str, str, Actor, Any], exc: Refused
    ) -> None:
        """A refused command changes nothing but the audit history: one row, naming who and every blocker."""
        event(f"refused: {exc.code}")
        if before.case is None:  # open_case by a role that may not: no case to audit on
            assert isinstance(exc, NotPermitted)
            self._check_nothing_written(case_id, before)
            return
        after = self._case(case_id)
        assert after is not None
        b = before.case
        assert (after.state, after.previous_state, after.version, after.facts, after.updated_at) == (
            b.state, b.previous_state, b.version, b.facts, b.updated_at,
        )
        assert after.event_count == b.event_count + 1
        cases, events, keys, others = before.counts
        assert self._counts() == (cases, events + 1, keys, others)
        refusal = self.engine.history(after.id)[-1]
        actor = command[3]
        assert refusal.kind == "refused" and (refusal.actor, refusal.role) == (actor.id, actor.role)
        codes = [bl.code for bl in exc.blockers] if isinstance(exc, TransitionBlocked) else [exc.code]
        assert [x["code"] for x in refusal.blockers] == codes
        if command[0] == "fire" and b.state in FINAL:
            assert isinstance(exc, TransitionNotAvailable), exc  # a final state takes no transition

    def _check_success(
        self, case_id: str | None, before: Snapshot, command: tuple[str, str, str, Actor, Any], out: Outcome,
        key: str | None,
    ) -> None:
        cases, events, keys, _others = before.counts
        key_rows = keys + (1 if key else 0)
        if command[0] == "open":
            assert self._counts()[:3] == (cases + 1, events + 1, key_rows)
            self.case_ids.append(out.case_id)
            return
        assert before.case is not None
        after = self._case(case_id)
        assert after is not None
        assert self._counts()[:3] == (cases, events + 1, key_rows)
        assert after.version == before.case.version + 1 == out.version
        if command[0] == "record":
            assert after.state == before.case.state
            return
        assert before.case.state not in FINAL, f"{command[2]} left final state {before.case.state}"
        last = self.engine.history(after.id)[-1]
        assert last.kind == "transition" and last.trigger == command[2] == out.trigger
        assert (last.from_state, last.to_state) == (before.case.state, after.state)
        event(f"moved: {command[2]}")

    def _pick(self, i: int) -> str:
        return self.case_ids[i % len(self.case_ids)]

    # -------------------------------------------------------------------- rules

    @initialize()
    def open_first_case(self) -> None:
        self.checked.open_case(INQUIRY, actor=FRONT_DESK)

    @precondition(lambda self: len(self.case_ids) < MAX_CASES)
    @rule(intake=psychotherapy_intakes(), actor=psychotherapy_actors(), key=st.none() | st.sampled_from(KEYS))
    def open_case(self, intake: dict[str, Any], actor: Actor, key: str | None) -> None:
        with suppress(KapflowError):
            self.checked.open_case(intake, actor=actor, idempotency_key=key)

    @rule(i=st.integers(0, MAX_CASES - 1), trigger=psychotherapy_triggers(), actor=psychotherapy_actors(),
          data=psychotherapy_trigger_data(), key=st.none() | st.none() | st.sampled_from(KEYS))
    def fire_anything(self, i: int, trigger: str, actor: Actor, data: dict[str, Any] | None, key: str | None) -> None:
        """Any trigger, by any role, with any data: most are refused, some move the case."""
        with suppress(KapflowError):
            self.checked.fire(self._pick(i), trigger, actor=actor, data=data, idempotency_key=key)

    @rule(i=st.integers(0, MAX_CASES - 1), fact=psychotherapy_facts(), actor=psychotherapy_actors(),
          key=st.none() | st.none() | st.sampled_from(KEYS))
    def record_anything(self, i: int, fact: tuple[str, Any], actor: Actor, key: str | None) -> None:
        """Any fact, well-formed or not, by any role."""
        with suppress(KapflowError):
            self.checked.record(self._pick(i), fact[0], fact[1], actor=actor, idempotency_key=key)

    @rule(step=stateful_clock_steps())
    def advance_clock(self, step: timedelta) -> None:
        self.clock.advance(step)

    @rule(i=st.integers(0, MAX_CASES - 1), length=psychotherapy_session_minutes(), checkin_first=st.booleans())
    def push_along(self, i: int, length: int, checkin_first: bool) -> None:
        """One natural next step along the pathway, so that deep states are reached."""
        self._push(i, length, checkin_first)

    @rule(i=st.integers(0, MAX_CASES - 1), length=psychotherapy_session_minutes(), checkin_first=st.booleans())
    def push_along_again(self, i: int, length: int, checkin_first: bool) -> None:
        """The same as push_along: a second rule doubles the chance of going deeper."""
        self._push(i, length, checkin_first)

    @rule(i=st.integers(0, MAX_CASES - 1), trigger=psychotherapy_triggers())
    def probe(self, i: int, trigger: str) -> None:
        """check, available and cases write nothing."""
        case_id = self._pick(i)
        before = Snapshot(self._case(case_id), self._counts())
        with suppress(UnknownTrigger):
            self.engine.check(case_id, trigger, actor=CLIENT)
        self.engine.available(case_id)
        self.engine.cases(limit=10)
        self._check_nothing_written(case_id, before)

    def _push(self, i: int, length: int, checkin_first: bool) -> None:
        open_ids = [c for c in self.case_ids if self.engine.case(c).state not in FINAL]
        if not open_ids:
            return
        case_id = open_ids[i % len(open_ids)]
        state = self.engine.case(case_id).state
        e = self.checked
        with suppress(KapflowError):
            if state == "inquiry":
                to_intake_booked(e, self.clock, case_id)
            elif state == "intake_booked":
                e.record(case_id, "consent", CONSENT, actor=FRONT_DESK)
                e.fire(case_id, "start_intake", actor=THERAPIST)
            elif state == "intake_assessment":
                self.clock.advance(minutes=60)
                if length % 6 == 0:
                    e.fire(case_id, "refer_out", actor=THERAPIST, data={"reason": "synthetic: needs another service"})
                    return
                if checkin_first:
                    checkin(e, case_id)
                e.fire(case_id, "complete_intake", actor=THERAPIST, data={"goals": "steadier days"})
            elif state == "active_treatment":
                if length % 3 == 0 and self.engine.check(case_id, "discharge_inactive").allowed:
                    e.fire(case_id, "discharge_inactive", actor=FRONT_DESK)
                    return
                if length % 10 == 1:
                    e.fire(case_id, "discharge", actor=THERAPIST, data={"reason": "synthetic: goals met"})
                    return
                if checkin_first:
                    checkin(e, case_id)
                e.fire(case_id, "start_session", actor=THERAPIST)
            elif state == "in_session":
                self.clock.advance(minutes=length % 70)
                if length % 5 == 0:
                    e.fire(case_id, "end_session_early", actor=THERAPIST, data={"reason": "synthetic: unwell"})
                else:
                    e.fire(case_id, "complete_session", actor=THERAPIST)
            elif state == "on_hold":
                before = self.engine.case(case_id)
                out = e.fire(case_id, "resume", actor=FRONT_DESK)
                assert out.state == before.previous_state

    # --------------------------------------------------------------- invariants

    @invariant()
    def audit_chain_verifies(self) -> None:
        report = self.engine.verify_audit()
        assert report.ok, report.as_dict()
        assert report.cases == len(self.case_ids)

    @invariant()
    def every_case_is_in_a_defined_state_and_replays(self) -> None:
        for case_id in self.case_ids:
            case = self.engine.case(case_id)
            self.seen.add(case.state)
            event(f"state {case.state}")
            assert case.state in STATES and (case.previous_state is None or case.previous_state in STATES)
            history = self.engine.history(case_id)
            assert replay_events(history) == (case.state, case.previous_state, case.version, case.facts)
            assert [ev.case_seq for ev in history] == list(range(1, case.event_count + 1))
            violations = session_violations(CaseFacts(case.facts))
            assert not violations, violations

    @invariant()
    def final_states_take_no_transition(self) -> None:
        for case_id in self.case_ids:
            case = self.engine.case(case_id)
            moves = CaseFacts(case.facts).move_count()
            if case.state in FINAL:
                ended = self.ended.setdefault(case_id, (case.state, moves))
                assert ended == (case.state, moves), f"{case_id} moved after ending in {ended[0]}"
                assert self.engine.available(case_id) == []


STATEFUL_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI cannot pass or fail by luck
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_random_commands_keep_every_invariant() -> None:
    """Random fires, facts and clock moves never break a pathway rule, the audit chain or a final state."""
    REACHED.clear()
    run_state_machine_as_test(PsychotherapyMachine, settings=STATEFUL_SETTINGS)
    # the run must have gone deep, or the session invariants were never exercised
    assert REACHED["in_session"] >= 1 and REACHED["active_treatment"] >= 1, REACHED
    assert REACHED.keys() & FINAL, REACHED


def test_session_rule_check_catches_a_missed_check_in() -> None:
    """The restated rule flags a third session started without the check-in due after the second."""
    t = datetime(2026, 1, 5, 9, tzinfo=UTC)
    moves: list[dict[str, str]] = []
    for n in range(3):
        start = t + timedelta(days=7 * n)
        moves.append({"trigger": "start_session", "from": "active_treatment", "to": "in_session",
                      "at": start.isoformat()})
        if n < 2:
            moves.append({"trigger": "complete_session", "from": "in_session", "to": "active_treatment",
                          "at": (start + timedelta(minutes=50)).isoformat()})
    assert any("without the check-in" in p for p in session_violations(CaseFacts({"facts": [], "moves": moves})))


def test_session_rule_check_catches_a_short_session() -> None:
    """The restated rule flags a session completed ten minutes after it started."""
    t = datetime(2026, 1, 5, 9, tzinfo=UTC)
    moves = [
        {"trigger": "start_session", "from": "active_treatment", "to": "in_session", "at": t.isoformat()},
        {"trigger": "complete_session", "from": "in_session", "to": "active_treatment",
         "at": (t + timedelta(minutes=10)).isoformat()},
    ]
    assert any("completed after" in p for p in session_violations(CaseFacts({"facts": [], "moves": moves})))
