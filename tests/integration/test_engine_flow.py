"""The engine drives KAP cases through the pathway on a real database (SQLite file; PostgreSQL when configured)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect, text
from support import (
    AUDITOR,
    BILLING,
    CLIENT,
    FRONT_DESK,
    INQUIRY,
    PRESCRIBER,
    THERAPIST,
    assert_audited,
    assert_ended,
    assert_replays,
    one_kap_session,
    open_case,
    prepare_dosing,
    to_evaluating,
    to_ready,
    transitions_of,
    who,
)

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.domain.case import Actor, CaseRecord
from kapflow.domain.entries import to_iso
from kapflow.errors import (
    NotPermitted,
    Refused,
    TransitionBlocked,
    TransitionNotAvailable,
    WorkflowDefinitionError,
)
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered

# ------------------------------------------------------------------ fixtures


@pytest.fixture
def store_url(any_ready_url: str) -> str:
    """A database at the newest schema: a fresh SQLite file, or a fresh PostgreSQL schema."""
    return any_ready_url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = SqlStore(store_url)
    yield s
    s.close()


@pytest.fixture
def engine(store: SqlStore, clock: FakeClock) -> Engine:
    """The KAP pathway (version 1) on this module's store (SQLite and PostgreSQL)."""
    return Engine(store, KAP_PATHWAY, clock=clock)


# ------------------------------------------------------------------- helpers


