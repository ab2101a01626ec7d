"""Good Faith Estimates: what a self-pay or out-of-network client can expect to pay, before the care.

The No Surprises Act asks a provider to give such a client, before scheduled services, an estimate of the
expected items and services with their codes, quantities and fees, the total, a disclaimer and the notice
of the right to dispute a bill well above it. A workflow names the fact that sets or extends the plan of
care (``EstimateRule.fact``) and what that plan leads to expect (``EstimateRule.expected``: services of its
fee schedule, each with a quantity). When such a fact is recorded, the engine records the estimate in the
same transaction (``estimate_spec``), the fees those of the case's workflow version then, so the estimate
is on the case before any of the services it lists; its PDF is made from that record (``estimate_view``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from kapflow.domain.billing import ZERO, Billing, cents, money_text
from kapflow.domain.billing_documents import (
    GFE_DISCLAIMER,
    GFE_DISPUTE_NOTICE,
    Diagnosis,
    EstimateLine,
    GoodFaithEstimateView,
)
from kapflow.domain.case import CaseFacts
from kapflow.domain.errors import DocumentIncomplete
from kapflow.domain.facts import Day, FactSpec, Money, Text
from kapflow.domain.payload import JSONObject
from kapflow.domain.superbill import Client, Practice, client_details

DOCUMENT = "good faith estimate"

def estimate_spec(kind: str) -> FactSpec:
    """The record of a good faith estimate: its reference, what it is for, its lines with their fees then."""
    return FactSpec(
        kind,
        (
            Text("reference", max_chars=50),
            Day("issued_on"),
            Text("basis", max_chars=200),
            Text("lines", max_chars=2000, hint="service:quantity:fee, space-separated"),
            Money("total"),
        ),
        description="a good faith estimate given to the client before the services it lists (No Surprises Act)",
    )


@dataclass(frozen=True)
class EstimateRecord:
    """A good faith estimate as recorded: (service, quantity, fee for one) lines and their total."""

    reference: str
    issued_on: date
    basis: str
    lines: tuple[tuple[str, int, Decimal], ...]

    @property
    def total(self) -> Decimal:
        return sum((fee * quantity for _, quantity, fee in self.lines), ZERO)

    def as_fact(self) -> JSONObject:
        return {"reference": self.reference, "issued_on": self.issued_on.isoformat(), "basis": self.basis,
                "lines": " ".join(f"{s}:{q}:{f:.2f}" for s, q, f in self.lines), "total": f"{self.total:.2f}"}

    @classmethod
    def from_fact(cls, d: Mapping[str, object]) -> EstimateRecord:
        lines = []
        for part in str(d["lines"]).split():
            service, quantity, fee = part.split(":")
            lines.append((service, int(quantity), cents(fee)))
        return cls(str(d["reference"]), date.fromisoformat(str(d["issued_on"])), str(d["basis"]), tuple(lines))


def due_estimate(
    billing: Billing, kind: str, data: Mapping[str, Any], facts: CaseFacts, *, case_id: str, issued_on: date,
) -> EstimateRecord | None:
    """The estimate recording a fact of ``kind`` with ``data`` asks for (the fees of ``billing``), or None."""
    rule = billing.estimate
    if rule is None or kind != rule.fact:
        return None
    expected = rule.expected(data, facts)
    if not expected:
        return None
    lines = tuple((name, quantity, billing.services[name].fee) for name, quantity in expected)
    number = len(facts.of_kind(rule.kind)) + 1
    reference = f"GFE-{case_id.removeprefix('case-')[:8].upper()}-{number}"
    return EstimateRecord(reference, issued_on, rule.basis(data), lines)


def estimate_view(
    client: Client, billing: Billing, record: EstimateRecord, practice: Practice, clinician_id: str,
    diagnoses: tuple[Diagnosis, ...], expected_from: date | None,
) -> GoodFaithEstimateView:
    """The estimate's document; ``DocumentIncomplete`` naming every gap (the practice's or the clinician's
    details, the client's address)."""
    missing: list[str] = []
    records = billing.records
    if records is None:
        raise DocumentIncomplete(DOCUMENT, ["this workflow names no client records in its billing"])
    if practice.party is None:
        missing.append("the practice's details are not set: add [billing.practice] with name, address, phone, "
                       "tax_id and npi to the settings")
    clinician = practice.clinicians.get(clinician_id) if clinician_id else None
    if clinician is None:
        missing.append(f"clinician {clinician_id!r} is not in the settings: add [billing.clinicians.{clinician_id}] "
                       "with name, credentials and npi" if clinician_id else
                       "no clinician is booked on this case yet: book its first appointment")
    details = client_details(client, records, missing)
    if missing or practice.party is None or clinician is None or details is None:
        raise DocumentIncomplete(DOCUMENT, missing)
    rows = tuple(_row(billing, name, quantity, fee) for name, quantity, fee in record.lines)
    return GoodFaithEstimateView(practice.party, clinician, details, diagnoses, rows, record.total,
                                 record.issued_on, expected_from, record.reference, GFE_DISCLAIMER,
                                 GFE_DISPUTE_NOTICE)


def _row(billing: Billing, name: str, quantity: int, fee: Decimal) -> EstimateLine:
    service = billing.services.get(name)
    description = service.description if service is not None else name.replace("_", " ")
    code = service.code if service is not None and fee > 0 else None
    note = "provided at no charge" if fee == 0 else (
        f"{service.minutes} min; {'billable to insurance, out of network' if service.insurance else 'self-pay'}"
        if service is not None else "")
    return EstimateLine(description, code, quantity, fee, fee * quantity, note)


def estimate_summary(record: EstimateRecord) -> str:
    """The estimate in one line: "GFE-7F3A2B10-1: 13 services, $1,155.00 (KAP plan set: 6 sessions)"."""
    count = sum(quantity for _, quantity, _ in record.lines)
    return f"{record.reference}: {count} services, {money_text(record.total)} ({record.basis})"
