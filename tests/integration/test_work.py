"""A staff member's work ("My work"): per role, what waits on them, oldest first, with the reason in words.

Each test runs on SQLite and on PostgreSQL (``any_ready_url``), on a fake clock, through the engine's own
commands and its worker (``ReminderKit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from kapflow.app.dispatch import DeliveryPolicy
from kapflow.app.engine import Engine
from kapflow.domain.work import APPOINTMENT_TO_CONFIRM, APPOINTMENT_TODAY, DELIVERY_FAILED, WorkItem
from kapflow.present import work_item_shape
from kapflow.testing import FakeClock, ReminderKit
from tests.support import (
    CONTACTS,
    FRONT_DESK,
    PRESCRIBER,
    T0,
    THERAPIST,
    at,
    booking,
    open_case,
    prepare_dosing,
    to_ready,
    who,
)

OTHER_PRESCRIBER = "np-other"


@pytest.fixture
def kit(any_ready_url: str) -> Iterator[ReminderKit]:
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), contacts=CONTACTS)
    yield kit
    kit.close()


def codes(items: list[WorkItem], case_id: str | None = None) -> list[str]:
    return [i.code for i in items if case_id is None or i.case_id == case_id]


def book_evaluation(engine: Engine, case_id: str, starts: Any, clinician: str | None = None) -> str:
    out = engine.book_appointment(case_id, "evaluation", starts, actor=FRONT_DESK,
                                  clinician=clinician or who(case_id)["clinician"])
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    return str(out.extra["appointment"])


def pay(engine: Engine, case_id: str) -> None:
    engine.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)


def test_an_unanswered_inquiry_waits_on_the_front_desk_after_two_business_days(kit: ReminderKit) -> None:
    engine = kit.engine
    case_id = open_case(engine)
    kit.advance(days=1, hours=23)  # Wednesday 08:00: not yet 2 business days
    assert codes(engine.work("front_desk", FRONT_DESK.id), case_id) == []
    kit.advance(hours=2)  # Wednesday 10:00: due at 09:00, and the worker has emailed the front desk
    items = engine.work("front_desk", FRONT_DESK.id)
    assert codes(items, case_id) == ["inquiry_unanswered"]
    assert items[0].since == at(2) and items[0].sentence == "An inquiry has waited 2 business days for an answer."
    assert items[0].appointment is None
    assert engine.work("prescriber", PRESCRIBER.id) == []
    # The front desk answers: books the evaluation. The alert no longer stands.
    book_evaluation(engine, case_id, at(10, 15))
    assert "inquiry_unanswered" not in codes(engine.work("front_desk", FRONT_DESK.id), case_id)


def test_a_pending_due_timer_counts_before_the_worker_sends_it(kit: ReminderKit) -> None:
    case_id = open_case(kit.engine)
    kit.clock.advance(days=3)  # no worker ran: the timer is still pending, yet due
    assert codes(kit.engine.work("front_desk", "fd-any"), case_id) == ["inquiry_unanswered"]


def test_an_unpaid_evaluation_fee_waits_on_the_front_desk_from_24_hours_before(kit: ReminderKit) -> None:
    engine = kit.engine
    case_id = open_case(engine)
    appointment = book_evaluation(engine, case_id, at(5, 15))
    kit.advance(until := at(4, 14) - T0)
    assert kit.clock.now() == T0 + until
    items = engine.work("front_desk", FRONT_DESK.id)
    assert "evaluation_fee_unpaid_alert" not in codes(items, case_id)
    # Within 3 days and still blocked: on the front desk's list of appointments to confirm, codes in words.
    confirm = next(i for i in items if i.code == APPOINTMENT_TO_CONFIRM)
    assert confirm.appointment is not None and confirm.appointment.id == appointment
    assert ("evaluation_fee_unpaid", "evaluation fee unpaid") in confirm.blockers
    kit.advance(hours=1, minutes=5)  # 24 hours before the 15:00 evaluation
    items = engine.work("front_desk", FRONT_DESK.id)
    alert = next(i for i in items if i.code == "evaluation_fee_unpaid_alert")
    assert alert.since == at(5, 15) - timedelta(hours=24)
    assert "{" not in alert.sentence and "24 hours" in alert.sentence
    assert alert.appointment is not None and alert.appointment.kind == "evaluation"
    assert alert.appointment.trigger == "start_evaluation"
    pay(engine, case_id)
    assert codes(engine.work("front_desk", FRONT_DESK.id), case_id) == []


def test_a_prescriber_sees_todays_evaluation_unpaid_then_ready_and_not_another_prescribers(
    kit: ReminderKit,
) -> None:
    engine = kit.engine
    mine, theirs, tomorrow = open_case(engine), open_case(engine), open_case(engine)
    book_evaluation(engine, mine, at(2, 15), clinician=PRESCRIBER.id)
    book_evaluation(engine, theirs, at(2, 11), clinician=OTHER_PRESCRIBER)
    book_evaluation(engine, tomorrow, at(3, 10), clinician=PRESCRIBER.id)
    kit.advance(days=2, hours=-1)  # 08:00 on the day
    items = [i for i in engine.work("prescriber", PRESCRIBER.id) if i.code == APPOINTMENT_TODAY]
    assert [i.case_id for i in items] == [mine]
    item = items[0]
    assert item.since == at(2, 15) and item.appointment is not None
    assert item.appointment.clinician == PRESCRIBER.id and item.appointment.kind == "evaluation"
    assert [c for c, _ in item.blockers] == ["evaluation_fee_unpaid"]
    assert "$250" in item.blockers[0][1] and not item.ready  # the prescriber reads every fact: the sentence
    assert item.sentence.startswith("Evaluation at 15:00") and "fee" in item.sentence
    others = [i for i in engine.work("prescriber", OTHER_PRESCRIBER) if i.code == APPOINTMENT_TODAY]
    assert [i.case_id for i in others] == [theirs]
    pay(engine, mine)
    item = next(i for i in engine.work("prescriber", PRESCRIBER.id) if i.code == APPOINTMENT_TODAY)
    assert item.ready and item.blockers == () and item.sentence == "Evaluation at 15:00 UTC: ready."
    shape = work_item_shape(item, engine.app.practice)
    assert shape["readiness"] == "ready" and shape["appointment"]["trigger"] == "start_evaluation"
    assert shape["since_text"] == "2026-01-07 15:00 UTC"


def test_a_therapist_sees_todays_kap_session_with_its_readiness(kit: ReminderKit) -> None:
    engine, clock = kit.engine, kit.clock
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)
    day = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    engine.book_appointment(case_id, "kap_session", day + timedelta(hours=15), actor=FRONT_DESK,
                            clinician=THERAPIST.id, room="room-1")
    clock.advance(hours=13 - clock.now().hour)  # 13:00 the same day
    item = next(i for i in engine.work("therapist", THERAPIST.id) if i.code == APPOINTMENT_TODAY)
    assert item.case_id == case_id and item.appointment is not None and item.appointment.kind == "kap_session"
    assert item.appointment.trigger == "start_kap_session"
    blocked = {c for c, _ in item.blockers}
    assert {"pre_dose_vitals_missing", "fasting_not_attested", "escort_missing", "clinician_not_present"} <= blocked
    assert "consent_missing" not in blocked and not item.ready
    # The front desk sees it among the appointments to confirm, each blocker by its code in words only.
    desk = next(i for i in engine.work("front_desk", FRONT_DESK.id) if i.code == APPOINTMENT_TO_CONFIRM)
    assert ("escort_missing", "escort missing") in desk.blockers
    # A reading out of range: the therapist reads the values, the front desk (no vitals) does not.
    prepare_dosing(engine, case_id, systolic=165, diastolic=95)
    item = next(i for i in engine.work("therapist", THERAPIST.id) if i.code == APPOINTMENT_TODAY)
    assert [c for c, _ in item.blockers] == ["pre_dose_blood_pressure_high"] and "165/95" in item.sentence
    desk_text = " ".join(f"{i.sentence} {i.blockers}" for i in engine.work("front_desk", FRONT_DESK.id))
    assert "pre dose blood pressure high" in desk_text and "165" not in desk_text
    engine.record(case_id, "vitals", {"phase": "pre_dose", "systolic": 124, "diastolic": 80}, actor=THERAPIST)
    item = next(i for i in engine.work("therapist", THERAPIST.id) if i.code == APPOINTMENT_TODAY)
    assert item.ready and item.sentence.endswith(": ready.")
    assert APPOINTMENT_TO_CONFIRM not in codes(engine.work("front_desk", FRONT_DESK.id), case_id)


def test_a_failed_delivery_waits_on_the_front_desk(any_ready_url: str) -> None:
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), contacts=CONTACTS,
                      policy=DeliveryPolicy(max_attempts=1))
    try:
        case_id = open_case(kit.engine)
        kit.email.fail_next(1, permanent=True)
        kit.advance(days=3)  # the inquiry alert to the front desk fails for good
        assert any(r["status"] == "dead" for r in kit.engine.outbox(case_id))
        items = kit.engine.work("front_desk", FRONT_DESK.id)
        failed = [i for i in items if i.code == DELIVERY_FAILED]
        assert [i.case_id for i in failed] == [case_id]
        assert "could not be delivered" in failed[0].sentence and "front desk" in failed[0].sentence
        assert DELIVERY_FAILED not in codes(kit.engine.work("therapist", THERAPIST.id))
    finally:
        kit.close()


def test_oldest_first_and_limited(kit: ReminderKit) -> None:
    engine = kit.engine
    opened = []
    for n in range(3):
        opened.append(open_case(engine, last_name=f"Client-{n}"))
        kit.clock.advance(hours=1)
    kit.advance(days=3)
    items = engine.work("front_desk", FRONT_DESK.id)
    assert [i.case_id for i in items] == opened
    assert [i.since for i in items] == sorted(i.since for i in items)
    assert [i.case_id for i in engine.work("front_desk", FRONT_DESK.id, limit=2)] == opened[:2]


def test_a_role_not_named_gets_nothing(kit: ReminderKit) -> None:
    engine = kit.engine
    case_id = open_case(engine)
    book_evaluation(engine, case_id, at(2, 15), clinician=PRESCRIBER.id)
    kit.advance(days=2)
    assert engine.work("front_desk", FRONT_DESK.id)  # there is work, for the front desk
    assert {i.code for i in engine.work("billing", "billing-1")} == {"evaluation_fee_unpaid_alert"}  # work_also
    for role in ("auditor", "client", "system", "janitor"):
        assert engine.work(role, PRESCRIBER.id) == [], role


@pytest.mark.parametrize("cases", [10, 1000])
def test_the_work_of_many_cases_takes_a_bounded_number_of_queries(kit: ReminderKit, cases: int) -> None:
    engine = kit.engine
    for n in range(cases):
        open_case(engine, last_name=f"Client-{n}")
    kit.clock.advance(days=3)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    store: Any = engine.store
    reads = store._read

    def counted_read(statement: Any, values: Any) -> Any:
        statements.append("read")
        return reads(statement, values)

    event.listen(store.engine, "before_cursor_execute", count)
    store._read = counted_read
    try:
        items = engine.work("front_desk", FRONT_DESK.id, limit=100)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
        store._read = reads
    assert len(items) == min(cases, 100)
    assert [i.since for i in items] == sorted(i.since for i in items)
    # One query per timer status (6), one seek for clinicians' appointments, one for failed deliveries:
    # the same for 10 cases as for 1000.
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT") or s == "read"]) <= 10, statements


def test_billing_sees_an_evaluation_fee_unpaid_the_day_before(engine: Engine, clock: FakeClock) -> None:
    """The front desk's alert is billing's work too (``Reminder.work_also``), with no message to billing."""
    case_id = open_case(engine)
    engine.record(case_id, "appointment", booking(case_id, "evaluation", clock.now() + timedelta(days=3)),
                  actor=FRONT_DESK)
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    assert [i for i in engine.work("billing", "billing-1") if i.case_id == case_id] == []
    clock.advance(days=2, hours=1)
    (item,) = [i for i in engine.work("billing", "billing-1") if i.case_id == case_id]
    assert item.code == "evaluation_fee_unpaid_alert" and "fee is unpaid" in item.sentence
    engine.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    assert [i for i in engine.work("billing", "billing-1") if i.case_id == case_id] == []