def dump(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table in the database (timers and outbox included), in a stable order."""
    out: dict[str, list[tuple[object, ...]]] = {}
    store = engine.store
    assert isinstance(store, SqlStore)
    tables = sorted(inspect(store.engine).get_table_names())
    assert {"cases", "audit_events", "idempotency_keys"} <= set(tables)
    with store.engine.connect() as conn:
        for table in tables:
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


@dataclass(frozen=True)
class Before:
    """What a test saw just before a command: the case row, its history length and every table."""

    case: CaseRecord
    events: int
    tables: dict[str, list[tuple[object, ...]]]


def observe(engine: Engine, case_id: str) -> Before:
    return Before(engine.case(case_id), len(engine.history(case_id)), dump(engine))


def assert_refused_once(
    engine: Engine, seen: Before, actor: Actor, trigger: str | None, codes: list[str]
) -> None:
    """State, previous state, version and facts unchanged; exactly one audited refusal and nothing else written."""
    before = seen.case
    after = engine.case(before.id)
    assert (after.state, after.previous_state, after.version, after.facts, after.updated_at) == (
        before.state, before.previous_state, before.version, before.facts, before.updated_at,
    )
    assert after.event_count == before.event_count + 1
    history = engine.history(before.id)
    assert len(history) == seen.events + 1
    refusal = history[-1]
    assert refusal.kind == "refused"
    assert (refusal.actor, refusal.role) == (actor.id, actor.role)
    assert refusal.trigger == trigger
    assert refusal.from_state == refusal.to_state == before.state
    assert [b["code"] for b in refusal.blockers] == codes
    assert all(b["message"] for b in refusal.blockers)
    tables = dump(engine)
    for name, rows in seen.tables.items():  # no timer, outbox row or idempotency key from a refusal
        if name not in ("cases", "audit_events"):
            assert tables[name] == rows, name
    assert len(tables["audit_events"]) == len(seen.tables["audit_events"]) + 1
    assert engine.verify_audit().ok


def to_evaluated(engine: Engine, clock: FakeClock, case_id: str) -> None:
    to_evaluating(engine, clock, case_id)
    engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    engine.fire(case_id, "find_suitable", actor=PRESCRIBER)


def to_ready_without_paperwork(engine: Engine, clock: FakeClock, case_id: str) -> None:
    """ready_for_kap with intentions set but no prescription, consent or treatment plan."""
    to_evaluated(engine, clock, case_id)
    engine.fire(case_id, "start_intention_setting", actor=THERAPIST)
    engine.fire(case_id, "complete_intention_setting", actor=THERAPIST, data={"intentions": "rest"})


# ----------------------------------------------------------------- full path


def test_full_pathway_reaches_completed(engine: Engine, clock: FakeClock) -> None:
    """A case goes inquiry → evaluation → intention setting → two KAP sessions → completed, fully audited."""
    case_id = open_case(engine)
    to_ready(engine, clock, case_id, sessions=2)
    one_kap_session(engine, clock, case_id)
    clock.advance(days=3)
    one_kap_session(engine, clock, case_id)
    out = engine.fire(case_id, "complete_treatment", actor=PRESCRIBER)

    assert out.state == "completed" and out.from_state == "ready_for_kap"
    case = engine.case(case_id)
    assert case.state == "completed" and case.previous_state == "ready_for_kap"
    assert transitions_of(engine, case_id) == [
        "book_evaluation", "start_evaluation", "find_suitable", "start_intention_setting",
        "complete_intention_setting",
        "start_kap_session", "discharge", "complete_integration",
        "start_kap_session", "discharge", "complete_integration",
        "complete_treatment",
    ]
    history = engine.history(case_id)
    assert [ev.case_seq for ev in history] == list(range(1, len(history) + 1))
    assert case.event_count == len(history) and case.version == len(history)  # no refusals on this path
    assert all(ev.actor and ev.role and ev.workflow_version == "1" for ev in history)
    assert engine.verify_audit().ok
    assert history == list(engine.store.iter_audit(case_id))  # the history's fast read maps rows alike
    assert_replays(engine, case_id)
    assert engine.available(case_id) == []
    with pytest.raises(TransitionNotAvailable) as info:
        engine.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "done"})
    assert info.value.available == ()


def test_reassessment_then_more_sessions(engine: Engine, clock: FakeClock) -> None:
    """Once the plan's sessions are used, more need reassessment with an extended plan."""
    case_id = open_case(engine)
    to_ready(engine, clock, case_id, sessions=1)
    one_kap_session(engine, clock, case_id)
    clock.advance(days=2)
    prepare_dosing(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert [b.code for b in info.value.blockers] == ["plan_sessions_used"]

    engine.fire(case_id, "begin_reassessment", actor=PRESCRIBER)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "complete_reassessment", actor=PRESCRIBER)
    assert [b.code for b in info.value.blockers] == ["plan_sessions_used"]
    engine.record(case_id, "treatment_plan", {"action": "extend", "sessions": 1}, actor=PRESCRIBER)
    assert engine.fire(case_id, "complete_reassessment", actor=PRESCRIBER).state == "ready_for_kap"
    one_kap_session(engine, clock, case_id)
    assert engine.fire(case_id, "complete_treatment", actor=THERAPIST).state == "completed"
    assert_audited(engine, case_id)


def test_reassessment_due_after_reassess_every_sessions(store: SqlStore, clock: FakeClock) -> None:
    """With reassess_every=2 the third session waits for a reassessment even though the plan has more."""
    wf = KAP_PATHWAY.with_thresholds("reassess-2", reassess_every=2)
    engine = Engine(store, wf, clock=clock)
    case_id = open_case(engine)
    to_ready(engine, clock, case_id, sessions=4)
    one_kap_session(engine, clock, case_id)
    clock.advance(days=8)
    one_kap_session(engine, clock, case_id)
    clock.advance(days=8)
    prepare_dosing(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert [b.code for b in info.value.blockers] == ["reassessment_due"]
    engine.fire(case_id, "begin_reassessment", actor=THERAPIST)
    engine.fire(case_id, "complete_reassessment", actor=PRESCRIBER)
    prepare_dosing(engine, case_id)
    assert engine.fire(case_id, "start_kap_session", actor=THERAPIST).state == "dosing"


def test_extending_a_used_up_plan_still_needs_reassessment(engine: Engine, clock: FakeClock) -> None:
    """With the plan's one session done, extending the plan outside reassessment does not unlock another session."""
    case_id = open_case(engine)
    to_ready(engine, clock, case_id, sessions=1)
    one_kap_session(engine, clock, case_id)
    clock.advance(days=8)
    engine.record(case_id, "treatment_plan", {"action": "extend", "sessions": 1}, actor=PRESCRIBER)
    prepare_dosing(engine, case_id)
    with pytest.raises(TransitionBlocked):
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)


class TickingClock:
    """A clock that moves one microsecond on every reading, like a real one (deterministically)."""

    def __init__(self) -> None:
        self._now = FakeClock().now()

    def now(self) -> datetime:
        self._now += timedelta(microseconds=1)
        return self._now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        self._now += (delta or timedelta()) + timedelta(**parts)
        return self._now


def test_projection_replays_with_a_clock_that_moves_between_readings(store: SqlStore) -> None:
    """Each command reads the clock once, so facts and moves carry their audit event's own instant."""
    clock = TickingClock()
    engine = Engine(store, KAP_PATHWAY, clock=clock)
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)  # type: ignore[arg-type]
    one_kap_session(engine, clock, case_id)  # type: ignore[arg-type]
    with pytest.raises(Refused):
        engine.fire(case_id, "discharge", actor=THERAPIST)
    assert_replays(engine, case_id)
    history = engine.history(case_id)
    facts = engine.case(case_id).facts
    fact_events = [ev.at for ev in history if ev.kind in ("opened", "fact")]
    assert [f["at"] for f in facts["facts"]] == [to_iso(at) for at in fact_events]
    assert [m["at"] for m in facts["moves"]] == [to_iso(ev.at) for ev in history if ev.kind == "transition"]
    assert engine.verify_audit().ok


