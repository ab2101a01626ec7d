"""A superbill from a case's ledger: the statement a client sends their insurer for out-of-network care.

``superbill_for`` gathers what insurers require from the case's facts and the practice's settings, and
names every gap at once (``DocumentIncomplete``): the practice's details or a clinician's not set, the
client's address not recorded, a line with no diagnosis made on or before its date of service. Only the
lines billed to insurance go on it (a self-pay evaluation does not); each points to the diagnoses made on
or before its date of service, so a superbill never claims a diagnosis the care preceded.

Issuing one records it on the case (``superbill_spec``): which lines, which diagnoses, and the totals as
they stood, so the same document can be made again later (``SuperbillRecord``) whatever was paid since.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from kapflow.domain.billing import (
    ZERO,
    Billing,
    ChargeLine,
    ClientRecords,
    Ledger,
    LedgerSummary,
    cents,
    ledger,
    summary,
)
from kapflow.domain.billing_documents import (
    MAX_DIAGNOSES,
    MAX_POINTERS,
    POINTER_LETTERS,
    ClientDetails,
    Clinician,
    Diagnosis,
    Party,
    SuperbillLine,
    SuperbillView,
)
from kapflow.domain.case import CaseFacts
from kapflow.domain.errors import DocumentIncomplete
from kapflow.domain.facts import Day, FactSpec, Money, Text
from kapflow.domain.payload import JSONObject

DOCUMENT = "superbill"
_AMOUNT = r"-?[0-9]{1,7}\.[0-9]{2}"


def superbill_spec(kind: str) -> FactSpec:
    """The record of a superbill issued: its reference, period, lines, diagnoses and totals as issued."""
    return FactSpec(
        kind,
        (
            Text("reference", max_chars=50),
            Day("first"),
            Day("last"),
            Text("lines", max_chars=2000, hint="charge line ids, space-separated"),
            Text("diagnoses", max_chars=200, hint="ICD-10-CM codes, space-separated"),
            Text("clinician", max_chars=100),
            Money("charged"),
            Text("paid", max_chars=12, pattern=_AMOUNT, hint="an amount such as 165.00"),
            Text("balance", max_chars=12, pattern=_AMOUNT, hint="an amount such as 165.00 or -20.00"),
            Day("issued_on"),
        ),
        description="a superbill issued to the client: the lines and diagnoses it lists, its totals as issued",
    )


@dataclass(frozen=True)
class SuperbillRecord:
    """A superbill as issued (the fact ``superbill_spec`` describes)."""

    reference: str
    first: date
    last: date
    lines: tuple[str, ...]
    diagnoses: tuple[str, ...]
    clinician: str
    charged: Decimal
    paid: Decimal
    issued_on: date

    def as_fact(self) -> JSONObject:
        return {"reference": self.reference, "first": self.first.isoformat(), "last": self.last.isoformat(),
                "lines": " ".join(self.lines), "diagnoses": " ".join(self.diagnoses), "clinician": self.clinician,
                "charged": f"{self.charged:.2f}", "paid": f"{self.paid:.2f}",
                "balance": f"{self.charged - self.paid:.2f}", "issued_on": self.issued_on.isoformat()}

    @classmethod
    def from_fact(cls, d: Mapping[str, object]) -> SuperbillRecord:
        return cls(str(d["reference"]), date.fromisoformat(str(d["first"])), date.fromisoformat(str(d["last"])),
                   tuple(str(d["lines"]).split()), tuple(str(d["diagnoses"]).split()), str(d["clinician"]),
                   cents(str(d["charged"])), cents(str(d["paid"])), date.fromisoformat(str(d["issued_on"])))


@dataclass(frozen=True)
class Practice:
    """Who the practice is on its documents (its settings): itself, and its clinicians by id."""

    party: Party | None
    clinicians: Mapping[str, Clinician]


@dataclass(frozen=True)
class SuperbillRequest:
    """What to put on a superbill: the dates of service it covers, and the diagnoses (None: every one
    made on or before its dates of service)."""

    first: date
    last: date
    diagnoses: Sequence[str] | None = None


@dataclass(frozen=True)
class Client:
    """The client as the intake names them (the workflow's name fields joined)."""

    name: str
    facts: CaseFacts
    intake: str


def superbill_for(
    client: Client, billing: Billing, books: Ledger, request: SuperbillRequest, practice: Practice,
    describe: Callable[[str], str], *, issued_on: date, reference: str,
) -> tuple[SuperbillView, SuperbillRecord]:
    """The superbill of the insurance lines dated in the request's period; ``DocumentIncomplete`` naming
    every gap. ``describe``: an ICD-10-CM code's description (the code set is not the domain's)."""
    missing: list[str] = []
    if request.first > request.last:
        missing.append("the period starts after it ends: give the first date of service, then the last")
    lines = books.between(request.first, request.last, insurance=True)
    if not lines and request.first <= request.last:
        missing.append("no service billed to insurance has a date of service in the period: choose the dates "
                       "of the visits")
    paid = sum((c.paid for c in lines), ZERO)
    return _build(client, billing, lines, request, practice, describe, issued_on, reference, paid, missing)


def reissued(
    client: Client, billing: Billing, books: Ledger, record: SuperbillRecord, practice: Practice,
    describe: Callable[[str], str],
) -> SuperbillView:
    """The superbill ``record`` describes, made again: its lines and diagnoses, its totals as issued."""
    lines = [c for c in books.charges if c.id in record.lines]
    request = SuperbillRequest(record.first, record.last, record.diagnoses)
    view, _ = _build(client, billing, lines, request, practice, describe, record.issued_on, record.reference,
                     record.paid, [])
    return view


def _build(
    client: Client, billing: Billing, lines: Sequence[ChargeLine], request: SuperbillRequest, practice: Practice,
    describe: Callable[[str], str], issued_on: date, reference: str, paid: Decimal, missing: list[str],
) -> tuple[SuperbillView, SuperbillRecord]:
    records = billing.records
    if records is None:
        raise DocumentIncomplete(DOCUMENT, ["this workflow issues no superbills: it names no client records"])
    if practice.party is None:
        missing.append("the practice's details are not set: add [billing.practice] with name, address, phone, "
                       "tax_id and npi to the settings")
    clinician_id, clinician = _clinician(lines, practice, missing)
    details = client_details(client, records, missing)
    diagnoses, pointers = _diagnoses(client.facts, records, lines, request.diagnoses, missing)
    if missing or practice.party is None or clinician is None or details is None:
        raise DocumentIncomplete(DOCUMENT, missing)
    shown = tuple(Diagnosis(code, describe(code)) for code in diagnoses)
    rows = tuple(_row(c, billing.place_of_service, pointers[c.id], diagnoses) for c in lines)
    charged = sum((row.fee for row in rows), ZERO)
    record = SuperbillRecord(reference, request.first, request.last, tuple(c.id for c in lines), diagnoses,
                             clinician_id, charged, paid, issued_on)
    view = SuperbillView(practice.party, clinician, details, shown, rows, charged, paid, charged - paid,
                         (request.first, request.last), issued_on, billing.no_charge_note or "-", reference)
    return view, record


def _clinician(
    lines: Sequence[ChargeLine], practice: Practice, missing: list[str]
) -> tuple[str, Clinician | None]:
    unnamed = [c.id for c in lines if not c.clinician]
    if unnamed:
        missing.append(f"line {', '.join(unnamed)} names no clinician (its visit had no appointment): a superbill "
                       "names the rendering clinician of every line")
    ids = sorted({c.clinician for c in lines if c.clinician})
    if len(ids) > 1:
        missing.append(f"the lines are by more than one clinician ({', '.join(ids)}): issue one superbill per "
                       "clinician, choosing the dates of that clinician's visits")
    if len(ids) != 1:
        return "", None
    found = practice.clinicians.get(ids[0])
    if found is None:
        missing.append(f"clinician {ids[0]!r} is not in the settings: add [billing.clinicians.{ids[0]}] with "
                       "name, credentials and npi")
    return ids[0], found


def client_details(client: Client, records: ClientRecords, missing: list[str]) -> ClientDetails | None:
    """The client as a billing document names them; each thing lacking is added to ``missing``."""
    intake = client.facts.latest(client.intake)
    born = str(intake.data.get(records.birth_date) or "") if intake is not None else ""
    phone = str(intake.data.get(records.phone) or "") if intake is not None else ""
    if not born:
        missing.append("the client's date of birth is not on the intake")
    address = client.facts.latest(records.address)
    if address is None:
        missing.append(f"the client's address is not recorded: record a {records.address} fact")
        return None
    lines = tuple(_filled(template, address.data) for template in records.address_lines)
    if not born or not client.name:
        return None
    return ClientDetails(client.name, date.fromisoformat(born), tuple(line for line in lines if line), phone)


def _filled(template: str, data: Mapping[str, object]) -> str:
    """An address line from its template ("{city}, {state} {postal_code}"), fields not given left out."""
    text = template.format_map({k: str(v) for k, v in data.items() if v is not None} | _Blank())
    return re.sub(r"\s+", " ", text).strip(" ,")


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def diagnoses_made(facts: CaseFacts, records: ClientRecords) -> dict[str, date]:
    """Each ICD-10-CM code diagnosed on the case, in the order first recorded, with the date it was made."""
    made: dict[str, date] = {}
    for fact in facts.of_kind(records.diagnosis):
        made.setdefault(str(fact.data["code"]), date.fromisoformat(str(fact.data[records.diagnosis_date])))
    return made


def _diagnoses(
    facts: CaseFacts, records: ClientRecords, lines: Sequence[ChargeLine], chosen: Sequence[str] | None,
    missing: list[str],
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The diagnoses the superbill lists, in order, and each line's (their codes, made on or before its
    date of service, at most four)."""
    made = diagnoses_made(facts, records)
    last = max((c.date_of_service for c in lines), default=None)
    candidates = list(dict.fromkeys(chosen)) if chosen is not None else list(made)
    # The sentences name a diagnosis by its place among those chosen and a line by its id, never a code or a
    # date: an error body may be logged on its way, and a diagnosis is the client's health information.
    for number, code in enumerate(candidates, start=1):
        if code not in made:
            missing.append(f"diagnosis {number} of those chosen is not recorded on this case: record it with the "
                           "date it was made")
        elif last is not None and made[code] > last:
            missing.append(f"diagnosis {number} of those chosen was made after the last date of service: a "
                           "superbill may only use diagnoses made on or before its dates of service")
    usable = [code for code in candidates if code in made and (last is None or made[code] <= last)]
    pointers: dict[str, tuple[str, ...]] = {}
    for line in lines:
        found = tuple(code for code in usable if made[code] <= line.date_of_service)[:MAX_POINTERS]
        if not found:
            missing.append(f"no diagnosis was made on or before the date of service of {line.id}: record it with "
                           "its date, or leave that date out")
        pointers[line.id] = found
    listed = tuple(code for code in usable if any(code in p for p in pointers.values()))
    if len(listed) > MAX_DIAGNOSES:
        missing.append(f"{len(listed)} diagnoses, but a claim lists at most {MAX_DIAGNOSES}: choose them")
    return listed, pointers


def _row(line: ChargeLine, place: str, codes: tuple[str, ...], listed: tuple[str, ...]) -> SuperbillLine:
    letters = tuple(POINTER_LETTERS[listed.index(code)] for code in codes)
    minutes = f", {line.minutes} min" if line.minutes else ""
    return SuperbillLine(line.date_of_service, place, str(line.code), (), line.units, line.fee - line.written_off,
                         letters, line.description + minutes)


def billing_summary(facts: CaseFacts, billing: Billing) -> LedgerSummary:
    """The case's ledger summary: its balance, and its insurance lines not yet on an issued superbill."""
    billed: set[str] = set()
    if billing.records is not None:
        for issued in facts.of_kind(billing.records.superbill):
            billed.update(str(issued.data["lines"]).split())
    return summary(ledger(facts, billing), billed)
