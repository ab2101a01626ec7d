"""The engine drives psychotherapy cases through their pathway on a real database (SQLite; PostgreSQL if set)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from psychotherapy_support import (
    CONSENT,
    INQUIRY,
    case_after_one_session,
    checkin,
    one_session,
    open_case,
    to_active,
    to_intake_booked,
    weekly_sessions,
)
from support import (
    AUDITOR,
    BILLING,
    CLIENT,
    CONTACTS,
    FRONT_DESK,
    T0,
    THERAPIST,
    Recorder,
    assert_audited,
    assert_ended,
    assert_replays,
    at,
    transitions_of,
    who,
)

from kapflow import (
    Actor,
    Engine,
    InvalidFact,
    MigrationRefused,
    NotPermitted,
    TransitionBlocked,
    TransitionNotAvailable,
    build_engine,
)
from kapflow.diagram import mermaid
from kapflow.testing import FakeClock, ReminderKit
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY, THRESHOLDS, build_psychotherapy_workflow
from kapflow.workflows.psychotherapy.billing import visits

V1 = PSYCHOTHERAPY_PATHWAY
V2 = build_psychotherapy_workflow("2", questionnaire_every_sessions=3, inactivity_days=45)
"""The practice's version 2: check-ins every 3 sessions, discharge after 45 days without one."""
CLIENT_EMAIL = "sample.psy@example.org"

# ------------------------------------------------------------------ fixtures


@pytest.fixture
def engine(any_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    """The psychotherapy pathway (version 1) with the fake clock, on each backend in turn."""
    with build_engine(any_ready_url, V1, clock=clock) as engine:
        yield engine


@pytest.fixture
def versions(any_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    """The practice after deploying version 2 next to version 1."""
    with build_engine(any_ready_url, [V1, V2], clock=clock) as engine:
        yield engine


@pytest.fixture
def kit(any_ready_url: str) -> Iterator[ReminderKit]:
    """The psychotherapy pathway with the worker's loops, in-memory email and calendar, on each backend."""
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), workflows=V1, contacts=CONTACTS)
    yield kit
    kit.close()


# ------------------------------------------------------------------- helpers


def assert_refused_and_unchanged(engine: Engine, case_id: str, before_version: int, actor: Actor,
                                 trigger: str | None, codes: list[str]) -> None:
    """The case is where it was, and its last audit event is the refusal, with who and every blocker."""
    case = engine.case(case_id)
    assert case.version == before_version
    refusal = engine.history(case_id)[-1]
    assert refusal.kind == "refused"
    assert (refusal.actor, refusal.role, refusal.trigger) == (actor.id, actor.role, trigger)
    assert refusal.from_state == refusal.to_state == case.state
    assert [b["code"] for b in refusal.blockers] == codes
    assert all(b["message"] for b in refusal.blockers)
    assert engine.verify_audit().ok


# ----------------------------------------------------------------- the episode


def test_a_whole_episode_from_inquiry_to_discharge(engine: Engine, clock: FakeClock) -> None:
    """Inquiry, intake, five sessions with the check-in after the fourth, planned discharge: audited and billable."""
    case_id = open_case(engine)
    to_active(engine, clock, case_id)
    for minutes in (20, 45, 55, 53):
        weekly_sessions(engine, clock, case_id, 1, minutes)
    clock.advance(days=3)
    checkin(engine, case_id, phq9=6, gad7=4)
    weekly_sessions(engine, clock, case_id, 1, 50)
    engine.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=BILLING)
    out = engine.fire(case_id, "discharge", actor=THERAPIST, data={"reason": "goals met"})

    assert (out.state, out.from_state) == ("discharged", "active_treatment")
    assert transitions_of(engine, case_id) == [
        "book_intake", "start_intake", "complete_intake",
        *["start_session", "complete_session"] * 5,
        "discharge",
    ]
    history = engine.history(case_id)
    assert [ev.case_seq for ev in history] == list(range(1, len(history) + 1))
    assert all(ev.workflow == "psychotherapy" and ev.workflow_version == "1" for ev in history)
    assert_audited(engine, case_id)
    codes = [(v.service, v.code) for v in visits(engine.case(case_id).projection, THRESHOLDS)]
    assert codes == [
        ("intake_assessment", "90791"), ("psychotherapy", "90832"), ("psychotherapy", "90834"),
        ("psychotherapy", "90837"), ("psychotherapy", "90837"), ("psychotherapy", "90834"),
    ]
    assert_ended(engine, case_id, "discharged", tried=("withdraw",), actor=CLIENT,
                 data={"reason": "already discharged"})


