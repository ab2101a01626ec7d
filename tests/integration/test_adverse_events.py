"""Adverse events in the KAP pathway (issue 15, item 3): a serious one holds the case for the prescriber.

Each scenario runs the real engine, worker loops and outbox on a SQLite file with a fake clock.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import PRESCRIBER, T0, THERAPIST, open_case, prepare_dosing, to_ready, transitions_of

from kapflow.errors import KapflowError, NotPermitted, TransitionBlocked, TransitionNotAvailable
from kapflow.testing import FakeClock, ReminderKit
from kapflow.workflows.kap.definition import build_kap_workflow

CONTACTS = {
    "front_desk": {"email": "desk@example.org"},
    "therapist": {"email": "therapist@example.org"},
    "prescriber": {"email": "prescriber@example.org"},
}


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[ReminderKit]:
    made = ReminderKit(url=f"sqlite:///{tmp_path / 'kapflow.db'}", clock=FakeClock(T0), contacts=CONTACTS)
    yield made
    made.close()


def event(severity: str, kit: ReminderKit, kind: str = "excessive_sedation") -> dict[str, Any]:
    return {"type": kind, "severity": severity, "onset": kit.clock.now().isoformat(),
            "action_taken": "synthetic: monitored, prescriber called"}


def dosing_case(kit: ReminderKit) -> str:
    """A case in dosing, the worker's queue empty."""
    case_id = open_case(kit.engine)
    to_ready(kit.engine, kit.clock, case_id)
    prepare_dosing(kit.engine, case_id)
    kit.engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    kit.run()
    kit.email.clear()
    return case_id


def sent_to(kit: ReminderKit, case_id: str) -> list[tuple[str, str]]:
    return [(m.key.split(":")[-2], m.recipient) for m in kit.email.sent if m.case_id == case_id]


def test_serious_event_during_dosing_holds_the_case_until_the_prescribers_review(kit: ReminderKit) -> None:
    """A serious event ends the session within one worker tick; no dosing until the prescriber continues."""
    engine = kit.engine
    case_id = dosing_case(kit)
    kit.clock.advance(minutes=20)
    engine.record(case_id, "adverse_event", event("serious", kit, "allergic_reaction"), actor=THERAPIST)
    assert engine.case(case_id).state == "dosing"
    kit.run()  # one tick of the worker
    assert engine.case(case_id).state == "safety_review"
    hold = [ev for ev in engine.history(case_id) if ev.trigger == "hold_for_safety_review"][-1]
    assert hold.role == "system"

    # Held: nothing but the prescriber's decision (or a withdrawal) moves it on.
    with pytest.raises(TransitionNotAvailable):
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    with pytest.raises(TransitionNotAvailable):
        engine.fire(case_id, "discharge", actor=THERAPIST)
    with pytest.raises(NotPermitted):
        engine.fire(case_id, "continue_after_review", actor=THERAPIST)  # not the prescriber

    # A pause resumes into the review, not past it.
    engine.fire(case_id, "pause_after_review", actor=PRESCRIBER, data={"reason": "synthetic: await allergy work-up"})
    engine.fire(case_id, "resume", actor=PRESCRIBER)
    assert engine.case(case_id).state == "safety_review"

    # The prescriber changes the dose (a new prescription), then continues: integration, then the next session.
    today = kit.clock.now().date()
    engine.record(case_id, "prescription", {"prescriber": "NP Rowan Sample", "dose_mg": 100,
                                            "issued_on": today.isoformat(),
                                            "expires_on": (today + timedelta(days=90)).isoformat()},
                  actor=PRESCRIBER)
    engine.fire(case_id, "continue_after_review", actor=PRESCRIBER)
    assert engine.case(case_id).state == "integration_psychotherapy"
    engine.fire(case_id, "complete_integration", actor=THERAPIST)
    kit.clock.advance(days=7)
    prepare_dosing(engine, case_id)
    engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert engine.case(case_id).state == "dosing"

    moves = transitions_of(engine, case_id)
    assert moves[moves.index("hold_for_safety_review"):] == [
        "hold_for_safety_review", "pause_after_review", "resume", "continue_after_review",
        "complete_integration", "start_kap_session",
    ]
    history = engine.history(case_id)
    recorded = [ev for ev in history if ev.kind == "fact" and ev.data.get("kind") == "adverse_event"]
    assert len(recorded) == 1
    refused = [(ev.trigger, ev.from_state) for ev in history if ev.kind == "refused"]
    assert ("start_kap_session", "safety_review") in refused
    assert ("continue_after_review", "safety_review") in refused
    assert (hold.idempotency_key or "").startswith("timer:")  # fired by the worker for the timer
    assert engine.verify_audit().ok


