"""A Hypothesis state machine drives random commands at a real SQLite file and checks the pathway's invariants."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule
from stateful_support import command_rules, run_machine
from strategies import (
    VALID_FACT_DATA,
    stateful_actors,
    stateful_facts,
    stateful_intakes,
    stateful_paperwork,
    stateful_trigger_data,
    stateful_triggers,
    stateful_valid_facts,
)
from support import CLIENT, FRONT_DESK, INQUIRY, PRESCRIBER, THERAPIST, prepare_dosing, to_ready

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor, AuditEvent, CaseFacts, CaseRecord, FactEntry, Move
from kapflow.errors import IdempotencyKeyReused, InvalidInput, KapflowError
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

WORKFLOW = KAP_PATHWAY.with_thresholds("stateful", reassess_every=2)
"""The KAP pathway with reassessment due every 2 sessions, so that 40 steps can reach it."""
THRESHOLDS = WORKFLOW.thresholds

KEYS = ("key-1", "key-2", "key-3", "key-4")
MAX_CASES = 2
PREPS = ("none", "none", "repair", "withdraw_consent", "expire_prescription", "end_plan")
"""Before a KAP session push_along may renew the paperwork, or spoil it for one attempt (which must be refused)."""
SYSTOLICS = (122, 122, 139, 141, 150)


# ------------------------------------------------------------------ the rules, restated


def _planned(facts: CaseFacts, dosings: list[datetime]) -> int | None:
    planned: int | None = None
    for f in facts.of_kind("treatment_plan"):
        if f.data["action"] == "set":
            planned = int(f.data["sessions"])
        elif f.data["action"] == "extend":
            planned = (planned or 0) + int(f.data["sessions"])
        else:
            planned = sum(1 for d in dosings if d <= f.at)
    return planned


def dosing_violations(before: CaseRecord, now: datetime) -> list[str]:
    """Which preconditions of entering dosing fail, judged from the case's facts just before the move."""
    facts = CaseFacts(before.facts)
    problems: list[str] = []
    fee = sum(
        (Decimal(str(f.data["amount"])) for f in facts.of_kind("payment") if f.data["purpose"] == "evaluation_fee"),
        Decimal(0),
    )
    if fee < Decimal(str(THRESHOLDS["evaluation_fee"])):
        problems.append(f"evaluation fee paid is only {fee}")
    today = now.date().isoformat()
    rx = facts.latest("prescription")  # a newer prescription supersedes the older ones
    if rx is None or not str(rx.data["issued_on"]) <= today <= str(rx.data["expires_on"]):
        problems.append("the latest prescription is not valid today")
    entries = facts.facts()
    consent = max((i for i, f in enumerate(entries) if f.kind == "consent"), default=-1)
    withdrawn = max((i for i, f in enumerate(entries) if f.kind == "consent_withdrawn"), default=-1)
    if consent < 0 or withdrawn > consent:
        problems.append("no standing signed consent")
    if _safety_signal_waiting(entries):
        problems.append("a PHQ-9 answered above 0 on item 9 has had no safety assessment since")
    moves = facts.moves()
    if not any(m.trigger == "complete_intention_setting" for m in moves):
        problems.append("intention setting never completed")
    dosings = [m.at for m in moves if m.trigger == "start_kap_session"]
    planned = _planned(facts, dosings)
    if planned is None or len(dosings) + 1 > planned:
        problems.append(f"session {len(dosings) + 1} exceeds the plan ({planned})")
    window_start = now - timedelta(minutes=THRESHOLDS["predose_window_minutes"])
    if dosings and dosings[-1] > window_start:
        window_start = dosings[-1]
    readings = [v for v in facts.of_kind("vitals") if v.data["phase"] == "pre_dose" and v.at >= window_start]
    if not readings:
        problems.append("no pre-dose vitals")
    elif (int(readings[-1].data["systolic"]) > THRESHOLDS["max_systolic"]
          or int(readings[-1].data["diastolic"]) > THRESHOLDS["max_diastolic"]):
        problems.append("pre-dose blood pressure above the limit")
    return problems