def test_the_fifth_session_waits_for_the_check_in(engine: Engine, clock: FakeClock) -> None:
    """After four sessions the PHQ-9 and GAD-7 are due: the fifth is refused until both are recorded."""
    case_id = open_case(engine)
    to_active(engine, clock, case_id)
    weekly_sessions(engine, clock, case_id, 4)
    clock.advance(days=7)
    assert [b.code for b in engine.check(case_id, "start_session").blockers] == ["questionnaires_due"]
    version = engine.case(case_id).version
    with pytest.raises(TransitionBlocked) as refused:
        engine.fire(case_id, "start_session", actor=THERAPIST)
    assert [b.code for b in refused.value.blockers] == ["questionnaires_due"]
    assert_refused_and_unchanged(engine, case_id, version, THERAPIST, "start_session", ["questionnaires_due"])

    engine.record(case_id, "questionnaire", answered("PHQ-9", 8), actor=CLIENT)
    blockers = engine.check(case_id, "start_session").blockers
    assert [b.code for b in blockers] == ["questionnaires_due"] and "GAD-7" in blockers[0].message
    engine.record(case_id, "questionnaire", answered("GAD-7", 5), actor=CLIENT)
    assert engine.fire(case_id, "start_session", actor=THERAPIST).state == "in_session"


def test_a_short_session_is_ended_early_and_not_billed(engine: Engine, clock: FakeClock) -> None:
    """A session cannot be completed under 16 minutes; ended early it is listed with no code."""
    case_id = open_case(engine)
    to_active(engine, clock, case_id)
    engine.fire(case_id, "start_session", actor=THERAPIST)
    clock.advance(minutes=12)
    with pytest.raises(TransitionBlocked) as refused:
        engine.fire(case_id, "complete_session", actor=THERAPIST)
    assert [b.code for b in refused.value.blockers] == ["session_too_short"]
    engine.fire(case_id, "end_session_early", actor=THERAPIST, data={"reason": "client unwell"})
    assert engine.case(case_id).state == "active_treatment"
    last = visits(engine.case(case_id).projection, THRESHOLDS)[-1]
    assert (last.minutes, last.code) == (12, None)


# ------------------------------------------------------------ hold, withdrawal


def test_hold_and_resume_return_the_case_where_it_was(engine: Engine, clock: FakeClock) -> None:
    """A hold needs a reason, stops sessions, and resume returns the case to active treatment (or its inquiry)."""
    case_id = open_case(engine)
    to_active(engine, clock, case_id)
    with pytest.raises(TransitionBlocked) as refused:
        engine.fire(case_id, "hold", actor=FRONT_DESK)
    assert [b.code for b in refused.value.blockers] == ["reason_required"]
    engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "client travelling"})
    with pytest.raises(TransitionNotAvailable):
        engine.fire(case_id, "start_session", actor=THERAPIST)
    assert sorted(v.trigger for v in engine.available(case_id)) == ["resume", "withdraw"]
    clock.advance(days=20)
    out = engine.fire(case_id, "resume", actor=THERAPIST)
    assert (out.state, engine.case(case_id).previous_state) == ("active_treatment", "on_hold")
    one_session(engine, clock, case_id)

    waiting = open_case(engine, last_name="Client-Psy-Two")
    engine.fire(waiting, "hold", actor=FRONT_DESK, data={"reason": "asked to wait"})
    assert engine.fire(waiting, "resume", actor=FRONT_DESK).state == "inquiry"
    assert_audited(engine, case_id)


def test_withdrawal_ends_the_case(engine: Engine, clock: FakeClock) -> None:
    """The client withdraws before the intake; nothing more can happen to the case."""
    case_id = open_case(engine)
    to_intake_booked(engine, clock, case_id)
    out = engine.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "found care closer to home"})
    assert out.state == "withdrawn"
    assert_ended(engine, case_id, "withdrawn", tried=("resume",))


