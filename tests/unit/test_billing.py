"""The ledger's rules as pure functions: the time rule, payments applied by purpose then age, voids returning
what was paid as credit, refunds only of a credit, and the summary billing's work list reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kapflow.domain.billing import Service, TimeBand, adjustment_problem, ledger, money_text, summary
from kapflow.domain.case import CaseFacts, fold_fact
from kapflow.workflows.kap.billing import KAP_BILLING, PSYCHOTHERAPY_BANDS

T0 = datetime(2026, 3, 2, 15, tzinfo=UTC)
THERAPY = KAP_BILLING.services["integration_session"]


def charge(service: str, fee: str, day: int, *, insurance: bool = True, visit: str = "") -> tuple[str, dict[str, Any]]:
    return "charge", {"visit": visit or f"a{day}", "service": service, "description": service, "units": 1,
                      "fee": fee, "insurance": insurance, "date_of_service": date(2026, 3, day).isoformat()}


def facts(*entries: tuple[str, dict[str, Any]]) -> CaseFacts:
    raw: dict[str, Any] = {}
    for n, (kind, data) in enumerate(entries):
        raw = fold_fact(raw, kind, T0 + timedelta(minutes=n), "billing-1", data)
    return CaseFacts(raw)


def pay(amount: str, purpose: str = "psychotherapy") -> tuple[str, dict[str, Any]]:
    return "payment", {"amount": amount, "purpose": purpose}


def adjust(**data: Any) -> tuple[str, dict[str, Any]]:
    return "billing_adjustment", data


@pytest.mark.parametrize(("minutes", "coded"), [
    (15, None), (16, ("90832", "85.00")), (37, ("90832", "85.00")), (38, ("90834", "125.00")),
    (52, ("90834", "125.00")), (53, ("90837", "165.00")), (90, ("90837", "165.00")),
])
def test_psychotherapy_follows_the_time_rule(minutes: int, coded: tuple[str, str] | None) -> None:
    found = THERAPY.coded(minutes)
    assert (None if found is None else (found[0], f"{found[1]}")) == coded


def test_a_service_is_checked_when_declared() -> None:
    with pytest.raises(ValueError, match="whole cents"):
        Service("x", "X", Decimal("1.005"))
    with pytest.raises(ValueError, match="ascend"):
        Service("x", "X", Decimal("1.00"), time_bands=(PSYCHOTHERAPY_BANDS[1], PSYCHOTHERAPY_BANDS[0]))
    assert Service("x", "X", Decimal("9.00"), time_bands=(TimeBand(10, "99999", Decimal("9.00")),)).coded(9) is None


def test_a_payment_pays_its_purpose_first_then_the_oldest_and_leaves_a_credit() -> None:
    books = ledger(facts(charge("integration_session", "165.00", 2), charge("prescriber_evaluation", "250.00", 3,
                                                                           insurance=False),
                         pay("300.00", "evaluation_fee")), KAP_BILLING)
    evaluation, therapy = books.charge("c2"), books.charge("c1")
    assert evaluation is not None and therapy is not None
    assert (evaluation.paid, therapy.paid, books.balance) == (Decimal("250.00"), Decimal("50.00"), Decimal("115.00"))
    books = ledger(facts(pay("400.00"), charge("integration_session", "165.00", 2)), KAP_BILLING)
    assert (books.credit, books.balance) == (Decimal("235.00"), Decimal("-235.00"))  # paid ahead: a credit
    assert [e.balance for e in books.entries] == [Decimal("-400.00"), Decimal("-235.00")]


def test_a_void_returns_what_was_paid_and_a_refund_spends_the_credit() -> None:
    books = ledger(facts(charge("integration_session", "165.00", 2), pay("165.00"),
                         adjust(action="void", charge="c1", reason="posted in error")), KAP_BILLING)
    assert (books.balance, books.credit, books.adjusted) == (Decimal("-165.00"), Decimal("165.00"), Decimal("165.00"))
    assert adjustment_problem(books, {"action": "refund", "amount": "165.01", "reason": "x"}) is not None
    assert adjustment_problem(books, {"action": "refund", "amount": "165.00", "reason": "x"}) is None
    assert "already void" in str(adjustment_problem(books, {"action": "void", "charge": "c1", "reason": "x"}))
    books = ledger(facts(charge("integration_session", "165.00", 2), pay("165.00"),
                         adjust(action="void", charge="c1", reason="x"),
                         adjust(action="refund", amount="165.00", reason="returned")), KAP_BILLING)
    assert (books.balance, books.credit, books.paid) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))


def test_the_summary_counts_unbilled_insurance_lines_and_the_oldest_open_one() -> None:
    books = ledger(facts(charge("prescriber_evaluation", "250.00", 2, insurance=False), charge(
        "integration_session", "165.00", 5), charge("integration_session", "165.00", 9), pay("250.00",
                                                                                             "evaluation_fee")),
                   KAP_BILLING)
    assert summary(books) == summary(books, ())
    found = summary(books, billed=("c2",))
    assert (found.balance_cents, found.unbilled, found.oldest_unbilled, found.oldest_open) == (
        33000, 1, date(2026, 3, 9), date(2026, 3, 5))


@given(st.lists(st.tuples(st.sampled_from(["charge", "payment", "void", "write_off"]),
                          st.integers(min_value=1, max_value=50_000)), max_size=25))
def test_the_balance_is_always_charged_less_adjusted_less_paid(steps: list[tuple[str, int]]) -> None:
    """Whatever the order of charges, payments, voids and write-offs: the balance is charged - adjusted - paid,
    each statement entry's balance is the running sum, and no charge line has more paid than it is owed."""
    entries: list[tuple[str, dict[str, Any]]] = []
    charges = 0
    for kind, cents in steps:
        amount = f"{Decimal(cents) / 100:.2f}"
        if kind == "charge":
            charges += 1
            entries.append(charge("integration_session", amount, 1 + charges % 28, visit=f"a{charges}"))
        elif kind == "payment":
            entries.append(pay(amount))
        elif charges:
            books = ledger(facts(*entries), KAP_BILLING)
            data = {"action": kind, "charge": f"c{1 + cents % charges}", "reason": "x"}
            if kind == "write_off":
                data["amount"] = amount
            if adjustment_problem(books, data) is None:
                entries.append(adjust(**data))
    books = ledger(facts(*entries), KAP_BILLING)
    assert books.balance == books.charged - books.adjusted - books.paid
    running = Decimal("0.00")
    for entry in books.entries:
        running += entry.amount
        assert entry.balance == running
    assert all(Decimal("0.00") <= c.open <= c.fee for c in books.charges)
    assert books.credit >= 0 and books.balance == sum(c.open for c in books.charges) - books.credit