# ------------------------------------------------------------------ refusals


def test_wrong_role_is_refused_and_audited(engine: Engine, clock: FakeClock) -> None:
    """A front-desk user starting the evaluation gets NotPermitted; only the refusal is written."""
    case_id = open_case(engine)
    engine.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING)
    engine.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                           "starts_at": "2026-01-08T15:00:00+00:00"},
                  actor=FRONT_DESK)
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    before = observe(engine, case_id)
    with pytest.raises(NotPermitted) as info:
        engine.fire(case_id, "start_evaluation", actor=FRONT_DESK, data={"note": "trying"})
    assert info.value.role == "front_desk" and info.value.allowed == ("prescriber",)
    assert_refused_once(engine, before, FRONT_DESK, "start_evaluation", ["not_permitted"])
    assert engine.history(case_id)[-1].data == {"note": "trying"}


def test_read_only_auditor_is_refused_everywhere(engine: Engine) -> None:
    """The auditor role may neither fire nor record; each attempt is one audited refusal."""
    case_id = open_case(engine)
    before = observe(engine, case_id)
    with pytest.raises(NotPermitted):
        engine.fire(case_id, "hold", actor=AUDITOR, data={"reason": "look"})
    assert_refused_once(engine, before, AUDITOR, "hold", ["not_permitted"])
    before = observe(engine, case_id)
    with pytest.raises(NotPermitted):
        engine.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=AUDITOR)
    assert_refused_once(engine, before, AUDITOR, None, ["not_permitted"])
    assert engine.history(case_id)[-1].data == {"fact_kind": "payment"}


def test_trigger_not_available_from_state_is_refused_and_audited(engine: Engine) -> None:
    """Starting a KAP session from inquiry is TransitionNotAvailable, naming the triggers that are."""
    case_id = open_case(engine)
    before = observe(engine, case_id)
    with pytest.raises(TransitionNotAvailable) as info:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert info.value.state == "inquiry"
    assert info.value.available == ("book_evaluation", "hold", "withdraw")
    assert_refused_once(engine, before, THERAPIST, "start_kap_session", ["transition_not_available"])