def test_no_withdrawal_in_the_middle_of_a_session(engine: Engine, clock: FakeClock) -> None:
    """A session under way is completed or ended first; then the client may withdraw."""
    case_id = open_case(engine)
    to_active(engine, clock, case_id)
    engine.fire(case_id, "start_session", actor=THERAPIST)
    with pytest.raises(TransitionNotAvailable):
        engine.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "leaving"})
    clock.advance(minutes=5)
    engine.fire(case_id, "end_session_early", actor=THERAPIST, data={"reason": "client left"})
    assert engine.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "leaving"}).state == "withdrawn"


def test_an_intake_may_end_in_a_referral(engine: Engine, clock: FakeClock) -> None:
    """The therapist refers the client elsewhere at the intake; the assessment is still billed."""
    case_id = open_case(engine)
    to_intake_booked(engine, clock, case_id)
    engine.record(case_id, "consent", CONSENT, actor=THERAPIST)
    clock.advance(days=2)
    engine.fire(case_id, "start_intake", actor=THERAPIST)
    clock.advance(minutes=55)
    assert engine.fire(case_id, "refer_out", actor=THERAPIST, data={"reason": "needs an eating-disorder program"}
                       ).state == "referred"
    assert [v.code for v in visits(engine.case(case_id).projection, THRESHOLDS)] == ["90791"]


# ------------------------------------------------------------------ refusals


def test_refused_attempts_are_audited_with_every_blocker(engine: Engine, clock: FakeClock) -> None:
    """A wrong role, a blocked start with two blockers, and a refused booking: each audited, nothing else changed."""
    case_id = open_case(engine)
    before = engine.case(case_id).version
    with pytest.raises(TransitionBlocked) as booked:
        engine.fire(case_id, "book_intake", actor=FRONT_DESK)
    assert [b.code for b in booked.value.blockers] == ["intake_not_booked"]
    assert_refused_and_unchanged(engine, case_id, before, FRONT_DESK, "book_intake", ["intake_not_booked"])

    with pytest.raises(TransitionBlocked) as early:
        engine.book_appointment(case_id, "psychotherapy_session", T0 + timedelta(days=9), actor=FRONT_DESK,
                                **who(case_id))
    assert [b.code for b in early.value.blockers] == ["intake_not_completed"]
    assert_refused_and_unchanged(engine, case_id, before, FRONT_DESK, None, ["intake_not_completed"])

    to_active(engine, clock, case_id)
    weekly_sessions(engine, clock, case_id, 4)
    engine.record(case_id, "consent_withdrawn", {"withdrawn_on": "2026-02-10"}, actor=CLIENT)
    before = engine.case(case_id).version
    with pytest.raises(NotPermitted):
        engine.fire(case_id, "start_session", actor=FRONT_DESK)
    assert_refused_and_unchanged(engine, case_id, before, FRONT_DESK, "start_session", ["not_permitted"])
    with pytest.raises(TransitionBlocked) as blocked:
        engine.fire(case_id, "start_session", actor=THERAPIST)
    codes = ["consent_withdrawn", "questionnaires_due"]
    assert [b.code for b in blocked.value.blockers] == codes
    assert_refused_and_unchanged(engine, case_id, before, THERAPIST, "start_session", codes)
    with pytest.raises(NotPermitted):
        engine.record(case_id, "payment", {"amount": "10", "purpose": "other"}, actor=AUDITOR)
    assert engine.case(case_id).version == before
    assert_replays(engine, case_id)


# ------------------------------------------------------------------ the worker