def test_money_reads_as_people_write_it() -> None:
    assert (money_text(Decimal("1485")), money_text(Decimal("-20.5"))) == ("$1,485.00", "-$20.50")


def _snapshot(books: Any) -> tuple[Any, ...]:
    """Everything a ledger says, copied out (its lines are objects a wrong step could change later)."""
    return (tuple((c.id, c.paid, c.written_off, c.voided, c.open) for c in books.charges), books.entries,
            books.charged, books.paid, books.adjusted, books.credit)


@given(st.lists(st.tuples(st.sampled_from(["charge", "payment", "refund", "void", "write_off", "other"]),
                          st.integers(min_value=1, max_value=50_000), st.booleans()), max_size=30))
@example([("charge", 5000, False), ("payment", 5000, True), ("void", 1, True)])  # a settled line voided
def test_a_ledger_stepped_fact_by_fact_is_the_ledger_folded_afresh(steps: list[tuple[str, int, bool]]) -> None:
    """The ledger kept with a projection and stepped by each new fact (``CaseFacts.extended``) says what a
    fold of the whole case says, and every ledger asked for before stays as it was when it was given."""
    raw: dict[str, Any] = {"facts": [], "moves": []}
    view, charges = CaseFacts(raw), 0
    given_before: list[tuple[Any, tuple[Any, ...]]] = []
    for n, (kind, cents, ask) in enumerate(steps):
        amount = f"{Decimal(cents) / 100:.2f}"
        if kind == "charge":
            charges += 1
            entry = charge("integration_session", amount, 1 + charges % 28, visit=f"a{charges}")
        elif kind == "payment":
            entry = pay(amount, "" if cents % 2 else "psychotherapy")
        elif kind == "other":
            entry = ("vitals", {"phase": "pre_dose"})
        elif kind == "refund":
            entry = adjust(action="refund", amount=amount, reason="x")
        elif charges:
            entry = adjust(action=kind, charge=f"c{1 + cents % charges}", amount=amount, reason="x")
        else:
            continue
        if entry[0] == "billing_adjustment" and adjustment_problem(ledger(view, KAP_BILLING), entry[1]) is not None:
            continue
        raw = fold_fact(raw, entry[0], T0 + timedelta(minutes=n), "billing-1", entry[1])
        view = view.extended(raw, "facts")
        if ask:  # asked now: the next fact steps this ledger; not asked: several facts step the one before
            books = ledger(view, KAP_BILLING)
            given_before.append((books, _snapshot(books)))
    assert _snapshot(ledger(view, KAP_BILLING)) == _snapshot(ledger(CaseFacts(raw), KAP_BILLING))
    assert all(_snapshot(books) == seen for books, seen in given_before)