def _safety_signal_waiting(entries: list[FactEntry]) -> bool:
    """Whether the latest PHQ-9 answered above 0 on item 9 has no safety assessment recorded after it."""
    waiting = False
    for f in entries:
        if f.kind == "safety_assessment":
            waiting = False
        elif f.kind == "questionnaire" and f.data["instrument"] == "PHQ-9" and len(f.data.get("items") or ()) == 9:
            waiting = waiting or int(f.data["items"][8]) > 0
    return waiting


def sequence_violations(moves: list[Move]) -> list[str]:
    """Rules over a case's whole move history: integration between sessions, reassessment, frequency."""
    problems: list[str] = []
    since_integration = 0
    since_reassessment = 0
    dosings: list[datetime] = []
    for m in moves:
        if m.trigger == "start_kap_session":
            since_integration += 1
            since_reassessment += 1
            dosings.append(m.at)
            if since_integration > 1:
                problems.append(f"two start_kap_session moves without complete_integration ({m.at})")
            if since_reassessment > THRESHOLDS["reassess_every"]:
                problems.append(f"{since_reassessment} sessions since the last reassessment ({m.at})")
            window = [d for d in dosings if d > m.at - timedelta(days=THRESHOLDS["window_days"])]
            if len(window) > THRESHOLDS["max_sessions_per_window"]:
                problems.append(f"{len(window)} sessions within {THRESHOLDS['window_days']} days ({m.at})")
        elif m.trigger == "complete_integration":
            since_integration = 0
        elif m.trigger == "complete_reassessment":
            since_reassessment = 0
    return problems


# ------------------------------------------------------------------ the machine


