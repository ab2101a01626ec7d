"""What a superbill and a Good Faith Estimate say, as plain values a renderer lays out (``kapflow.documents``).

A superbill is the statement a client sends their insurer to be reimbursed for out-of-network care; a
Good Faith Estimate is what the No Surprises Act requires a provider to give an uninsured or self-pay
client before care. Both are built by the workflow from its facts and rendered without looking anything
up, so these views carry every word and amount the page shows, already decided.

The checks in ``__post_init__`` catch a view put together wrongly (a diagnosis pointer past the list, a
total that is not the sum of its lines, a float where money goes), never a judgement about the care: they
raise ``ValueError`` with a sentence saying what is wrong. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

GFE_DISCLAIMER = (
    "This Good Faith Estimate shows the costs of items and services that are reasonably expected for your "
    "health care needs for an item or service. The estimate is based on information known at the time the "
    "estimate was created. The Good Faith Estimate does not include any unknown or unexpected costs that may "
    "arise during treatment. You could be charged more if complications or special circumstances occur. "
    "There may be additional items or services recommended as part of your care that must be scheduled or "
    "requested separately and are not included in this Good Faith Estimate. This Good Faith Estimate is not "
    "a contract and does not require you to obtain the items or services from any of the providers or "
    "facilities identified in it."
)
"""The standard disclaimer of a Good Faith Estimate, after CMS's standard form (45 CFR 149.610)."""

GFE_DISPUTE_NOTICE = (
    "If you are billed for more than this Good Faith Estimate, you have the right to dispute the bill. "
    "You may contact the health care provider or facility listed to let them know the billed charges are "
    "higher than the Good Faith Estimate. You can ask them to update the bill to match the Good Faith "
    "Estimate, ask to negotiate the bill, or ask if there is financial assistance available. "
    "If you receive a bill that is at least $400 more than this Good Faith Estimate for any provider or "
    "facility listed, you may also start a dispute resolution process with the U.S. Department of Health "
    "and Human Services (HHS), the patient-provider dispute resolution process. If you choose to use it, you "
    "must start the dispute process within 120 calendar days (about 4 months) of the date on the original "
    "bill. There is a $25 fee to use the dispute process. If the agency reviewing your dispute agrees with "
    "you, you will have to pay the price on this Good Faith Estimate. If the agency disagrees with you and "
    "agrees with the health care provider or facility, you will have to pay the higher amount. Starting a "
    "dispute will not affect the quality of the health care you receive. "
    "To learn more and get a form to start the process, go to www.cms.gov/nosurprises or call the CMS No "
    "Surprises Help Desk at 1-800-985-3059. "
    "Keep a copy of this Good Faith Estimate in a safe place or take pictures of it. You may need it if you "
    "are billed a higher amount."
)
"""The patient-provider dispute resolution notice of a Good Faith Estimate, after CMS's standard form."""

MAX_DIAGNOSES = 12
"""Diagnoses a claim can point to: A to L, as on the CMS-1500 claim form (item 21)."""
MAX_POINTERS = 4
"""Diagnosis pointers one service line carries (CMS-1500 item 24E)."""
MAX_MODIFIERS = 4
"""Modifiers one service line carries (CMS-1500 item 24D)."""
POINTER_LETTERS = "ABCDEFGHIJKL"

_NPI = re.compile(r"[0-9]{10}")
_ICD10 = re.compile(r"[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?")
_CPT = re.compile(r"[0-9]{4}[0-9A-Z]|[A-Z][0-9]{4}")  # CPT (categories I-III) or HCPCS level II
_MODIFIER = re.compile(r"[0-9A-Z]{2}")
_PLACE = re.compile(r"[0-9]{2}")