def test_blocked_kap_session_lists_every_blocker(engine: Engine, clock: FakeClock) -> None:
    """With no prescription, consent, plan or pre-dose checklist, all seven blockers are reported and audited."""
    case_id = open_case(engine)
    to_ready_without_paperwork(engine, clock, case_id)
    expected = [
        "prescription_missing", "consent_missing", "treatment_plan_missing", "pre_dose_vitals_missing",
        "fasting_not_attested", "escort_missing", "clinician_not_present",
    ]
    assert [b.code for b in engine.check(case_id, "start_kap_session").blockers] == expected
    before = observe(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert [b.code for b in info.value.blockers] == expected
    assert all(b.message and b.guard for b in info.value.blockers)
    assert_refused_once(engine, before, THERAPIST, "start_kap_session", expected)
    audited = engine.history(case_id)[-1].blockers
    assert [b["guard"] for b in audited] == [b.guard for b in info.value.blockers]


def test_blocked_suitability_lists_every_blocker(engine: Engine, clock: FakeClock) -> None:
    """A minor with a hard exclusion and unreviewed flags gets three blockers at once, with codes."""
    case_id = open_case(engine, date_of_birth="2010-06-01")
    to_evaluating(engine, clock, case_id)
    engine.record(
        case_id, "screening", {"exclusions": ["under_18", "ketamine_allergy"], "flags": ["pregnancy"]},
        actor=PRESCRIBER,
    )
    before = observe(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "find_suitable", actor=PRESCRIBER)
    codes = ["under_minimum_age", "hard_exclusion", "review_flags_open"]
    assert [b.code for b in info.value.blockers] == codes
    assert_refused_once(engine, before, PRESCRIBER, "find_suitable", codes)
    assert engine.fire(case_id, "find_ineligible", actor=PRESCRIBER, data={"reason": "exclusions"}).state == (
        "ineligible"
    )


def test_missing_required_data_and_unpaid_fee_both_block(engine: Engine, clock: FakeClock) -> None:
    """A required-data blocker and a guard blocker are reported together; the fee blocker names the amount."""
    case_id = open_case(engine)
    before = observe(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    assert [b.code for b in info.value.blockers] == ["evaluation_not_booked"]
    assert_refused_once(engine, before, FRONT_DESK, "book_evaluation", ["evaluation_not_booked"])

    engine.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                           "starts_at": "2026-01-08T15:00:00+00:00"},
                  actor=FRONT_DESK)
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    engine.record(case_id, "payment", {"amount": "100", "purpose": "evaluation_fee"}, actor=BILLING)
    before = observe(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "start_evaluation", actor=PRESCRIBER)
    (blocker,) = info.value.blockers
    assert blocker.code == "evaluation_fee_unpaid" and "$250" in blocker.message and "$100" in blocker.message
    assert_refused_once(engine, before, PRESCRIBER, "start_evaluation", ["evaluation_fee_unpaid"])

    before = observe(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "   "})
    assert_refused_once(engine, before, FRONT_DESK, "hold", ["reason_required"])


def test_refusals_never_consume_versions(engine: Engine, clock: FakeClock) -> None:
    """Many refusals in a row leave the version where it was and the chain intact; the next success is +1."""
    case_id = open_case(engine)
    start = engine.case(case_id)
    attempts: list[tuple[str, Actor]] = [
        ("start_kap_session", THERAPIST), ("book_evaluation", CLIENT), ("book_evaluation", FRONT_DESK),
        ("resume", FRONT_DESK), ("discharge", PRESCRIBER),
    ]
    for trigger, actor in attempts:
        with pytest.raises(Refused):
            engine.fire(case_id, trigger, actor=actor)
    after = engine.case(case_id)
    assert after.version == start.version and after.event_count == start.event_count + len(attempts)
    out = engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travel"})
    assert out.version == start.version + 1 and out.case_seq == after.event_count + 1
    assert_audited(engine, case_id)


# ---------------------------------------------------------------- read-only


def test_check_and_available_write_nothing(engine: Engine, clock: FakeClock) -> None:
    """check() and available(), with and without an actor, leave every table byte-identical."""
    case_id = open_case(engine)
    to_ready_without_paperwork(engine, clock, case_id)
    before = dump(engine)
    verdicts = engine.available(case_id)
    assert {v.trigger for v in verdicts} == {
        "start_kap_session", "start_integration_session", "begin_reassessment", "complete_treatment", "hold",
        "withdraw", "hold_for_safety_review",
    }
    engine.available(case_id, actor=CLIENT)
    for trigger in KAP_PATHWAY.triggers():
        engine.check(case_id, trigger)
        engine.check(case_id, trigger, actor=AUDITOR)
    assert not engine.check(case_id, "start_kap_session").allowed
    role_verdict = engine.check(case_id, "hold", actor=CLIENT)
    assert [b.code for b in role_verdict.blockers] == ["not_permitted", "reason_required"]  # one code, as fire()
    not_here = engine.check(case_id, "discharge")
    assert [b.code for b in not_here.blockers] == ["not_available_from_state"]
    engine.verify_audit()
    engine.history(case_id)
    engine.facts(case_id)
    engine.cases()
    assert dump(engine) == before