def test_reminders_of_an_episode(kit: ReminderKit) -> None:
    """Front desk is alerted to an unanswered inquiry; the client is reminded of appointments and the check-in."""
    e, rec = kit.engine, Recorder(kit)
    case_id = open_case(e)
    rec.until(at(3, 10))  # Thursday: 2 business days passed on Wednesday morning
    e.book_appointment(case_id, "intake", at(8, 10), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_intake", actor=FRONT_DESK)
    e.record(case_id, "consent", CONSENT, actor=FRONT_DESK)
    checkin(e, case_id)
    rec.until(at(8, 10))
    e.fire(case_id, "start_intake", actor=THERAPIST)
    kit.clock.advance(minutes=60)
    e.fire(case_id, "complete_intake", actor=THERAPIST, data={"goals": "steadier mood"})
    for day in (15, 22, 29, 36):
        rec.until(at(day, 10))
        one_session(e, kit.clock, case_id)
    e.book_appointment(case_id, "psychotherapy_session", at(43, 10), actor=FRONT_DESK, **who(case_id))
    rec.until(at(42, 12))
    checkin(e, case_id)
    rec.until(at(43, 10))
    one_session(e, kit.clock, case_id)

    desk = "desk@example.org"
    # From the end of the fourth session (02-10 10:53) the recorder runs the worker on the hour's 53rd minute.
    assert rec.seen == [
        ("01-07 09:00", "inquiry_unanswered", desk),
        ("01-08 10:00", "appointment_booked_notice", CLIENT_EMAIL),  # the intake, confirmed when booked
        ("01-10 10:00", "intake_reminder_72h", CLIENT_EMAIL),
        ("01-12 10:00", "intake_reminder_24h", CLIENT_EMAIL),
        ("02-10 10:53", "appointment_booked_notice", CLIENT_EMAIL),  # the fifth session
        ("02-10 11:53", "questionnaires_due", CLIENT_EMAIL),  # an hour after the fourth session ended
        ("02-14 10:53", "psychotherapy_session_reminder_72h", CLIENT_EMAIL),
        ("02-15 10:53", "questionnaires_due_before_session", CLIENT_EMAIL),  # 48 h before, still not done
        ("02-16 10:53", "psychotherapy_session_reminder_24h", CLIENT_EMAIL),
    ]
    intake_alert = next(m for m in kit.email.sent if m.key.endswith(":inquiry_unanswered:email"))
    assert "Sample" not in intake_alert.body  # staff alerts name no client
    assert e.verify_audit().ok


def test_sixty_days_without_a_session_discharge_the_case(kit: ReminderKit) -> None:
    """The worker fires discharge_inactive 60 days after the last session, as the system, audited."""
    e = kit.engine
    case_id = case_after_one_session(e, kit.clock)
    last_session = kit.clock.now()
    kit.advance(timedelta(days=60) - timedelta(minutes=1), step=timedelta(hours=6))
    assert e.case(case_id).state == "active_treatment"
    kit.advance(minutes=16)
    assert e.case(case_id).state == "discharged"
    fired = [ev for ev in e.history(case_id) if ev.trigger == "discharge_inactive"]
    assert [(ev.kind, ev.role, ev.actor) for ev in fired] == [("transition", "system", "test-worker")]
    assert fired[0].at - last_session >= timedelta(days=60)
    assert e.verify_audit().ok


def test_a_booked_session_keeps_an_inactive_case_open(kit: ReminderKit) -> None:
    """A session booked beyond 60 days makes the fired discharge a refusal, audited; the case stays in treatment."""
    e = kit.engine
    case_id = case_after_one_session(e, kit.clock)
    e.book_appointment(case_id, "psychotherapy_session", kit.clock.now() + timedelta(days=75), actor=FRONT_DESK,
                       **who(case_id))
    kit.advance(days=61, step=timedelta(hours=6))
    assert e.case(case_id).state == "active_treatment"
    refused = [ev for ev in e.history(case_id) if ev.kind == "refused" and ev.trigger == "discharge_inactive"]
    assert len(refused) == 1 and refused[0].role == "system"
    assert [b["code"] for b in refused[0].blockers] == ["session_booked"]


def test_a_hold_stops_the_inactivity_clock(kit: ReminderKit) -> None:
    """On hold nothing is discharged; after the resume the 60 days count from the resume."""
    e = kit.engine
    case_id = open_case(e)
    to_active(e, kit.clock, case_id)
    e.fire(case_id, "hold", actor=THERAPIST, data={"reason": "medical leave"})
    kit.advance(days=90, step=timedelta(hours=6))
    assert e.case(case_id).state == "on_hold"
    e.fire(case_id, "resume", actor=THERAPIST)
    kit.advance(days=59, step=timedelta(hours=6))
    assert e.case(case_id).state == "active_treatment"
    kit.advance(days=1, hours=1, step=timedelta(hours=6))
    assert e.case(case_id).state == "discharged"


# ------------------------------------------------------------------ versions


def test_migration_to_version_two_brings_its_rules(versions: Engine, clock: FakeClock) -> None:
    """A case with three sessions on v1 moves to v2, audited; v2's check-in every 3 sessions then applies."""
    e = versions
    case_id = e.open_case(INQUIRY, actor=FRONT_DESK, workflow=V1).case_id
    to_active(e, clock, case_id)
    weekly_sessions(e, clock, case_id, 3)
    assert e.check(case_id, "start_session").allowed
    before = e.case(case_id)
    out = e.migrate_case(case_id, V2, actor=FRONT_DESK)
    after = e.case(case_id)
    assert (after.workflow_version, after.state, after.version) == ("2", "active_treatment", before.version + 1)
    assert after.facts == before.facts
    assert (out.kind, dict(out.extra)) == ("migrated", {"from_version": "1", "to_version": "2"})
    event = e.history(case_id)[-1]
    assert (event.kind, event.actor, event.role, event.workflow_version) == ("migrated", FRONT_DESK.id,
                                                                            "front_desk", "2")
    assert [b.code for b in e.check(case_id, "start_session").blockers] == ["questionnaires_due"]
    assert_audited(e, case_id)


def test_a_refused_migration_is_audited(any_ready_url: str, clock: FakeClock) -> None:
    """A version billing sessions only from 30 minutes would not have let a 20-minute session end: refused, audited."""
    strict = build_psychotherapy_workflow("3", min_billable_minutes=30)
    with build_engine(any_ready_url, [V1, strict], clock=clock) as e:
        case_id = case_after_one_session(e, clock, minutes=20, workflow=V1)
        before = e.case(case_id).version
        with pytest.raises(MigrationRefused) as refused:
            e.migrate_case(case_id, strict, actor=THERAPIST)
        assert [(r.code, dict(r.facts)["blocker"]) for r in refused.value.reasons] == [
            ("entry_guard_fails", "session_too_short")]
        assert_refused_and_unchanged(e, case_id, before, THERAPIST, "migrate", ["entry_guard_fails"])
        assert e.case(case_id).workflow_version == "1"
        with pytest.raises(NotPermitted):
            e.migrate_case(case_id, strict, actor=AUDITOR)


def test_the_inactivity_discharge_follows_the_new_version(any_ready_url: str) -> None:
    """Moved to v2, a case in treatment is discharged 45 days after its last session, not 60."""
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), workflows=[V1, V2], contacts=CONTACTS)
    try:
        e = kit.engine
        case_id = case_after_one_session(e, kit.clock, workflow=V1)
        kit.advance(days=10, step=timedelta(hours=6))
        e.migrate_case(case_id, V2, actor=THERAPIST)
        kit.advance(days=34, hours=23, step=timedelta(hours=6))
        assert e.case(case_id).state == "active_treatment"
        kit.advance(hours=2)
        assert e.case(case_id).state == "discharged"
    finally:
        kit.close()


