"""A Hypothesis state machine drives random commands at psychotherapy cases on a SQLite file and checks invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st
from hypothesis.stateful import rule
from psychotherapy_support import CONSENT, INQUIRY, checkin, to_intake_booked
from stateful_support import command_rules, run_machine
from strategies import (
    psychotherapy_actors,
    psychotherapy_facts,
    psychotherapy_intakes,
    psychotherapy_session_minutes,
    psychotherapy_trigger_data,
    psychotherapy_triggers,
)
from support import FRONT_DESK, THERAPIST

from kapflow import CaseRecord, Engine, UnknownTrigger, build_engine
from kapflow.domain.case import CaseFacts, Move
from kapflow.testing import FakeClock
from kapflow.workflows.psychotherapy import build_psychotherapy_workflow

WORKFLOW = build_psychotherapy_workflow("stateful", questionnaire_every_sessions=2)
"""The psychotherapy pathway with check-ins due every 2 sessions, so that 40 steps reach them."""
THRESHOLDS = WORKFLOW.thresholds
FINAL = {s.name for s in WORKFLOW.states if s.final}

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


class PsychotherapyMachine(
    command_rules(
        intakes=psychotherapy_intakes(), actors=psychotherapy_actors(), triggers=psychotherapy_triggers(),
        trigger_data=psychotherapy_trigger_data(), facts=psychotherapy_facts(), keys=KEYS, max_cases=MAX_CASES,
    )
):
    """Random fires, facts and clock moves on up to two psychotherapy cases, each example on a fresh SQLite file.

    Every command and invariant is checked by tests/stateful_support.py; here: the psychotherapy rules,
    restated, and the rules that take cases along the pathway.
    """

    workflow = WORKFLOW
    first_intake = INQUIRY
    db_prefix = "kapflow-psy-stateful-"

    def make_engine(self, url: str, clock: FakeClock) -> Engine:
        return build_engine(url, WORKFLOW, clock=clock)

    def rule_violations(self, case: CaseRecord) -> list[str]:
        return session_violations(CaseFacts(case.facts))

    # -------------------------------------------------------------------- rules

    @rule(i=st.integers(0, MAX_CASES - 1), length=psychotherapy_session_minutes(), checkin_first=st.booleans())
    def push_along(self, i: int, length: int, checkin_first: bool) -> None:
        """One natural next step along the pathway, so that deep states are reached."""
        self._push(i, length=length, checkin_first=checkin_first)

    @rule(i=st.integers(0, MAX_CASES - 1), length=psychotherapy_session_minutes(), checkin_first=st.booleans())
    def push_along_again(self, i: int, length: int, checkin_first: bool) -> None:
        """The same as push_along: a second rule doubles the chance of going deeper."""
        self._push(i, length=length, checkin_first=checkin_first)

    @rule(i=st.integers(0, MAX_CASES - 1), trigger=psychotherapy_triggers())
    def probe(self, i: int, trigger: str) -> None:
        """check, available and cases write nothing."""
        self.check_reads_write_nothing(self._pick(i), trigger, refused=UnknownTrigger)

    def step(self, case_id: str, state: str, length: int, checkin_first: bool) -> None:  # type: ignore[override]
        """The next step from ``state``; ``length`` picks the way on and a session's minutes, ``checkin_first``
        whether the PHQ-9 and GAD-7 come first."""
        e = self.checked
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
            self._resume(case_id)


def test_random_commands_keep_every_invariant() -> None:
    """Random fires, facts and clock moves never break a pathway rule, the audit chain or a final state."""
    reached = run_machine(PsychotherapyMachine, examples=30, steps=40)
    # the run must have gone deep, or the session invariants were never exercised
    assert reached["in_session"] >= 1 and reached["active_treatment"] >= 1, reached
    assert reached.keys() & FINAL, reached


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