# ----------------------------------------------------------- booking guards


def test_kap_session_booking_refused_before_prerequisites(engine: Engine, clock: FakeClock) -> None:
    """A kap_session appointment is refused (audited) until prescription, consent and intentions are in place."""
    case_id = open_case(engine)
    to_evaluated(engine, clock, case_id)
    starts = (clock.now() + timedelta(days=10)).isoformat()
    booking = {"kind": "kap_session", **who(case_id, "kap_session"), "starts_at": starts}
    before = observe(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.record(case_id, "appointment", booking, actor=FRONT_DESK)
    codes = ["prescription_missing", "consent_missing", "intention_not_set"]
    assert [b.code for b in info.value.blockers] == codes
    assert_refused_once(engine, before, FRONT_DESK, None, codes)
    assert engine.facts(case_id, "appointment")[-1].data["kind"] == "evaluation"

    # other appointment kinds are not held back
    engine.record(case_id, "appointment", {"kind": "intention_setting", "clinician": "th-jordan",
                                           "starts_at": starts}, actor=FRONT_DESK)
    today = clock.now().date()
    engine.record(case_id, "prescription", {"prescriber": "NP Sample", "issued_on": today.isoformat(),
                                            "expires_on": (today + timedelta(days=90)).isoformat()},
                  actor=PRESCRIBER)
    engine.record(case_id, "consent", {"form_version": "v1", "signed_on": today.isoformat()}, actor=THERAPIST)
    with pytest.raises(TransitionBlocked) as info:
        engine.record(case_id, "appointment", booking, actor=FRONT_DESK)
    assert [b.code for b in info.value.blockers] == ["intention_not_set"]
    engine.fire(case_id, "start_intention_setting", actor=THERAPIST)
    engine.fire(case_id, "complete_intention_setting", actor=THERAPIST, data={"intentions": "steady"})
    out = engine.record(case_id, "appointment", booking, actor=FRONT_DESK)
    assert out.kind == "fact" and engine.facts(case_id, "appointment")[-1].data["kind"] == "kap_session"
    assert_audited(engine, case_id)


# -------------------------------------------------------------- hold/resume


def _drive(engine: Engine, clock: FakeClock, case_id: str, state: str) -> None:
    if state == "evaluation_booked":
        engine.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                               "starts_at": "2026-01-08T15:00:00+00:00"},
                      actor=FRONT_DESK)
        engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    elif state == "evaluated":
        to_evaluated(engine, clock, case_id)
    elif state == "ready_for_kap":
        to_ready(engine, clock, case_id)
    elif state == "reassessment":
        to_ready(engine, clock, case_id)
        engine.fire(case_id, "begin_reassessment", actor=PRESCRIBER)
    assert engine.case(case_id).state == state


@pytest.mark.parametrize("state", ["inquiry", "evaluation_booked", "evaluated", "ready_for_kap", "reassessment"])
def test_hold_then_resume_returns_to_held_from_state(engine: Engine, clock: FakeClock, state: str) -> None:
    """hold → on_hold → resume lands back where the case was, even after refusals and facts while on hold."""
    case_id = open_case(engine)
    _drive(engine, clock, case_id, state)
    held = engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "client travelling"})
    assert held.state == "on_hold" and engine.case(case_id).previous_state == state
    with pytest.raises(NotPermitted):
        engine.fire(case_id, "resume", actor=CLIENT)
    with pytest.raises(TransitionNotAvailable):
        engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "again"})
    engine.record(case_id, "questionnaire", answered("PHQ-9", 9), actor=CLIENT)
    clock.advance(days=14)
    resumed = engine.fire(case_id, "resume", actor=THERAPIST)
    assert resumed.state == state and resumed.from_state == "on_hold"
    assert engine.case(case_id).previous_state == "on_hold"
    assert_audited(engine, case_id)


