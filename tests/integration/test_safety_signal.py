"""Suicidality is a signal, not a number (issue 15, item 2), in both pathways.

A PHQ-9 with item 9 above 0 alerts the prescriber and the therapist within one worker tick, on the
practice's urgent channel where they have an address there, with the case's reference only; the next
session is refused with a blocker that says what is needed (a safety assessment), not the answer;
a clinician's assessment, audited, lets it go ahead. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psychotherapy_support import open_case as open_psychotherapy_case
from psychotherapy_support import to_active
from support import CLIENT, FRONT_DESK, PRESCRIBER, T0, THERAPIST, open_case, prepare_dosing, to_ready

from kapflow.errors import TransitionBlocked
from kapflow.testing import FakeClock, ReminderKit
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

STAFF = {
    "prescriber": {"email": "prescriber@example.org", "sms": "+1 555 010 0111"},
    "therapist": {"email": "therapist@example.org"},
    "front_desk": {"email": "desk@example.org"},
}
ASSESSMENT = {"screen": "cssrs_screener", "screen_result": "low_risk", "plan": "safety plan reviewed; follow-up call"}


def phq9(item9: int) -> dict[str, object]:
    return {"instrument": "PHQ-9", "items": [1, 1, 1, 1, 1, 1, 1, 1, item9]}


@pytest.fixture
def kit(any_ready_url: str) -> Iterator[ReminderKit]:
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), contacts=STAFF, urgent_channel="sms")
    yield kit
    kit.close()


def urgent(kit: ReminderKit, case_id: str) -> list[tuple[str, str]]:
    """(channel, recipient) of each urgent alert delivered for the case."""
    sent = [*kit.email.sent, *kit.sms.sent]
    return sorted((m.channel, m.recipient) for m in sent if m.case_id == case_id and "urgent" in m.subject)


def test_item_9_alerts_both_clinicians_at_once_and_holds_the_next_session(kit: ReminderKit) -> None:
    e = kit.engine
    case_id = open_case(e)
    to_ready(e, kit.clock, case_id)
    kit.run()
    e.record(case_id, "questionnaire", phq9(item9=1), actor=CLIENT)
    kit.advance(minutes=15)  # one tick of the worker
    assert urgent(kit, case_id) == [("email", "therapist@example.org"), ("sms", "+1 555 010 0111")]
    alert = next(m for m in kit.sms.sent if m.case_id == case_id)
    assert case_id in alert.body and "Sample" not in alert.body and "item" not in alert.body.lower()

    e.record(case_id, "questionnaire", {"instrument": "GAD-7", "items": [1, 1, 1, 1, 1, 1, 1]}, actor=CLIENT)
    prepare_dosing(e, case_id)
    with pytest.raises(TransitionBlocked) as refused:
        e.fire(case_id, "start_kap_session", actor=THERAPIST)
    [blocker] = refused.value.blockers
    assert blocker.code == "safety_assessment_required"
    assert "safety assessment" in blocker.message and "9" not in blocker.message
    assert e.case(case_id).state == "ready_for_kap"

    e.record(case_id, "safety_assessment", ASSESSMENT, actor=PRESCRIBER)
    e.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert e.case(case_id).state == "dosing"
    kinds = [(ev.kind, ev.trigger or ev.data.get("kind")) for ev in e.history(case_id)]
    assert ("refused", "start_kap_session") in kinds and ("fact", "safety_assessment") in kinds
    kit.advance(hours=2)
    assert len(urgent(kit, case_id)) == 2  # sent once each; the assessment stopped nothing already sent
    assert e.verify_audit().ok


def test_an_alert_not_yet_sent_is_skipped_once_the_assessment_is_recorded(kit: ReminderKit) -> None:
    e = kit.engine
    case_id = open_case(e)
    to_ready(e, kit.clock, case_id)
    e.record(case_id, "questionnaire", phq9(item9=2), actor=CLIENT)
    e.record(case_id, "safety_assessment", ASSESSMENT, actor=THERAPIST)
    kit.run()
    assert urgent(kit, case_id) == []
    outcomes = {t["reminder"]: t["status"] for t in e.timers(case_id) if t["reminder"].startswith("safety")}
    assert outcomes == {"safety_signal_alert_prescriber": "skipped", "safety_signal_alert_therapist": "skipped"}


def test_a_later_positive_answer_needs_a_new_assessment(kit: ReminderKit) -> None:
    e = kit.engine
    case_id = open_case(e)
    to_ready(e, kit.clock, case_id)
    e.record(case_id, "questionnaire", phq9(item9=1), actor=CLIENT)
    e.record(case_id, "safety_assessment", ASSESSMENT, actor=PRESCRIBER)
    kit.clock.advance(days=1)
    e.record(case_id, "questionnaire", phq9(item9=0), actor=CLIENT)
    assert "safety_signal_resolved" not in blocked_by(kit, case_id)
    e.record(case_id, "questionnaire", phq9(item9=3), actor=CLIENT)
    assert "safety_signal_resolved" in blocked_by(kit, case_id)
    kit.advance(minutes=15)
    # the first signal was assessed before its alerts went out (the newer signal replaced them); the
    # second alerts both clinicians
    assert len(urgent(kit, case_id)) == 2
    statuses = sorted(t["status"] for t in kit.engine.timers(case_id) if t["reminder"].startswith("safety"))
    assert statuses == ["cancelled", "cancelled", "done", "done"]


def blocked_by(kit: ReminderKit, case_id: str) -> set[str]:
    verdict = kit.engine.check(case_id, "start_kap_session", actor=THERAPIST)
    return {b.guard for b in verdict.blockers}


def test_the_psychotherapy_pathway_holds_its_next_session_the_same_way(any_ready_url: str) -> None:
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), contacts=STAFF, urgent_channel="sms",
                      workflows=PSYCHOTHERAPY_PATHWAY)
    try:
        e = kit.engine
        case_id = open_psychotherapy_case(e)
        to_active(e, kit.clock, case_id)
        kit.clock.advance(days=7)
        e.record(case_id, "questionnaire", phq9(item9=1), actor=CLIENT)
        e.record(case_id, "questionnaire", {"instrument": "GAD-7", "items": [0, 1, 0, 1, 0, 1, 0]}, actor=CLIENT)
        kit.advance(minutes=15)
        assert [r for _channel, r in urgent(kit, case_id)] == ["therapist@example.org"]  # it has no prescriber
        with pytest.raises(TransitionBlocked) as refused:
            e.fire(case_id, "start_session", actor=THERAPIST)
        assert [b.code for b in refused.value.blockers] == ["safety_assessment_required"]
        e.record(case_id, "safety_assessment", ASSESSMENT, actor=THERAPIST)
        e.fire(case_id, "start_session", actor=THERAPIST)
        assert e.case(case_id).state == "in_session"
    finally:
        kit.close()


def test_nobody_but_a_clinician_records_a_safety_assessment(kit: ReminderKit) -> None:
    e = kit.engine
    case_id = open_case(e)
    for actor in (CLIENT, FRONT_DESK):
        with pytest.raises(Exception) as refused:
            e.record(case_id, "safety_assessment", ASSESSMENT, actor=actor)
        assert getattr(refused.value, "code", "") == "not_permitted"
    assert not e.facts(case_id, "safety_assessment")


def test_the_engine_reads_the_measures_of_a_case(kit: ReminderKit) -> None:
    """Baseline, latest and response through the Python API, as ``kapflow case show`` prints them."""
    e = kit.engine
    case_id = open_case(e)
    to_ready(e, kit.clock, case_id)  # its check-ins before the evaluation's end are the baseline
    kit.clock.advance(days=30)
    e.record(case_id, "questionnaire", {"instrument": "PHQ-9", "items": [0, 0, 1, 0, 0, 1, 0, 0, 0]}, actor=CLIENT)
    measures = e.summaries(case_id)["measures"]
    assert isinstance(measures, dict)
    phq9_view = measures["PHQ-9"]
    assert phq9_view["latest"]["score"] == 2 and phq9_view["remission"] is True
    assert phq9_view["response"] is (phq9_view["baseline"]["score"] >= 4)
