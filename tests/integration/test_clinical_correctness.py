"""Clinical correctness through the engine, on both backends: closed cases, released slots, what a refusal says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psychotherapy_support as therapy
import pytest
from support import (
    AUDITOR,
    BILLING,
    CLIENT,
    CONTACTS,
    FRONT_DESK,
    PRESCRIBER,
    T0,
    THERAPIST,
    assert_audited,
    at,
    dose_and_discharge,
    open_case,
    to_evaluating,
    to_ready,
    who,
)

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.errors import InvalidInput, NotPermitted, TransitionBlocked, TransitionNotAvailable
from kapflow.testing import FakeClock, ReminderKit
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY


@pytest.fixture
def kit(any_ready_url: str) -> Iterator[ReminderKit]:
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), contacts=CONTACTS)
    yield kit
    kit.close()


def _ineligible(engine: Engine, clock: FakeClock) -> str:
    case_id = open_case(engine)
    to_evaluating(engine, clock, case_id)
    engine.fire(case_id, "find_ineligible", actor=PRESCRIBER, data={"reason": "hard exclusion"})
    return case_id


def test_a_closed_case_refuses_a_prescription_audited(engine: Engine, clock: FakeClock) -> None:
    """A prescription on an ineligible case is refused (case_closed), audited as a refused prescription."""
    case_id = _ineligible(engine, clock)
    before = engine.case(case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.record(case_id, "prescription", {"prescriber": "NP Sample", "issued_on": "2026-01-01",
                                                "expires_on": "2026-06-01"}, actor=PRESCRIBER)
    assert [b.code for b in info.value.blockers] == ["case_closed"]
    after = engine.case(case_id)
    assert (after.version, after.facts, after.state) == (before.version, before.facts, before.state)
    refusal = engine.history(case_id)[-1]
    assert refusal.kind == "refused" and refusal.trigger is None
    assert refusal.data == {"fact_kind": "prescription"}
    assert [b["code"] for b in refusal.blockers] == ["case_closed"]
    assert_audited(engine, case_id)


def test_a_withdrawn_case_takes_a_payment_but_not_vitals(engine: Engine) -> None:
    """The outstanding balance can still be paid on a withdrawn case; vitals and consent cannot be recorded."""
    case_id = open_case(engine)
    engine.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "moving away"})
    engine.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=BILLING)
    with pytest.raises(TransitionBlocked):
        engine.record(case_id, "vitals", {"phase": "pre_dose", "systolic": 120, "diastolic": 80}, actor=THERAPIST)
    with pytest.raises(TransitionBlocked):
        engine.record(case_id, "consent", {"form_version": "2026-01", "signed_on": "2026-01-01"}, actor=THERAPIST)
    assert [f.kind for f in engine.facts(case_id)] == ["inquiry", "payment"]
    assert_audited(engine, case_id)


def test_a_referred_psychotherapy_case_refuses_a_booking_but_takes_a_payment(
    any_ready_url: str, clock: FakeClock
) -> None:
    """The psychotherapy workflow declares its fact kinds too: a booking on a referred case is refused."""
    with build_engine(any_ready_url, PSYCHOTHERAPY_PATHWAY, clock=clock) as e:
        case_id = therapy.open_case(e)
        therapy.to_intake_booked(e, clock, case_id)
        e.record(case_id, "consent", therapy.CONSENT, actor=FRONT_DESK)
        e.fire(case_id, "start_intake", actor=THERAPIST)
        e.fire(case_id, "refer_out", actor=THERAPIST, data={"reason": "another service"})
        with pytest.raises(TransitionBlocked) as info:
            e.book_appointment(case_id, "psychotherapy_session", at(9, 10), actor=FRONT_DESK, **who(case_id))
        assert "case_closed" in [b.code for b in info.value.blockers]
        e.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=BILLING)
        assert_audited(e, case_id)


def test_releasing_an_unpaid_evaluation_cancels_it_its_reminders_and_its_calendar_event(kit: ReminderKit) -> None:
    """The worker's release_evaluation cancels the appointment, its pending reminders and its calendar event."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(3, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.run()
    booked = kit.calendar.get(f"{case_id}-a1@kapflow")
    assert booked is not None and not booked.cancelled and booked.sequence == 0
    kit.advance(days=3, hours=6, minutes=30)
    assert e.case(case_id).state == "inquiry"
    assert [(a.id, a.status) for a in e.appointments(case_id)] == [("a1", "cancelled")]
    released = kit.calendar.get(f"{case_id}-a1@kapflow")
    assert released is not None and released.cancelled and released.sequence == 1
    assert not [t for t in e.timers(case_id) if t["status"] == "pending" and ":a1:" in t["key"]]
    assert [t["reminder"] for t in e.timers(case_id) if t["status"] == "pending"] == ["inquiry_unanswered"]
    kinds = [(ev.kind, ev.trigger, ev.data.get("kind")) for ev in e.history(case_id)[-2:]]
    assert kinds == [("transition", "release_evaluation", None), ("fact", None, "appointment_update")]
    assert_audited(e, case_id)
    # The case can book a new evaluation: one booked appointment, the released one cancelled.
    e.book_appointment(case_id, "evaluation", at(10, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    assert [a.status for a in e.appointments(case_id)] == ["cancelled", "booked"]


def test_release_by_the_front_desk_cancels_too_and_keeps_other_appointments(engine: Engine) -> None:
    """A transition cancels only the appointment kinds it names, in the move's transaction."""
    case_id = open_case(engine)
    engine.book_appointment(case_id, "evaluation", at(3, 15), actor=FRONT_DESK, **who(case_id))
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    out = engine.fire(case_id, "release_evaluation", actor=FRONT_DESK)
    assert out.state == "inquiry" and out.version == engine.case(case_id).version
    assert [a.status for a in engine.appointments(case_id)] == ["cancelled"]
    assert_audited(engine, case_id)


def _in_integration(engine: Engine, clock: FakeClock) -> str:
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)
    dose_and_discharge(engine, clock, case_id)
    return case_id


def test_a_second_session_before_integration_says_the_integration_is_missing(engine: Engine, clock: FakeClock) -> None:
    """From integration_psychotherapy, starting a KAP session names the pending integration, audited and checked."""
    case_id = _in_integration(engine, clock)
    day = engine.history(case_id)[-1].at.date().isoformat()
    with pytest.raises(TransitionNotAvailable) as info:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    expected = f"the integration psychotherapy of the KAP session on {day} is not completed"
    assert [b.code for b in info.value.blockers] == ["integration_pending"]
    assert expected in info.value.message
    refusal = engine.history(case_id)[-1]
    assert [b["code"] for b in refusal.blockers] == ["transition_not_available", "integration_pending"]
    verdict = engine.check(case_id, "start_kap_session", actor=THERAPIST)
    assert [b.code for b in verdict.blockers] == ["not_available_from_state", "integration_pending"]
    assert expected in verdict.blockers[1].message
    assert_audited(engine, case_id)


def test_one_code_for_a_wrong_role_in_check_and_fire(engine: Engine) -> None:
    """check() and fire() name a wrong role with the same code."""
    case_id = open_case(engine)
    verdict = engine.check(case_id, "hold", actor=CLIENT, data={"reason": "x"})
    with pytest.raises(NotPermitted) as info:
        engine.fire(case_id, "hold", actor=CLIENT, data={"reason": "x"})
    assert [b.code for b in verdict.blockers] == [info.value.code] == ["not_permitted"]
    assert engine.history(case_id)[-1].blockers[0]["code"] == "not_permitted"


def test_a_refused_fact_is_audited_as_a_fact_of_its_kind(engine: Engine) -> None:
    """A wrong role booking an appointment: the refusal speaks of the appointment fact, not a made-up trigger."""
    case_id = open_case(engine)
    with pytest.raises(NotPermitted) as info:
        engine.book_appointment(case_id, "evaluation", at(3, 15), actor=AUDITOR, **who(case_id))
    assert info.value.fact_kind == "appointment" and info.value.trigger == ""
    refusal = engine.history(case_id)[-1]
    assert refusal.trigger is None and refusal.data == {"fact_kind": "appointment"}
    assert "record appointment" not in str(refusal.blockers)
    assert "an appointment" in str(refusal.blockers[0]["message"])


@pytest.mark.parametrize("value", [False, True, 0, 1.5, [], ["x"], {}, {"a": "b"}])
def test_required_data_must_be_text(engine: Engine, value: Any) -> None:
    """A required key given as anything but text is InvalidInput naming the field; nothing is written."""
    case_id = open_case(engine)
    before = engine.case(case_id)
    events = len(engine.history(case_id))
    with pytest.raises(InvalidInput) as info:
        engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": value})
    assert info.value.field == "reason"
    assert "reason" in info.value.message and "text" in info.value.message
    assert engine.case(case_id) == before and len(engine.history(case_id)) == events
    with pytest.raises(InvalidInput):
        engine.check(case_id, "hold", actor=FRONT_DESK, data={"reason": value})


def test_a_closed_case_keeps_nothing_on_the_calendar(kit: ReminderKit) -> None:
    """Withdrawing cancels the appointments still ahead (and their calendar events); one already past stays."""
    e = kit.engine
    case_id = open_case(e)
    # An hour before T0, recorded after the fact (a late entry): past at withdrawal.
    e.record(case_id, "appointment", {"kind": "evaluation", **who(case_id), "starts_at": at(0, 8).isoformat(),
                                      "late_entry": True, "reason": "walk-in, entered late"}, actor=FRONT_DESK)
    e.book_appointment(case_id, "evaluation", at(3, 15), actor=FRONT_DESK, **who(case_id))
    kit.run()
    assert kit.calendar.get(f"{case_id}-a2@kapflow") is not None
    e.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "moving away"})
    kit.run()
    assert [a.status for a in e.appointments(case_id)] == ["booked", "cancelled"]
    cancelled = kit.calendar.get(f"{case_id}-a2@kapflow")
    assert cancelled is not None and cancelled.cancelled
    assert_audited(e, case_id)


def test_a_discharge_cancels_the_sessions_still_booked(any_ready_url: str) -> None:
    """A planned psychotherapy discharge cancels the next session booked; the episode's visits stay."""
    clock = FakeClock(T0)
    with build_engine(any_ready_url, PSYCHOTHERAPY_PATHWAY, clock=clock) as e:
        case_id = therapy.open_case(e)
        therapy.to_active(e, clock, case_id)
        e.book_appointment(case_id, "psychotherapy_session", clock.now() + timedelta(days=7), actor=FRONT_DESK,
                           **who(case_id))
        e.fire(case_id, "discharge", actor=THERAPIST, data={"reason": "goals met"})
        assert [(a.kind, a.status) for a in e.appointments(case_id)] == [
            ("intake", "booked"), ("psychotherapy_session", "cancelled"),
        ]