def test_serious_event_after_dosing_blocks_the_next_session_until_reviewed(kit: ReminderKit) -> None:
    """A serious event reported between sessions refuses dosing with a blocker, and holds the case for review."""
    engine = kit.engine
    case_id = dosing_case(kit)
    kit.clock.advance(minutes=120)
    engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76}, actor=THERAPIST)
    engine.record(case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True}, actor=THERAPIST)
    engine.fire(case_id, "discharge", actor=THERAPIST)
    engine.fire(case_id, "complete_integration", actor=THERAPIST)
    kit.clock.advance(days=1)
    engine.record(case_id, "adverse_event", event("serious", kit, "fall"), actor=PRESCRIBER)
    kit.clock.advance(days=6)
    prepare_dosing(engine, case_id)
    # Before the worker's tick the guard refuses, audited, with a sentence saying what is needed.
    with pytest.raises(TransitionBlocked) as refused:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert "adverse_event_review_pending" in [b.code for b in refused.value.blockers]
    denied = [ev for ev in engine.history(case_id) if ev.kind == "refused"][-1]
    assert "adverse_event_review_pending" in [b["code"] for b in denied.blockers]
    kit.run()
    assert engine.case(case_id).state == "safety_review"
    engine.fire(case_id, "continue_after_review", actor=PRESCRIBER)
    engine.fire(case_id, "complete_integration", actor=THERAPIST)
    kit.run()
    assert engine.case(case_id).state == "ready_for_kap"  # the reviewed event does not hold it again
    prepare_dosing(engine, case_id)
    engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert engine.case(case_id).state == "dosing"
    assert engine.verify_audit().ok


def test_milder_events_are_recorded_and_a_clinician_may_end_the_session_early(kit: ReminderKit) -> None:
    """A moderate event holds nothing; ending early needs a reason, vitals in range and a stable client."""
    engine = kit.engine
    case_id = dosing_case(kit)
    kit.clock.advance(minutes=30)
    engine.record(case_id, "adverse_event", event("moderate", kit, "nausea_or_vomiting"), actor=THERAPIST)
    kit.run()
    assert engine.case(case_id).state == "dosing"
    with pytest.raises(TransitionBlocked) as refused:
        engine.fire(case_id, "end_session_early", actor=THERAPIST, data={"reason": "synthetic: nausea"})
    assert {b.code for b in refused.value.blockers} == {"post_dose_vitals_missing", "discharge_check_missing"}
    engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 124, "diastolic": 80}, actor=THERAPIST)
    engine.record(case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True}, actor=THERAPIST)
    engine.fire(case_id, "end_session_early", actor=THERAPIST, data={"reason": "synthetic: nausea"})
    assert engine.case(case_id).state == "integration_psychotherapy"


def test_other_event_needs_a_description(kit: ReminderKit) -> None:
    """An event of type other is refused without details of what happened."""
    case_id = dosing_case(kit)
    with pytest.raises(Exception) as refused:
        kit.engine.record(case_id, "adverse_event", event("mild", kit, "other"), actor=THERAPIST)
    assert "details" in str(refused.value)