def test_withdraw_cancels_from_ready_for_kap(engine: Engine, clock: FakeClock) -> None:
    """The client withdraws from ready_for_kap; the case is final and nothing more can fire."""
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)
    out = engine.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "moving away"})
    assert out.state == "withdrawn" and out.from_state == "ready_for_kap"
    assert_ended(engine, case_id, "withdrawn", tried=("resume", "start_kap_session", "hold", "withdraw"),
                 data={"reason": "x"})


def test_no_hold_or_withdraw_while_dosing(engine: Engine, clock: FakeClock) -> None:
    """During dosing a case can neither be held nor withdrawn; only the clinicians' exits leave it."""
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)
    prepare_dosing(engine, case_id)
    engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    for trigger in ("hold", "withdraw"):
        with pytest.raises(TransitionNotAvailable):
            engine.fire(case_id, trigger, actor=FRONT_DESK, data={"reason": "x"})
    # Discharge, an early end, or the hold for the prescriber's safety review (issue 15): none for the front desk.
    exits = KAP_PATHWAY.transitions_from("dosing")
    assert [t.trigger for t in exits] == ["discharge", "end_session_early", "hold_for_safety_review"]
    assert not [t for t in exits if "front_desk" in t.roles]
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "discharge", actor=THERAPIST)
    assert [b.code for b in info.value.blockers] == [
        "observation_incomplete", "post_dose_vitals_missing", "discharge_check_missing",
    ]


def test_high_blood_pressure_holds_dosing(engine: Engine, clock: FakeClock) -> None:
    """Pre-dose vitals above 140/90 block the session with the reading and the limit."""
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)
    prepare_dosing(engine, case_id, systolic=150, diastolic=85)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    (blocker,) = info.value.blockers
    assert blocker.code == "pre_dose_blood_pressure_high"
    assert dict(blocker.facts) == {"blood_pressure": "150/85", "limit": "140/90"}


# ------------------------------------------------------ workflow versioning


def test_case_stays_on_its_workflow_version(store_url: str, clock: FakeClock) -> None:
    """After a restart with v2 (max systolic 135) listed last, the old case keeps 140 and a new case gets 135."""
    v1 = KAP_PATHWAY
    v2 = KAP_PATHWAY.with_thresholds("2", max_systolic=135)
    first = SqlStore(store_url)
    old_engine = Engine(first, v1, clock=clock)
    old_case = open_case(old_engine)
    to_ready(old_engine, clock, old_case)
    first.close()

    second = SqlStore(store_url)
    try:
        engine = Engine(second, [v1, v2], clock=clock)
        assert engine.workflow is v2
        new_case = open_case(engine)
        to_ready(engine, clock, new_case)
        assert engine.case(old_case).workflow_version == "1"
        assert engine.case(new_case).workflow_version == "2"

        for case_id in (old_case, new_case):
            prepare_dosing(engine, case_id, systolic=138, diastolic=80)
        assert engine.fire(old_case, "start_kap_session", actor=THERAPIST).state == "dosing"
        with pytest.raises(TransitionBlocked) as info:
            engine.fire(new_case, "start_kap_session", actor=THERAPIST)
        (blocker,) = info.value.blockers
        assert blocker.code == "pre_dose_blood_pressure_high" and dict(blocker.facts)["limit"] == "135/90"
        assert {ev.workflow_version for ev in engine.history(old_case)} == {"1"}
        assert {ev.workflow_version for ev in engine.history(new_case)} == {"2"}
        assert engine.verify_audit().ok

        # an engine that only knows v2 refuses to guess for the v1 case, and writes nothing
        v2_only = Engine(second, v2, clock=clock)
        before = dump(v2_only)
        for call in (
            lambda: v2_only.fire(old_case, "discharge", actor=THERAPIST),
            lambda: v2_only.record(old_case, "fasting", {"attested": True}, actor=CLIENT),
            lambda: v2_only.check(old_case, "discharge"),
            lambda: v2_only.available(old_case),
        ):
            with pytest.raises(WorkflowDefinitionError) as err:
                call()
            assert old_case in err.value.message and "'1'" in err.value.message
            assert err.value.workflow == "kap"
        assert dump(v2_only) == before
        assert v2_only.fire(new_case, "hold", actor=FRONT_DESK, data={"reason": "bp"}).state == "on_hold"
    finally:
        second.close()