class KapMachine(
    command_rules(
        intakes=stateful_intakes(), actors=stateful_actors(), triggers=stateful_triggers(),
        trigger_data=stateful_trigger_data(), facts=stateful_facts(), keys=KEYS, max_cases=MAX_CASES,
    )
):
    """Random fires, facts and clock moves on up to two KAP cases, each example on a fresh SQLite file.

    tests/stateful_support.py checks every command and the invariants; this class brings the KAP rules,
    restated, and the rules that take cases along the pathway.
    """

    workflow = WORKFLOW
    first_intake = INQUIRY

    def make_engine(self, url: str, clock: FakeClock) -> Engine:
        return Engine(SqlStore(url), WORKFLOW, clock=clock)

    def rule_violations(self, case: CaseRecord) -> list[str]:
        return sequence_violations(CaseFacts(case.facts).moves())

    def check_move(self, before: CaseRecord, move: AuditEvent) -> None:
        if move.trigger == "start_kap_session":
            event("entered dosing")
            violations = dosing_violations(before, move.at)
            assert not violations, violations

    # -------------------------------------------------------------------- rules

    @rule(i=st.integers(0, MAX_CASES - 1), change=stateful_paperwork(),
          actor=st.sampled_from([PRESCRIBER, THERAPIST, CLIENT]))
    def change_paperwork(self, i: int, change: tuple[str, int, int], actor: Actor) -> None:
        """A prescription (maybe expired or not yet valid), consent signed or withdrawn, or a plan change."""
        what, a, b = change
        today = self.clock.now().date()
        if what == "prescription":
            issued = today + timedelta(days=a)
            kind, data = "prescription", {"prescriber": "NP Sample", "issued_on": issued.isoformat(),
                                          "expires_on": (issued + timedelta(days=b)).isoformat()}
        elif what == "plan":
            kind, data = "treatment_plan", {"action": ("set", "extend", "end_early")[a],
                                            **({"sessions": b} if a < 2 else {})}
        elif what == "consent":
            kind, data = what, {"form_version": "v2", "signed_on": today.isoformat()}
        else:
            kind, data = what, {"withdrawn_on": today.isoformat()}
        with suppress(KapflowError):
            self.checked.record(self._pick(i), kind, data, actor=actor)

    @rule(i=st.integers(0, MAX_CASES - 1), prep=st.sampled_from(PREPS), systolic=st.sampled_from(SYSTOLICS))
    def push_along(self, i: int, prep: str, systolic: int) -> None:
        """One natural next step along the pathway (helpers from tests/support.py), so deep states are reached."""
        self._push(i, prep=prep, systolic=systolic)

    @rule(i=st.integers(0, MAX_CASES - 1), prep=st.sampled_from(PREPS), systolic=st.sampled_from(SYSTOLICS))
    def push_along_again(self, i: int, prep: str, systolic: int) -> None:
        """The same as push_along: a second rule doubles the chance of going deeper."""
        self._push(i, prep=prep, systolic=systolic)

    def _start_session(self, case_id: str, prep: str, systolic: int) -> None:
        """Start a KAP session; a spoiled prerequisite must make the engine refuse, and is then put right."""
        e, today = self.checked, self.clock.now().date()
        valid_rx = {"prescriber": "NP Sample", "issued_on": today.isoformat(),
                    "expires_on": (today + timedelta(days=120)).isoformat()}
        consent = {"form_version": "2026-01", "signed_on": today.isoformat()}
        if prep == "repair":
            e.record(case_id, "prescription", valid_rx, actor=PRESCRIBER)
            e.record(case_id, "consent", consent, actor=THERAPIST)
            e.record(case_id, "prescriber_checkin", {"prescriber": "NP Sample"}, actor=PRESCRIBER)
        elif prep == "withdraw_consent":
            e.record(case_id, "consent_withdrawn", {"withdrawn_on": today.isoformat()}, actor=CLIENT)
        elif prep == "expire_prescription":
            e.record(case_id, "prescription", {
                "prescriber": "NP Sample", "issued_on": (today - timedelta(days=60)).isoformat(),
                "expires_on": (today - timedelta(days=1)).isoformat(),
            }, actor=PRESCRIBER)
        elif prep == "end_plan":
            e.record(case_id, "treatment_plan", {"action": "end_early"}, actor=PRESCRIBER)
        prepare_dosing(e, case_id, systolic=systolic)  # type: ignore[arg-type]
        try:
            e.fire(case_id, "start_kap_session", actor=THERAPIST)
        finally:
            if prep == "withdraw_consent":
                self.clock.advance(minutes=1)
                e.record(case_id, "consent", consent, actor=THERAPIST)
            elif prep == "expire_prescription":
                e.record(case_id, "prescription", valid_rx, actor=PRESCRIBER)
            elif prep == "end_plan":
                e.record(case_id, "treatment_plan", {"action": "extend", "sessions": 2}, actor=PRESCRIBER)

    @rule(i=st.integers(0, MAX_CASES - 1), trigger=stateful_triggers(), kind=st.sampled_from(["consent", "vitals"]))
    def probe(self, i: int, trigger: str, kind: str) -> None:
        """Unknown and malformed case ids are rejected; check, available and cases write nothing."""
        for case_id in ("case-does-not-exist", "bad id"):
            with suppress(KapflowError):
                self.checked.record(case_id, kind, {}, actor=PRESCRIBER)
        self.check_reads_write_nothing(self._pick(i), trigger, refused=InvalidInput)

    def step(self, case_id: str, state: str, prep: str, systolic: int) -> None:  # type: ignore[override]
        """The next step from ``state`` (helpers from tests/support.py); ``prep`` and ``systolic`` shape a session."""
        e = self.checked
        if state == "inquiry":
            to_ready(e, self.clock, case_id, sessions=6)  # type: ignore[arg-type]
        elif state == "evaluation_booked":
            e.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
            e.fire(case_id, "start_evaluation", actor=PRESCRIBER)
        elif state == "evaluating":
            e.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
            e.fire(case_id, "find_suitable", actor=PRESCRIBER)
        elif state == "evaluated":
            e.fire(case_id, "start_intention_setting", actor=THERAPIST)
        elif state == "intention_setting":
            e.fire(case_id, "complete_intention_setting", actor=THERAPIST, data={"intentions": "steady"})
        elif state == "ready_for_kap":
            codes = {b.code for b in self.engine.check(case_id, "start_kap_session").blockers}
            if codes & {"reassessment_due", "plan_sessions_used"}:
                e.fire(case_id, "begin_reassessment", actor=PRESCRIBER)
                return
            if "session_frequency_exceeded" in codes:
                self.clock.advance(days=1)
            self._start_session(case_id, prep, systolic)
        elif state == "dosing":
            self.clock.advance(minutes=120)
            e.record(case_id, "vitals", {"phase": "post_dose", "systolic": 121, "diastolic": 79}, actor=THERAPIST)
            e.record(case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True},
                     actor=THERAPIST)
            e.fire(case_id, "discharge", actor=THERAPIST)
        elif state == "integration_psychotherapy":
            self.clock.advance(minutes=60)
            e.fire(case_id, "complete_integration", actor=THERAPIST)
        elif state == "integration_session":
            e.fire(case_id, "complete_integration_session", actor=THERAPIST)
        elif state == "reassessment":
            if prep == "repair":
                e.record(case_id, "treatment_plan", {"action": "extend", "sessions": 2}, actor=PRESCRIBER)
            e.fire(case_id, "complete_reassessment", actor=PRESCRIBER)
        elif state == "on_hold":
            self._resume(case_id)