def _text(owner: str, label: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{owner}: the {label} must be non-empty text, not {value!r}.")


def _lines(owner: str, label: str, value: object) -> None:
    if not isinstance(value, tuple) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{owner}: the {label} must be a non-empty tuple of non-empty lines, not {value!r}.")


def _npi(owner: str, value: object) -> None:
    if not isinstance(value, str) or not _NPI.fullmatch(value):
        raise ValueError(f"{owner}: an NPI is 10 digits, not {value!r}.")


def _date(owner: str, label: str, value: object) -> None:
    if not isinstance(value, date):
        raise ValueError(f"{owner}: the {label} must be a datetime.date, not {value!r}.")


def _money(owner: str, label: str, value: object, *, may_be_negative: bool = False) -> None:
    """A ``Decimal`` amount in whole cents (a float would print rounding noise and sum wrongly)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{owner}: the {label} must be a finite decimal.Decimal, not {value!r}.")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"{owner}: the {label} must be in whole cents, not {value}.")
    if value < 0 and not may_be_negative:
        raise ValueError(f"{owner}: the {label} cannot be negative ({value}).")


def _diagnoses(owner: str, diagnoses: object, *, may_be_empty: bool) -> None:
    if not isinstance(diagnoses, tuple) or not all(isinstance(d, Diagnosis) for d in diagnoses):
        raise ValueError(f"{owner}: the diagnoses must be a tuple of Diagnosis, not {diagnoses!r}.")
    if not diagnoses and not may_be_empty:
        raise ValueError(f"{owner}: a claim needs at least one diagnosis.")
    if len(diagnoses) > MAX_DIAGNOSES:
        raise ValueError(f"{owner}: at most {MAX_DIAGNOSES} diagnoses (A to L) fit a claim, not {len(diagnoses)}.")
    codes = [d.code for d in diagnoses]
    if len(set(codes)) != len(codes):
        raise ValueError(f"{owner}: a diagnosis code is listed twice ({', '.join(codes)}).")


def _of(owner: str, label: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{owner}: the {label} must be a {kind.__name__}, not {value!r}.")


def _sum(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class Party:
    """The practice that bills: its name, postal address, phone, tax ID (EIN) and organizational (type 2) NPI."""

    name: str
    address_lines: tuple[str, ...]
    phone: str
    tax_id: str
    npi: str

    def __post_init__(self) -> None:
        _text("Party", "name", self.name)
        _lines("Party", "address lines", self.address_lines)
        _text("Party", "phone number", self.phone)
        _text("Party", "tax ID", self.tax_id)
        _npi("Party", self.npi)


@dataclass(frozen=True, slots=True)
class Clinician:
    """The rendering clinician: name, credentials (``LCSW``, ``PhD``) and individual (type 1) NPI."""

    name: str
    credentials: str
    npi: str

    def __post_init__(self) -> None:
        _text("Clinician", "name", self.name)
        _text("Clinician", "list of credentials", self.credentials)
        _npi("Clinician", self.npi)


@dataclass(frozen=True, slots=True)
class ClientDetails:
    """The client (the patient): name, date of birth, postal address and phone (``""`` when not known)."""

    name: str
    date_of_birth: date
    address_lines: tuple[str, ...]
    phone: str

    def __post_init__(self) -> None:
        _text("ClientDetails", "name", self.name)
        _date("ClientDetails", "date of birth", self.date_of_birth)
        _lines("ClientDetails", "address lines", self.address_lines)
        _of("ClientDetails", "phone number (empty when not known)", self.phone, str)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """An ICD-10-CM diagnosis (``F33.1``) and its description."""

    code: str
    description: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _ICD10.fullmatch(self.code):
            raise ValueError(f"Diagnosis: {self.code!r} is not an ICD-10-CM code such as F33.1.")
        _text("Diagnosis", "description", self.description)


@dataclass(frozen=True, slots=True)
class SuperbillLine:
    """One billed service: its date, place of service (``11``: office), CPT code and modifiers, units, the
    line's charge (``fee``: all its units together, as on a claim), the letters of the diagnoses it treats
    and what it was (``Integration psychotherapy, 60 min``)."""

    date_of_service: date
    place_of_service: str
    code: str
    modifiers: tuple[str, ...]
    units: int
    fee: Decimal
    diagnosis_pointers: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        owner = "SuperbillLine"
        _date(owner, "date of service", self.date_of_service)
        if not isinstance(self.place_of_service, str) or not _PLACE.fullmatch(self.place_of_service):
            raise ValueError(f"{owner}: a place of service is a two-digit code such as '11', not "
                             f"{self.place_of_service!r}.")
        if not isinstance(self.code, str) or not _CPT.fullmatch(self.code):
            raise ValueError(f"{owner}: {self.code!r} is not a CPT or HCPCS code such as 90837.")
        if (not isinstance(self.modifiers, tuple) or len(self.modifiers) > MAX_MODIFIERS
                or not all(isinstance(m, str) and _MODIFIER.fullmatch(m) for m in self.modifiers)):
            raise ValueError(f"{owner}: modifiers are a tuple of at most {MAX_MODIFIERS} two-character codes "
                             f"such as ('95',), not {self.modifiers!r}.")
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
            raise ValueError(f"{owner}: the units must be a whole number of at least 1, not {self.units!r}.")
        _money(owner, "fee", self.fee)
        pointers = self.diagnosis_pointers
        if (not isinstance(pointers, tuple) or not 1 <= len(pointers) <= MAX_POINTERS
                or not all(isinstance(p, str) and len(p) == 1 and p in POINTER_LETTERS for p in pointers)):
            raise ValueError(f"{owner}: the diagnosis pointers are a tuple of 1 to {MAX_POINTERS} letters A to L, "
                             f"not {pointers!r}.")
        if len(set(pointers)) != len(pointers):
            raise ValueError(f"{owner}: a diagnosis pointer is repeated in {pointers!r}.")
        _text(owner, "description", self.description)


@dataclass(frozen=True, slots=True)
class SuperbillView:
    """A superbill: who billed, who treated, whom, for what (diagnoses), which services, the totals, the
    period it covers, when it was issued, a statement in the caller's words and the document's reference.

    ``charged`` is the sum of the lines' fees, ``balance`` is ``charged - paid`` (negative: a credit).
    """

    practice: Party
    clinician: Clinician
    client: ClientDetails
    diagnoses: tuple[Diagnosis, ...]
    lines: tuple[SuperbillLine, ...]
    charged: Decimal
    paid: Decimal
    balance: Decimal
    period: tuple[date, date]
    issued_on: date
    statement: str
    reference: str

    def __post_init__(self) -> None:
        owner = "SuperbillView"
        _of(owner, "practice", self.practice, Party)
        _of(owner, "clinician", self.clinician, Clinician)
        _of(owner, "client", self.client, ClientDetails)
        _diagnoses(owner, self.diagnoses, may_be_empty=False)
        if not isinstance(self.lines, tuple) or not all(isinstance(line, SuperbillLine) for line in self.lines):
            raise ValueError(f"{owner}: the lines must be a tuple of SuperbillLine, not {self.lines!r}.")
        if not self.lines:
            raise ValueError(f"{owner}: a superbill needs at least one service line.")
        _money(owner, "amount charged", self.charged)
        _money(owner, "amount paid", self.paid)
        _money(owner, "balance", self.balance, may_be_negative=True)
        _date(owner, "issue date", self.issued_on)
        if (not isinstance(self.period, tuple) or len(self.period) != 2
                or not all(isinstance(d, date) for d in self.period)):
            raise ValueError(f"{owner}: the period must be a (first, last) tuple of two dates, not {self.period!r}.")
        first, last = self.period
        if first > last:
            raise ValueError(f"{owner}: the period starts ({first}) after it ends ({last}).")
        for number, line in enumerate(self.lines, start=1):
            if not first <= line.date_of_service <= last:
                raise ValueError(f"{owner}: line {number}'s date of service {line.date_of_service} is outside the "
                                 f"period {first} to {last}.")
            for pointer in line.diagnosis_pointers:
                if POINTER_LETTERS.index(pointer) >= len(self.diagnoses):
                    raise ValueError(f"{owner}: line {number} points to diagnosis {pointer}, but only "
                                     f"{len(self.diagnoses)} diagnoses are listed (A to "
                                     f"{POINTER_LETTERS[len(self.diagnoses) - 1]}).")
        if self.client.date_of_birth > first:
            raise ValueError(f"{owner}: the client's date of birth {self.client.date_of_birth} is after the "
                             f"first date of service {first}.")
        if last > self.issued_on:
            raise ValueError(f"{owner}: the superbill is issued on {self.issued_on}, before its last date of "
                             f"service {last}.")
        fees = _sum(line.fee for line in self.lines)
        if self.charged != fees:
            raise ValueError(f"{owner}: the amount charged {self.charged} is not the sum of the lines' fees {fees}.")
        if self.balance != self.charged - self.paid:
            raise ValueError(f"{owner}: the balance {self.balance} is not the amount charged {self.charged} less "
                             f"the amount paid {self.paid}.")
        _text(owner, "statement", self.statement)
        _text(owner, "document reference", self.reference)


@dataclass(frozen=True, slots=True)
class EstimateLine:
    """One expected item or service: what, its code (``None`` when it has none, e.g. given at no cost), how
    many, the fee for one, the line's total (``quantity * unit_fee``) and a note (``""`` for none)."""

    service: str
    code: str | None
    quantity: int
    unit_fee: Decimal
    total: Decimal
    note: str

    def __post_init__(self) -> None:
        owner = "EstimateLine"
        _text(owner, "service", self.service)
        if self.code is not None and (not isinstance(self.code, str) or not _CPT.fullmatch(self.code)):
            raise ValueError(f"{owner}: {self.code!r} is not a CPT or HCPCS code such as 90837 (use None for "
                             "a service without one).")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 1:
            raise ValueError(f"{owner}: the quantity must be a whole number of at least 1, not {self.quantity!r}.")
        _money(owner, "fee per unit", self.unit_fee)
        _money(owner, "line total", self.total)
        if self.total != self.unit_fee * self.quantity:
            raise ValueError(f"{owner}: the total {self.total} of {self.service!r} is not its quantity "
                             f"{self.quantity} times its fee per unit {self.unit_fee}.")
        _of(owner, "note (empty for none)", self.note, str)


@dataclass(frozen=True, slots=True)
class GoodFaithEstimateView:
    """A Good Faith Estimate: the provider, the clinician, the client, the diagnoses (may be none yet), the
    expected items and services with their total, when it was issued, when care is expected to start
    (``None``: not yet scheduled), its reference and the disclaimer and dispute notice it must carry
    (``GFE_DISCLAIMER``, ``GFE_DISPUTE_NOTICE``)."""

    practice: Party
    clinician: Clinician
    client: ClientDetails
    diagnoses: tuple[Diagnosis, ...]
    lines: tuple[EstimateLine, ...]
    total: Decimal
    issued_on: date
    expected_from: date | None
    reference: str
    disclaimer: str
    dispute_notice: str

    def __post_init__(self) -> None:
        owner = "GoodFaithEstimateView"
        _of(owner, "practice", self.practice, Party)
        _of(owner, "clinician", self.clinician, Clinician)
        _of(owner, "client", self.client, ClientDetails)
        _diagnoses(owner, self.diagnoses, may_be_empty=True)
        if not isinstance(self.lines, tuple) or not all(isinstance(line, EstimateLine) for line in self.lines):
            raise ValueError(f"{owner}: the lines must be a tuple of EstimateLine, not {self.lines!r}.")
        if not self.lines:
            raise ValueError(f"{owner}: an estimate needs at least one item or service.")
        _money(owner, "total", self.total)
        totals = _sum(line.total for line in self.lines)
        if self.total != totals:
            raise ValueError(f"{owner}: the total {self.total} is not the sum of the lines' totals {totals}.")
        _date(owner, "issue date", self.issued_on)
        if self.expected_from is not None:
            _date(owner, "expected start of care", self.expected_from)
        if self.client.date_of_birth > self.issued_on:
            raise ValueError(f"{owner}: the client's date of birth {self.client.date_of_birth} is after the "
                             f"issue date {self.issued_on}.")
        _text(owner, "document reference", self.reference)
        _text(owner, "disclaimer", self.disclaimer)
        _text(owner, "dispute notice", self.dispute_notice)