def test_open_case_on_explicit_older_version(engine: Engine, store: SqlStore, clock: FakeClock) -> None:
    """open_case(workflow=v1) on an engine whose current version is v2 pins the case to v1."""
    v2 = KAP_PATHWAY.with_thresholds("2", max_systolic=135)
    both = Engine(store, [KAP_PATHWAY, v2], clock=clock)
    out = both.open_case(INQUIRY, actor=FRONT_DESK, workflow=KAP_PATHWAY)
    assert both.case(out.case_id).workflow_version == "1"
    assert both.history(out.case_id)[0].workflow_version == "1"


def test_case_lists_page_in_opening_order_and_filter_and_count_by_state(engine: Engine, clock: FakeClock) -> None:
    """``cases`` pages through cases in the order they opened, with or without a state; counts agree."""
    opened = []
    for n in range(5):
        opened.append(open_case(engine, last_name=f"Listed-{n}"))
        clock.advance(minutes=1)
    held = [opened[1], opened[3]]
    for case_id in held:
        engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travel"})
    assert [c.id for c in engine.cases()] == opened
    assert [c.id for c in engine.cases(limit=2, offset=1)] == opened[1:3]
    assert [c.id for c in engine.cases(state="on_hold")] == held
    assert [c.id for c in engine.cases(state="on_hold", limit=1, offset=1)] == held[1:]
    assert engine.cases(state="completed") == []
    assert all(c.state == "on_hold" and c.version == 2 for c in engine.cases(state="on_hold"))
    store = engine.store
    assert (store.count_cases(), store.count_cases(state="on_hold"), store.count_cases(state="inquiry")) == (5, 2, 3)


# ------------------------------------------------------------------ days on the practice's calendar (issue 14)

NEW_YORK = ZoneInfo("America/New_York")


def _new_york(y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NEW_YORK)


def test_a_week_later_at_the_same_local_time_is_a_week_across_dst(store_url: str, clock: FakeClock) -> None:
    """New York: sessions Monday 2 and Thursday 5 March at 10:00; on Monday 9 March (after the clocks went
    forward) 09:59 is refused, naming 10:00 EDT, and 10:00 is allowed."""
    engine = build_engine(store_url, settings=Settings(timezone="America/New_York"), clock=clock)
    try:
        clock.set(_new_york(2026, 2, 23, 9))
        case_id = open_case(engine)
        to_ready(engine, clock, case_id, sessions=3)
        for day in (2, 5):
            clock.set(_new_york(2026, 3, day))
            one_kap_session(engine, clock, case_id)
        clock.set(_new_york(2026, 3, 9, 9, 59))
        prepare_dosing(engine, case_id)
        with pytest.raises(TransitionBlocked) as info:
            engine.fire(case_id, "start_kap_session", actor=THERAPIST)
        assert [b.code for b in info.value.blockers] == ["session_frequency_exceeded"]
        assert "the next can start from 2026-03-09 10:00 EDT" in info.value.blockers[0].message
        clock.set(_new_york(2026, 3, 9))
        assert engine.fire(case_id, "start_kap_session", actor=THERAPIST).state == "dosing"
    finally:
        engine.close()


def test_the_lapse_counts_local_days_across_dst(store_url: str, clock: FakeClock) -> None:
    """New York: last session 1 September 10:00 EDT; a session on 30 November 10:00 EST (day 90 on the
    practice's calendar, 90 days and an hour later) needs no prescriber check-in."""
    engine = build_engine(store_url, settings=Settings(timezone="America/New_York"), clock=clock)
    try:
        clock.set(_new_york(2026, 8, 26, 9))
        case_id = open_case(engine)
        to_ready(engine, clock, case_id, sessions=3)
        clock.set(_new_york(2026, 9, 1))
        one_kap_session(engine, clock, case_id)
        clock.set(_new_york(2026, 11, 30))
        prepare_dosing(engine, case_id)
        assert engine.fire(case_id, "start_kap_session", actor=THERAPIST).state == "dosing"
    finally:
        engine.close()