# ------------------------------------------------------------------ the diagram


def test_the_mermaid_diagram_mentions_every_state() -> None:
    """kapflow diagram's Mermaid text for the pathway names every state and the worker's discharge."""
    text = mermaid(V1)
    assert text.startswith("---\ntitle: psychotherapy workflow, version 1\n")
    for state in V1.states:
        assert f"    {state.name}\n" in text
    assert "active_treatment --> discharged : discharge_inactive (front_desk, system)" in text
    assert "on_hold --> active_treatment : resume" in text
    assert "class discharged, referred, withdrawn final" in text


def test_both_pathways_run_side_by_side(any_ready_url: str, clock: FakeClock) -> None:
    """One engine runs KAP and psychotherapy cases on one database; each case follows its own workflow."""
    with build_engine(any_ready_url, [KAP_PATHWAY, V1], clock=clock) as e:
        psy = e.open_case(INQUIRY, actor=FRONT_DESK, workflow="psychotherapy").case_id
        kap = e.open_case({**INQUIRY, "concerns": ["depression"]}, actor=FRONT_DESK, workflow="kap").case_id
        assert (e.case(psy).workflow, e.case(kap).workflow) == ("psychotherapy", "kap")
        to_active(e, clock, psy)
        assert [v.trigger for v in e.available(kap)] == ["book_evaluation", "hold", "withdraw"]
        with pytest.raises(InvalidFact, match="kind"):
            e.book_appointment(psy, "kap_session", clock.now() + timedelta(days=3), actor=FRONT_DESK,
                               **who(psy, "kap_session"))
        assert e.verify_audit().ok