def test_post_dose_vitals_high_for_three_hours_alert_the_prescriber_once(kit: ReminderKit) -> None:
    """Vitals still above range 3 hours after dosing: one alert to the prescriber, none after."""
    engine = kit.engine
    case_id = dosing_case(kit)
    kit.advance(minutes=120)
    engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 156, "diastolic": 98}, actor=THERAPIST)
    kit.advance(minutes=59)
    assert sent_to(kit, case_id) == []
    kit.advance(minutes=1)
    assert sent_to(kit, case_id) == [("vitals_still_out_of_range", "prescriber@example.org")]
    engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 150, "diastolic": 96}, actor=THERAPIST)
    kit.advance(hours=3)
    assert sent_to(kit, case_id) == [("vitals_still_out_of_range", "prescriber@example.org")]
    # The prescriber may hold the case for a review: the way out of dosing while vitals stay high.
    engine.fire(case_id, "hold_for_safety_review", actor=PRESCRIBER)
    assert engine.case(case_id).state == "safety_review"


def test_post_dose_vitals_back_in_range_send_no_alert(kit: ReminderKit) -> None:
    """Vitals back in range by the 3-hour mark: the prescriber is not alerted."""
    engine = kit.engine
    case_id = dosing_case(kit)
    kit.advance(minutes=150)
    engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 128, "diastolic": 82}, actor=THERAPIST)
    kit.advance(hours=2)
    assert sent_to(kit, case_id) == []


def test_the_vitals_alert_follows_the_practices_threshold(tmp_path: Path) -> None:
    """A practice's own vitals_alert_minutes times the alert (a version of its own)."""
    wf = build_kap_workflow("vitals-90", vitals_alert_minutes=90)
    dosing = wf.state("dosing")
    alert = next(r for r in dosing.reminders if r.name == "vitals_still_out_of_range")
    assert alert.after == timedelta(minutes=90)
    assert "90 minutes" in alert.template


STEPS = st.lists(
    st.sampled_from(["mild", "serious", "tick", "dose", "discharge", "integrate", "hold", "continue", "wait"]),
    min_size=1, max_size=14,
)


def _try(kit: ReminderKit, case_id: str, step: str) -> None:
    engine = kit.engine
    try:
        if step in ("mild", "serious"):
            engine.record(case_id, "adverse_event", event(step, kit), actor=THERAPIST)
        elif step == "tick":
            kit.run()
        elif step == "dose":
            prepare_dosing(engine, case_id)
            engine.fire(case_id, "start_kap_session", actor=THERAPIST)
        elif step == "discharge":
            engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76},
                          actor=THERAPIST)
            engine.record(case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True},
                          actor=THERAPIST)
            engine.fire(case_id, "end_session_early", actor=THERAPIST, data={"reason": "synthetic"})
        elif step == "integrate":
            engine.fire(case_id, "complete_integration", actor=THERAPIST)
        elif step == "hold":
            engine.fire(case_id, "hold_for_safety_review", actor=THERAPIST)
        elif step == "continue":
            engine.fire(case_id, "continue_after_review", actor=PRESCRIBER)
        else:
            kit.clock.advance(days=4)
    except KapflowError:
        pass  # refused: the rules said no, which is what the property watches


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_no_dosing_past_an_unreviewed_serious_event(steps: list[str]) -> None:
    """For any sequence of events, ticks and moves, no KAP session starts after a serious adverse event
    until the prescriber's review continued the plan."""
    with tempfile.TemporaryDirectory() as directory:
        kit = ReminderKit(url=f"sqlite:///{directory}/kapflow.db", clock=FakeClock(T0), contacts=CONTACTS)
        try:
            case_id = open_case(kit.engine)
            to_ready(kit.engine, kit.clock, case_id, sessions=12)
            for step in steps:
                kit.clock.advance(minutes=10)
                _try(kit, case_id, step)
            serious: datetime | None = None
            released: datetime | None = None
            for ev in kit.engine.history(case_id):
                if ev.kind == "fact" and ev.data.get("kind") == "adverse_event" \
                        and ev.data.get("fact", {}).get("severity") == "serious":
                    serious = ev.at
                elif ev.kind == "transition" and ev.trigger == "continue_after_review":
                    released = ev.at
                elif ev.kind == "transition" and ev.trigger == "start_kap_session":
                    assert serious is None or (released is not None and released >= serious), steps
            assert kit.engine.verify_audit().ok
        finally:
            kit.close()
