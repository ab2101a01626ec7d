"""Charges posted as visits complete, payments applied, corrections as adjustments: the ledger of a KAP case,
on SQLite and PostgreSQL.

One client's whole pathway (an evaluation, intention setting, 6 KAP sessions, 2 integration sessions and
one no-show) posts exactly $250 self-pay (90792) and 9 × $165 (90837), nothing for the ketamine portion
and nothing for the no-show; payments and a refund give the right balance. Fees are the workflow
version's: a new version's fee changes only the charges posted after the case moves to it. A visit
completed twice, or completed and marked attended, is charged once, even when the two race.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from http_server import serving
from support import (
    BILLING,
    FRONT_DESK,
    INQUIRY,
    PRESCRIBER,
    THERAPIST,
    assert_audited,
    booking,
    dose_and_discharge,
    open_case,
    to_evaluating,
)

from kapflow.app.engine import Engine
from kapflow.domain.billing import FeePolicy, Ledger
from kapflow.domain.errors import InvalidInput, KapflowError, NotPermitted, TransitionBlocked
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.kap.billing import KAP_BILLING
from kapflow.workflows.kap.definition import READ_ACCESS

SYSTEM_WIDE = ("prescriber_evaluation", "intention_setting", "integration_psychotherapy", "integration_session")


def lines(books: Ledger) -> list[tuple[str, str | None, str, bool]]:
    return [(c.service, c.code, f"{c.fee}", c.insurance) for c in books.charges]


def book(engine: Engine, clock: FakeClock, case_id: str, kind: str, days: int = 7) -> str:
    outcome = engine.record(case_id, "appointment", booking(case_id, kind, clock.now() + timedelta(days=days)),
                            actor=FRONT_DESK)
    return str(outcome.extra["appointment"])


def evaluated_and_set(engine: Engine, clock: FakeClock, case_id: str, sessions: int = 6) -> None:
    """Evaluation (booked, paid, done), prescription, consent, plan, intention setting (booked and done)."""
    to_evaluating(engine, clock, case_id)
    engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    engine.fire(case_id, "find_suitable", actor=PRESCRIBER)
    today = clock.now().date()
    engine.record(case_id, "prescription", {"prescriber": "NP Sample", "issued_on": today.isoformat(),
                                            "expires_on": (today + timedelta(days=365)).isoformat()}, actor=PRESCRIBER)
    engine.record(case_id, "consent", {"form_version": "2026-01", "signed_on": today.isoformat()}, actor=THERAPIST)
    engine.record(case_id, "treatment_plan", {"action": "set", "sessions": sessions}, actor=PRESCRIBER)
    book(engine, clock, case_id, "intention_setting", days=2)
    clock.advance(days=2)
    engine.fire(case_id, "start_intention_setting", actor=THERAPIST)
    engine.fire(case_id, "complete_intention_setting", actor=THERAPIST, data={"intentions": "rest; ground"})


def kap_session(engine: Engine, clock: FakeClock, case_id: str) -> None:
    book(engine, clock, case_id, "kap_session")
    clock.advance(days=7)
    dose_and_discharge(engine, clock, case_id)
    clock.advance(minutes=60)
    engine.fire(case_id, "complete_integration", actor=THERAPIST)


def integration_session(engine: Engine, clock: FakeClock, case_id: str, **data: object) -> str:
    appt = book(engine, clock, case_id, "integration_session", days=3)
    clock.advance(days=3)
    engine.fire(case_id, "start_integration_session", actor=THERAPIST)
    engine.fire(case_id, "complete_integration_session", actor=THERAPIST, data=dict(data) or None)
    return appt


def test_the_whole_pathway_posts_exactly_the_practices_lines(engine: Engine, clock: FakeClock) -> None:
    case_id = open_case(engine)
    evaluated_and_set(engine, clock, case_id)
    for _ in range(6):
        kap_session(engine, clock, case_id)
    integration_session(engine, clock, case_id)
    missed = book(engine, clock, case_id, "integration_session", days=3)
    clock.advance(days=3, minutes=20)
    engine.mark_no_show(case_id, missed, actor=FRONT_DESK)
    integration_session(engine, clock, case_id)

    books = engine.ledger(case_id)
    assert lines(books) == [
        ("prescriber_evaluation", "90792", "250.00", False),
        ("intention_setting", "90837", "165.00", True),
        *[("integration_psychotherapy", "90837", "165.00", True)] * 6,
        *[("integration_session", "90837", "165.00", True)] * 2,
    ]
    assert not any(c.service == "ketamine_support" for c in books.charges)  # no cost: no line
    assert missed not in {c.visit for c in books.charges}  # no fee for a no-show unless the practice sets one
    assert [c.visit for c in books.charges] == [a.id for a in engine.appointments(case_id)
                                                 if a.status != "no_show"]  # each line names its appointment
    assert books.charged == Decimal("1735.00") and books.paid == Decimal("250.00")
    assert books.balance == Decimal("1485.00")  # 9 x $165: the evaluation fee was paid before it

    engine.record(case_id, "payment", {"amount": "1000.00", "purpose": "psychotherapy"}, actor=BILLING)
    engine.record(case_id, "payment", {"amount": "600.00", "purpose": "psychotherapy"}, actor=BILLING)
    books = engine.ledger(case_id)
    assert (books.balance, books.credit) == (Decimal("-115.00"), Decimal("115.00"))
    assert all(c.open == 0 for c in books.charges)
    engine.record(case_id, "billing_adjustment", {"action": "refund", "amount": "115.00",
                                                  "reason": "overpaid by card"}, actor=BILLING)
    books = engine.ledger(case_id)
    assert (books.balance, books.credit, books.paid) == (Decimal("0.00"), Decimal("0.00"), Decimal("1735.00"))
    assert [e.balance for e in books.entries][-1] == Decimal("0.00")
    assert_audited(engine, case_id)  # the charges are facts in the chain: the history replays to the row


def test_a_charge_is_a_fact_audited_after_the_visits_command(sqlite_engine: Engine, clock: FakeClock) -> None:
    case_id = open_case(sqlite_engine)
    to_evaluating(sqlite_engine, clock, case_id)
    sqlite_engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    outcome = sqlite_engine.fire(case_id, "find_suitable", actor=PRESCRIBER)
    history = sqlite_engine.history(case_id)
    assert [(e.kind, e.trigger or e.data.get("kind")) for e in history[-2:]] == [
        ("transition", "find_suitable"), ("fact", "charge")]
    assert history[-1].actor == PRESCRIBER.id and outcome.version == sqlite_engine.case(case_id).version
    charge = history[-1].data["fact"]
    assert charge == {"visit": "a1", "service": "prescriber_evaluation", "description": "Prescriber evaluation",
                      "code": "90792", "units": 1, "fee": "250.00", "insurance": False,
                      "date_of_service": charge["date_of_service"], "minutes": 60, "clinician": charge["clinician"]}
    with pytest.raises(NotPermitted):  # nobody records a charge by hand
        sqlite_engine.record(case_id, "charge", charge, actor=BILLING)


def test_psychotherapy_is_coded_by_the_minutes_recorded(sqlite_engine: Engine, clock: FakeClock) -> None:
    case_id = open_case(sqlite_engine)
    evaluated_and_set(sqlite_engine, clock, case_id)
    integration_session(sqlite_engine, clock, case_id, billed_minutes=45)
    integration_session(sqlite_engine, clock, case_id, billed_minutes=20)
    integration_session(sqlite_engine, clock, case_id, billed_minutes=12)  # shorter than 16 minutes: not billable
    integration_session(sqlite_engine, clock, case_id, billed_minutes=53)
    assert [(c.code, f"{c.fee}", c.minutes) for c in sqlite_engine.ledger(case_id).charges[2:]] == [
        ("90834", "125.00", 45), ("90832", "85.00", 20), ("90837", "165.00", 53)]
    appt = book(sqlite_engine, clock, case_id, "integration_session", days=1)
    clock.advance(days=1)
    sqlite_engine.fire(case_id, "start_integration_session", actor=THERAPIST)
    version = sqlite_engine.case(case_id).version
    for bad in (0, 481, "45", 4.5, True):
        with pytest.raises(InvalidInput) as refused:
            sqlite_engine.fire(case_id, "complete_integration_session", actor=THERAPIST, data={"billed_minutes": bad})
        assert refused.value.field == "billed_minutes"
    assert sqlite_engine.case(case_id).version == version  # nothing written
    with pytest.raises(KapflowError, match="billed_minutes"):  # a no-show lasted no minutes
        sqlite_engine.record(case_id, "appointment_update", {"appointment": appt, "action": "no_show",
                                                      "billed_minutes": 30}, actor=FRONT_DESK)


def test_attended_and_completed_is_one_visit_charged_once(sqlite_engine: Engine, clock: FakeClock) -> None:
    case_id = open_case(sqlite_engine)
    evaluated_and_set(sqlite_engine, clock, case_id)
    appt = book(sqlite_engine, clock, case_id, "integration_session", days=1)
    clock.advance(days=1)
    sqlite_engine.fire(case_id, "start_integration_session", actor=THERAPIST)
    sqlite_engine.mark_attended(case_id, appt, actor=FRONT_DESK, billed_minutes=40)
    sqlite_engine.fire(case_id, "complete_integration_session", actor=THERAPIST)
    charged = [c for c in sqlite_engine.ledger(case_id).charges if c.visit == appt]
    assert [(c.service, c.code) for c in charged] == [("integration_session", "90834")]  # the first one counts


def test_no_show_and_late_cancellation_fees_only_when_the_practice_sets_them(db_url: str, clock: FakeClock) -> None:
    store = SqlStore(db_url)
    engine = Engine(store, KAP_PATHWAY, clock=clock, fees=FeePolicy(Decimal("75.00"), Decimal("40.00"), 24))
    try:
        case_id = open_case(engine)
        evaluated_and_set(engine, clock, case_id)
        missed = book(engine, clock, case_id, "integration_session", days=1)
        late = book(engine, clock, case_id, "integration_session", days=2)
        early = book(engine, clock, case_id, "integration_session", days=9)
        engine.cancel_appointment(case_id, early, actor=FRONT_DESK, reason="travel")  # a week ahead: no fee
        clock.advance(days=1, minutes=15)
        engine.mark_no_show(case_id, missed, actor=FRONT_DESK)
        clock.advance(hours=12)
        engine.cancel_appointment(case_id, late, actor=FRONT_DESK, reason="unwell")  # 12 hours before
        fees = [(c.visit, c.service, f"{c.fee}", c.code, c.insurance) for c in engine.ledger(case_id).charges[2:]]
        assert fees == [(missed, "no_show_fee", "75.00", None, False), (late, "late_cancel_fee", "40.00", None, False)]
    finally:
        store.close()


def test_a_new_versions_fee_changes_only_the_charges_posted_after_it(sqlite_engine: Engine, clock: FakeClock) -> None:
    dearer = {**KAP_BILLING.services, "integration_session": replace(
        KAP_BILLING.services["integration_session"], fee=Decimal("180.00"),
        time_bands=tuple(replace(b, fee=b.fee + 15) for b in KAP_BILLING.services["integration_session"].time_bands))}
    v2 = replace(KAP_PATHWAY, version="fees-2027", billing=replace(KAP_BILLING, services=dearer))
    store = sqlite_engine.app.store
    sqlite_engine = Engine(store, [KAP_PATHWAY, v2], clock=clock)
    case_id = sqlite_engine.open_case(dict(INQUIRY), actor=FRONT_DESK, workflow=KAP_PATHWAY).case_id
    evaluated_and_set(sqlite_engine, clock, case_id)
    integration_session(sqlite_engine, clock, case_id)
    sqlite_engine.migrate_case(case_id, v2, actor=FRONT_DESK)
    integration_session(sqlite_engine, clock, case_id)
    assert [f"{c.fee}" for c in sqlite_engine.ledger(case_id).charges] == ["250.00", "165.00", "165.00", "180.00"]
    assert_audited(sqlite_engine, case_id)


def test_adjustments_correct_the_ledger_and_refusals_say_why(sqlite_engine: Engine, clock: FakeClock) -> None:
    case_id = open_case(sqlite_engine)
    evaluated_and_set(sqlite_engine, clock, case_id)
    integration_session(sqlite_engine, clock, case_id)  # c3
    sqlite_engine.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=BILLING)

    def adjust(**data: object) -> None:
        sqlite_engine.record(case_id, "billing_adjustment", data, actor=BILLING)

    adjust(action="write_off", charge="c3", amount="15.00", reason="courtesy discount")
    assert sqlite_engine.ledger(case_id).balance == Decimal("150.00")  # the payment paid c2: c3 is open, less $15
    adjust(action="void", charge="c2", reason="booked in error")
    books = sqlite_engine.ledger(case_id)
    # c2's payment is a credit again, which pays what is open on c3 ($150): $15 is left over.
    assert (books.balance, books.credit) == (Decimal("-15.00"), Decimal("15.00"))
    assert books.charge("c2") is not None and books.charge("c2").voided  # type: ignore[union-attr]
    for data, says in [
        ({"action": "void", "charge": "c2", "reason": "again"}, "c2 is already void"),
        ({"action": "void", "charge": "c9", "reason": "typo"}, "no charge line 'c9'"),
        ({"action": "write_off", "charge": "c1", "amount": "5.00", "reason": "x"}, "more than what is open"),
        ({"action": "refund", "amount": "20.00", "reason": "x"}, "more than the credit on the account ($15.00)"),
    ]:
        with pytest.raises(TransitionBlocked, match="adjustment_does_not_fit") as refused:
            adjust(**data)
        assert says in refused.value.blockers[0].message
    assert sqlite_engine.history(case_id)[-1].kind == "refused"  # each refusal is audited, with its sentence
    with pytest.raises(InvalidInput, match="reason"):
        adjust(action="void", charge="c2")
    with pytest.raises(NotPermitted):
        sqlite_engine.record(case_id, "billing_adjustment", {"action": "void", "charge": "c2", "reason": "x"},
                      actor=FRONT_DESK)
    adjust(action="refund", amount="15.00", reason="credit returned")
    assert sqlite_engine.ledger(case_id).balance == Decimal("0.00")
    assert_audited(sqlite_engine, case_id)


def test_two_completions_of_one_visit_racing_post_one_set_of_lines(engine: Engine, clock: FakeClock) -> None:
    case_id = open_case(engine)
    evaluated_and_set(engine, clock, case_id)
    appt = book(engine, clock, case_id, "integration_session", days=1)
    clock.advance(days=1)
    engine.fire(case_id, "start_integration_session", actor=THERAPIST)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def complete() -> None:
        start.wait()
        try:
            engine.fire(case_id, "complete_integration_session", actor=THERAPIST)
        except KapflowError as err:
            errors.append(err)

    def attend() -> None:
        start.wait()
        try:
            engine.mark_attended(case_id, appt, actor=FRONT_DESK)
        except KapflowError as err:
            errors.append(err)

    threads = [threading.Thread(target=t) for t in (complete, complete, attend, attend)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 2  # the second completion finds the case moved on, the second attendance a closed one
    assert [c.service for c in engine.ledger(case_id).charges if c.visit == appt] == ["integration_session"]
    assert_audited(engine, case_id)


def test_the_api_reads_a_ledger_for_the_roles_that_read_money(db_url: str, clock: FakeClock) -> None:
    barred = replace(KAP_PATHWAY, version="no-money-desk",
                     read_access={**READ_ACCESS, "front_desk": READ_ACCESS["front_desk"] - {"charge"}})
    store = SqlStore(db_url)
    engine = Engine(store, barred, clock=clock)
    try:
        case_id = open_case(engine)
        to_evaluating(engine, clock, case_id)
        engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
        engine.fire(case_id, "find_suitable", actor=PRESCRIBER)
        billing_key = engine.create_api_key("pms-billing", "billing", created_by="test-admin")[0]
        desk_key = engine.create_api_key("pms-desk", "front_desk", created_by="test-admin")[0]
        with serving(create_app(engine, RequestAuthenticator(engine))) as base:
            answer = httpx.get(f"{base}/v1/cases/{case_id}/ledger", headers={"Authorization": f"Bearer {billing_key}"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["balance"] == "0.00" and body["charged"] == "250.00"
            assert [(c["id"], c["code"], c["fee"], c["paid"]) for c in body["charges"]] == [
                ("c1", "90792", "250.00", "250.00")]
            refused = httpx.get(f"{base}/v1/cases/{case_id}/ledger", headers={"Authorization": f"Bearer {desk_key}"})
            assert refused.status_code == 403 and "billing" in refused.text
        assert [(a.role, a.view) for a in engine.accesses(case_id=case_id)] == [("billing", "ledger")]
    finally:
        store.close()


def test_every_service_the_schedule_bills_has_a_code_and_insurance_lines_are_psychotherapy() -> None:
    for name in SYSTEM_WIDE:
        service = KAP_BILLING.services[name]
        assert service.code is not None and service.fee > 0
    assert KAP_BILLING.services["ketamine_support"].fee == 0
    assert {s.name for s in KAP_BILLING.services.values() if s.insurance} == set(SYSTEM_WIDE) - {
        "prescriber_evaluation"}


def test_billings_work_lists_visits_not_yet_billed_and_balances_due(engine: Engine, clock: FakeClock) -> None:
    paid_up = open_case(engine)
    evaluated_and_set(engine, clock, paid_up)
    owing = open_case(engine)
    evaluated_and_set(engine, clock, owing)
    integration_session(engine, clock, owing)
    engine.record(paid_up, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=BILLING)

    def work() -> list[tuple[str, str]]:
        return [(item.case_id, item.code) for item in engine.work("billing", BILLING.id)]

    assert sorted(work()) == sorted([(paid_up, "visits_not_billed"), (owing, "visits_not_billed"),
                                     (owing, "balance_due")])
    item = next(i for i in engine.work("billing", BILLING.id) if i.code == "balance_due")
    assert item.sentence.startswith("Balance due $330.00, open since a visit on ")
    assert "2 visits billed to insurance" in next(i.sentence for i in engine.work("billing", BILLING.id)
                                                 if i.case_id == owing and i.code == "visits_not_billed")
    engine.record(owing, "payment", {"amount": "330.00", "purpose": "psychotherapy"}, actor=FRONT_DESK)
    assert (owing, "balance_due") not in work()
    assert engine.work("front_desk", FRONT_DESK.id) == [] or all(
        i.code not in ("balance_due", "visits_not_billed") for i in engine.work("front_desk", FRONT_DESK.id))


def test_a_visit_nobody_booked_is_charged_as_its_own_not_as_an_earlier_days(
    sqlite_engine: Engine, clock: FakeClock
) -> None:
    case_id = open_case(sqlite_engine)
    evaluated_and_set(sqlite_engine, clock, case_id)
    booked = integration_session(sqlite_engine, clock, case_id)
    clock.advance(days=3)
    sqlite_engine.fire(case_id, "start_integration_session", actor=THERAPIST)  # a walk-in: no appointment
    sqlite_engine.fire(case_id, "complete_integration_session", actor=THERAPIST)
    visits = [c.visit for c in sqlite_engine.ledger(case_id).charges if c.service == "integration_session"]
    assert visits[0] == booked and len(visits) == 2 and visits[1].startswith("m")