def test_random_commands_keep_every_invariant() -> None:
    """Random fires, facts and clock moves never break a pathway rule, the audit chain or the projection."""
    reached = run_machine(KapMachine, examples=30, steps=50)
    # the run must have gone deep, or the dosing invariants were never exercised
    assert reached["dosing"] >= 1 and reached["integration_psychotherapy"] >= 1, reached


def test_dosing_rule_check_catches_a_missing_fee() -> None:
    """The restated dosing rule itself flags an unpaid fee, so the state machine's check can fail."""
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    fact = {"kind": "consent", "at": now.isoformat(), "by": "x", "data": {}}
    case = CaseRecord("case-x", "kap", "1", "ready_for_kap", None, 1, 1, "", {"facts": [fact], "moves": []},
                      now, now)
    problems = dosing_violations(case, now)
    assert any("fee" in p for p in problems) and any("prescription" in p for p in problems)
    assert not any("consent" in p for p in problems)


def test_dosing_rule_check_catches_an_unresolved_safety_signal() -> None:
    """The restated rule flags a PHQ-9 answered above 0 on item 9 with no safety assessment after it."""
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)

    def fact(kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, "at": now.isoformat(), "by": "x", "data": data}

    signal = fact("questionnaire", {"instrument": "PHQ-9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 2]})
    calm = fact("questionnaire", {"instrument": "PHQ-9", "items": [0] * 9})
    assessed = fact("safety_assessment", {"screen": "asq", "screen_result": "low_risk", "plan": "p"})

    def flagged(*facts: dict[str, Any]) -> bool:
        case = CaseRecord("case-x", "kap", "1", "ready_for_kap", None, 1, 1, "", {"facts": list(facts), "moves": []},
                          now, now)
        return any("item 9" in p for p in dosing_violations(case, now))

    assert flagged(signal) and flagged(signal, calm) and flagged(assessed, signal)
    assert not flagged(signal, assessed) and not flagged(calm)


def test_sequence_rule_check_catches_back_to_back_sessions() -> None:
    """The restated sequence rule flags two sessions without an integration between them."""
    t = datetime(2026, 1, 5, 9, tzinfo=UTC)
    moves = [Move("start_kap_session", "ready_for_kap", "dosing", t),
             Move("start_kap_session", "ready_for_kap", "dosing", t + timedelta(days=1))]
    assert any("without complete_integration" in p for p in sequence_violations(moves))
    assert not sequence_violations([moves[0], Move("complete_integration", "i", "r", t), moves[1]])


def test_stateful_strategies_cover_every_fact_kind() -> None:
    """Every fact kind the workflow records (but the intake) has a valid-data strategy, so none goes untried."""
    assert set(VALID_FACT_DATA) | {WORKFLOW.intake_fact} == set(WORKFLOW.facts)


@given(fact=stateful_valid_facts())
@settings(max_examples=150, deadline=None)
def test_valid_fact_strategies_pass_their_specs(fact: tuple[str, Any]) -> None:
    """What the strategies call valid is accepted by the fact specs (the guards may still refuse it)."""
    kind, data = fact
    WORKFLOW.facts[kind].spec(data, datetime(2026, 1, 5, 9, tzinfo=UTC))


def test_idempotency_key_reuse_is_classified_as_invalid_input() -> None:
    """IdempotencyKeyReused is an InvalidInput, which the machine's nothing-written branch relies on."""
    assert issubclass(IdempotencyKeyReused, InvalidInput)
