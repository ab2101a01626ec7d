"""Billing as a workflow declares it: what each visit costs, the charge lines it posts, and the case's ledger.

A workflow's ``Billing`` names its services (a fee, a CPT code or none, whether it is billed to
insurance) and, per appointment kind, the services a visit of that kind is made of: a KAP session is
two, a ketamine portion at no cost (no charge line) and an integration psychotherapy. Fees are data of
the workflow's version: a new fee comes with a new version, and a charge already posted keeps the fee
it was posted with, since it is a fact on the case (``charge``), audited like any other.

Charges are posted by the engine in the command that completes a visit, or marks its appointment
attended (``due_charges``); a no-show or a late cancellation posts the practice's fee when its settings
name one (``FeePolicy``). Each line is keyed by its visit and service, so a visit completed twice, or
completed and marked attended, is charged once. Corrections are adjustments, never edits: a void, a
write-off, a refund, each with its reason. The ledger (``ledger``) is a fold of the case's charges,
payments and adjustments in the order they were recorded; money is ``Decimal``, in whole cents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from kapflow.domain.appointments import Appointment, AppointmentBook, AppointmentFacts, appointments
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, FactEntry, Refold, StoredView, unreadable_snapshot
from kapflow.domain.entries import to_iso
from kapflow.domain.errors import InvalidInput, StorageError
from kapflow.domain.facts import Boolean, Choice, Day, FactSpec, Integer, Money, Text
from kapflow.domain.payload import JSONObject, canonical_json

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
ADJUSTMENTS = ("void", "write_off", "refund")
AMOUNT, PURPOSE = "amount", "purpose"  # the fields every payment fact has (the engine's payment shape)
VISIT_SPAN = timedelta(hours=16)  # a visit completed this long from its appointment's start was that appointment
BILLED_MINUTES = "billed_minutes"  # a visit's completion (or attendance) may say how long the billed service lasted


def cents(value: Decimal | str) -> Decimal:
    """``value`` as an exact amount of dollars and cents (text from a fact, or a Decimal)."""
    amount = Decimal(value) if isinstance(value, str) else value
    if amount != amount.quantize(CENT):
        raise ValueError(f"{value} is not a whole number of cents")
    return amount.quantize(CENT)


def money_text(amount: Decimal) -> str:
    """"$1,485.00"; "-$20.00" for a credit."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


@dataclass(frozen=True)
class TimeBand:
    """A time-coded service lasting at least ``minutes`` is billed as ``code`` at ``fee``."""

    minutes: int
    code: str
    fee: Decimal


@dataclass(frozen=True)
class Service:
    """One billable (or free) part of a visit, as the workflow's fee schedule lists it.

    ``fee`` 0: provided at no charge, no charge line is posted. ``insurance``: billed to the client's
    insurer (it goes on a superbill); otherwise self-pay. ``time_bands``: coded by the minutes the
    service lasted (psychotherapy's time rule), ascending; shorter than the first is not billable.
    ``purpose``: the payment purpose that pays this service first (an evaluation fee pays the evaluation).
    """

    name: str
    description: str
    fee: Decimal
    code: str | None = None
    minutes: int = 60
    insurance: bool = False
    time_bands: tuple[TimeBand, ...] = ()
    purpose: str = ""

    def __post_init__(self) -> None:
        if self.fee < 0 or self.fee != self.fee.quantize(CENT):
            raise ValueError(f"service {self.name}: a fee is zero or more, in whole cents")
        if [b.minutes for b in self.time_bands] != sorted({b.minutes for b in self.time_bands}):
            raise ValueError(f"service {self.name}: time bands ascend by their minutes, each once")

    def coded(self, minutes: int) -> tuple[str | None, Decimal] | None:
        """The code and fee of this service lasting ``minutes``; None when it is not billable that short."""
        if not self.time_bands:
            return self.code, self.fee
        band = next((b for b in reversed(self.time_bands) if minutes >= b.minutes), None)
        return (band.code, band.fee) if band is not None else None


@dataclass(frozen=True)
class VisitBilling:
    """A visit of appointment kind ``kind`` is made of ``services``; it is complete when one of
    ``completes`` fires, or when its appointment is marked attended."""

    kind: str
    services: tuple[str, ...]
    completes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FactNames:
    """The fact kinds billing reads and the engine posts, as the workflow names them."""

    charge: str
    payment: str
    adjustment: str

    @property
    def ledger(self) -> tuple[str, str, str]:
        """The kinds a ledger is folded from: charges, payments, adjustments."""
        return (self.charge, self.payment, self.adjustment)


@dataclass(frozen=True)
class ClientRecords:
    """Where a superbill finds the client and the care, as the workflow names them: the intake's birth date
    and phone fields; the address fact and its lines as templates of its fields ("{city}, {state} {zip}"); the
    diagnosis fact with its date field (its code is ``code``); the fact recording each superbill issued."""

    birth_date: str
    phone: str
    address: str
    address_lines: tuple[str, ...]
    diagnosis: str
    diagnosis_date: str
    superbill: str


Expected = Callable[[Mapping[str, Any], CaseFacts], tuple[tuple[str, int], ...]]
"""What a plan fact leads to expect: (service of the fee schedule, quantity) pairs; none, no estimate."""


@dataclass(frozen=True)
class EstimateRule:
    """Recording a fact of kind ``fact`` records an estimate (a fact of kind ``kind``) of what it leads to
    expect; ``basis`` says in words what the estimate is for (from the plan fact's data)."""

    fact: str
    kind: str
    expected: Expected
    basis: Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Billing:
    """A workflow's fee schedule and the visits it bills (see the module's docstring)."""

    services: Mapping[str, Service]
    visits: tuple[VisitBilling, ...]
    facts: FactNames
    place_of_service: str = "11"  # office (CMS place of service codes)
    no_charge_note: str = ""  # what a superbill says of the services provided at no charge
    records: ClientRecords | None = None  # None: this workflow issues no superbills
    clerk: str | None = None  # the role whose work list shows visits not yet billed and balances due
    issuers: frozenset[str] = frozenset()  # the roles that issue superbills (nobody records one by hand)
    estimate: EstimateRule | None = None  # the plan fact that records a good faith estimate (kapflow.domain.estimate)
    summary_kinds: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))
        # Facts that change billing's work list (``kapflow.domain.superbill.billing_summary``): read on every
        # recorded fact, so kept rather than built each time.
        issued = (self.records.superbill,) if self.records is not None else ()
        object.__setattr__(self, "summary_kinds", frozenset((*self.facts.ledger, *issued)))
        unknown = sorted({s for v in self.visits for s in v.services} - set(self.services))
        if unknown:
            raise ValueError(f"visits name services the fee schedule lacks: {', '.join(unknown)}")

    def visit(self, kind: str) -> VisitBilling | None:
        return next((v for v in self.visits if v.kind == kind), None)

    def completing(self, trigger: str) -> VisitBilling | None:
        return next((v for v in self.visits if trigger in v.completes), None)

    def service_of(self, name: str) -> Service | None:
        return self.services.get(name)


@dataclass(frozen=True)
class FeePolicy:
    """The practice's own fees for a missed visit (its settings, not the workflow's): None posts nothing."""

    no_show_fee: Decimal | None = None
    late_cancel_fee: Decimal | None = None
    late_cancel_hours: int = 24


NO_SHOW, LATE_CANCEL = "no_show_fee", "late_cancel_fee"
_POLICY_LINES = {NO_SHOW: "Missed appointment (no-show) fee", LATE_CANCEL: "Late cancellation fee"}


def charge_spec(kind: str) -> FactSpec:
    """The charge line the engine posts (nobody records one by hand): its visit, service, code and fee."""
    return FactSpec(
        kind,
        (
            Text("visit", max_chars=50),
            Text("service", max_chars=100),
            Text("description", max_chars=200),
            Text("code", max_chars=10, required=False),
            Text("modifiers", max_chars=20, required=False),
            Integer("units", low=1, high=99),
            Money("fee"),
            Boolean("insurance"),
            Day("date_of_service"),
            Integer("minutes", low=1, high=1440, required=False),
            Text("clinician", max_chars=100, required=False),
        ),
        description="a charge line posted by the engine when a visit is completed",
    )


def _adjustment_shape(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if d["action"] in ("void", "write_off") and not d.get("charge"):
        return ("charge", f"is required to {str(d['action']).replace('_', ' ')}: name the charge line, e.g. c2")
    if d["action"] in ("write_off", "refund") and d.get(AMOUNT) is None:
        return (AMOUNT, f"is required for a {str(d['action']).replace('_', '-')}")
    if d["action"] == "void" and d.get(AMOUNT) is not None:
        return (AMOUNT, "is not given for a void: it voids the whole charge")
    return None


def adjustment_spec(kind: str) -> FactSpec:
    """A correction of the ledger: void a charge, write part of it off, or refund a credit; with a reason."""
    return FactSpec(
        kind,
        (
            Choice("action", ADJUSTMENTS),
            Text("charge", max_chars=20, required=False),
            Money(AMOUNT, required=False),
            Text("reason", max_chars=500),
        ),
        (_adjustment_shape,),
        "a ledger correction: void a charge, write off part of one, or refund a credit, with the reason",
    )


# ------------------------------------------------------------------ posting charges


def check_billed_minutes(data: Mapping[str, Any]) -> None:
    """``billed_minutes`` on a visit's completion, when given, is a whole number of minutes (else nothing is
    written: ``InvalidInput``)."""
    value = data.get(BILLED_MINUTES)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 480:
        raise InvalidInput(f"{BILLED_MINUTES}: must be a whole number of minutes from 1 to 480, how long the "
                           "billed service lasted", field=BILLED_MINUTES)


@dataclass(frozen=True)
class Completion:
    """What the command did that may complete a visit: the trigger it fired (or None), its data."""

    trigger: str | None
    data: Mapping[str, Any]
    sequence: int  # the case's event count before the command: names a visit with no appointment


def due_charges(
    billing: Billing, carriers: AppointmentFacts | None, case_id: str, before: CaseFacts, after: CaseFacts,
    done: Completion, now: datetime, cal: PracticeCalendar, policy: FeePolicy,
) -> list[JSONObject]:
    """The charge lines this command owes, not posted before (each keyed by its visit and service)."""
    wanted: list[JSONObject] = []
    was = appointments(case_id, before, carriers) if carriers is not None else {}
    now_on = appointments(case_id, after, carriers) if carriers is not None else {}
    # A command that recorded no booking or change has the very view of the case before it (kept, not folded):
    # no appointment of a year of them can have been attended or missed by it.
    for appt in now_on.changed_since(was) if isinstance(now_on, AppointmentBook) and now_on is not was else ():
        previous = was.get(appt.id)
        if appt.status == "attended" and (previous is None or previous.status != "attended"):
            wanted += _visit_lines(billing, appt.kind, appt.id, appt, done.data, now, cal)
        elif appt.status in ("no_show", "cancelled") and previous is not None and previous.active:
            wanted += _missed_lines(appt, done, now, cal, policy)
    visit = billing.completing(done.trigger) if done.trigger is not None else None
    if visit is not None:
        completed = _visit_appointment(now_on, visit.kind, now)
        key = completed.id if completed is not None else f"m{done.sequence}"
        wanted += _visit_lines(billing, visit.kind, key, completed, done.data, now, cal)
    if not wanted:
        return []
    # The lines posted, from the ledger (kept with the projection and stepped, which posting these will need
    # next), not from every charge fact parsed again.
    posted = ledger(after, billing).posted()
    fresh: list[JSONObject] = []
    for line in wanted:
        line_key = (str(line["visit"]), str(line["service"]))
        if line_key not in posted:
            posted.add(line_key)
            fresh.append(line)
    return fresh


def _visit_appointment(found: Mapping[str, Appointment], kind: str, now: datetime) -> Appointment | None:
    """The appointment a visit of ``kind`` completed now was: the one (booked or attended) starting nearest
    to now within ``VISIT_SPAN`` of it, or None: a visit nobody booked, charged as a visit of its own. Never
    an earlier visit's, long past, which was charged when it was completed."""
    near = [a for a in _of_kind(found, kind, _VISITED) if abs(a.starts_at - now) <= VISIT_SPAN]
    return min(near, key=lambda a: abs(a.starts_at - now), default=None)


_VISITED = frozenset(("booked", "attended"))


def _of_kind(found: Mapping[str, Appointment], kind: str, statuses: frozenset[str]) -> list[Appointment]:
    if isinstance(found, AppointmentBook):
        return found.select(statuses, kind)
    return [a for a in found.values() if a.kind == kind and a.status in statuses]


def _visit_lines(
    billing: Billing, kind: str, key: str, appt: Appointment | None, data: Mapping[str, Any], now: datetime,
    cal: PracticeCalendar,
) -> list[JSONObject]:
    visit = billing.visit(kind)
    if visit is None:
        return []
    day = cal.local_date(appt.starts_at if appt is not None else now)
    recorded = data.get(BILLED_MINUTES)
    lines: list[JSONObject] = []
    for name in visit.services:
        service = billing.services[name]
        minutes = int(recorded) if isinstance(recorded, int) and service.time_bands else service.minutes
        coded = service.coded(minutes)
        if coded is None or coded[1] <= 0:  # no cost (the ketamine portion), or too short to bill
            continue
        code, fee = coded
        lines.append(_line(key, name, service.description, code, fee, service.insurance, day, minutes,
                           appt.clinician if appt is not None else ""))
    return lines


def _missed_lines(
    appt: Appointment, done: Completion, now: datetime, cal: PracticeCalendar, policy: FeePolicy
) -> list[JSONObject]:
    """The practice's no-show or late-cancellation fee, if its settings name one. A cancellation counts as
    late only when recorded by hand (not the engine's, as a case closes) within the policy's hours."""
    if appt.status == "no_show" and policy.no_show_fee:
        name, fee = NO_SHOW, policy.no_show_fee
    elif (appt.status == "cancelled" and policy.late_cancel_fee and done.trigger is None
          and (appt.starts_at - now).total_seconds() < policy.late_cancel_hours * 3600):
        name, fee = LATE_CANCEL, policy.late_cancel_fee
    else:
        return []
    return [_line(appt.id, name, _POLICY_LINES[name], None, fee, False, cal.local_date(appt.starts_at), None,
                  appt.clinician)]


def _line(
    visit: str, service: str, description: str, code: str | None, fee: Decimal, insurance: bool, day: date,
    minutes: int | None, clinician: str,
) -> JSONObject:
    line: dict[str, Any] = {"visit": visit, "service": service, "description": description, "units": 1,
                            "fee": f"{fee:.2f}", "insurance": insurance, "date_of_service": day.isoformat()}
    if code:
        line["code"] = code
    if minutes is not None:
        line["minutes"] = minutes
    if clinician:
        line["clinician"] = clinician
    return line


# ------------------------------------------------------------------ the ledger


@dataclass
class ChargeLine:
    """A charge as the ledger holds it now: what was posted, what was paid and adjusted on it."""

    id: str  # c1, c2, ... in posting order
    at: datetime
    visit: str
    service: str
    description: str
    code: str | None
    units: int
    fee: Decimal
    insurance: bool
    date_of_service: date
    minutes: int | None
    clinician: str
    paid: Decimal = ZERO
    written_off: Decimal = ZERO
    voided: bool = False

    @property
    def open(self) -> Decimal:
        return ZERO if self.voided else self.fee - self.paid - self.written_off


@dataclass(frozen=True)
class Entry:
    """One line of the ledger's statement: a charge, a payment or an adjustment, and the balance after it."""

    at: datetime
    kind: str  # charge | payment | void | write_off | refund
    ref: str  # the charge line's id, or the payment's purpose
    description: str
    amount: Decimal  # its effect on the balance: + owed, - paid or adjusted
    balance: Decimal


class Ledger:
    """A case's charges, payments and adjustments, and what is owed (negative: a credit).

    Its statement (``entries``) and the lines a store's snapshot held settled (``ChargeRow``) are decoded when
    something reads them: a command posts charges (``posted``) and keeps billing's work list (``summary``) from the
    open lines and the totals, and only the pages that show a year of lines and statement read them."""

    __slots__ = ("_charges", "_entries", "_lines", "_refold", "_statement", "adjusted", "charged", "credit", "paid")

    def __init__(self, lines: tuple[ChargeLine | ChargeRow, ...], statement: _Statement, charged: Decimal,
                 paid: Decimal, adjusted: Decimal, credit: Decimal, refold: Refold[Ledger] | None = None) -> None:
        self._lines = lines
        self._statement = statement
        self.charged = charged
        self.paid = paid  # payments less refunds
        self.adjusted = adjusted  # voids and write-offs
        self.credit = credit  # paid and not applied to a charge (refundable)
        self._refold = refold  # where a part a snapshot held that cannot be read is read from (``ledger``)
        self._charges: tuple[ChargeLine, ...] | None = None
        self._entries: tuple[Entry, ...] | None = None

    @property
    def charges(self) -> tuple[ChargeLine, ...]:
        """Every charge line, in posting order."""
        if self._charges is None:
            try:
                self._charges = tuple(_read_line(c) for c in self._lines)
            except StorageError:
                self._charges = self._refolded().charges
        return self._charges

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The statement: every charge, payment and adjustment in order, with the balance after each."""
        if self._entries is None:
            try:
                self._entries = self._statement.decoded()
            except (ValueError, TypeError, ArithmeticError):
                self._entries = self._refolded().entries
        return self._entries

    def _refolded(self) -> Ledger:
        """The ledger as the facts make it: what a snapshot edited by hand is read as (``kapflow audit verify``
        names it)."""
        if self._refold is None:
            raise unreadable_snapshot("a case's ledger")
        return self._refold()

    def posted(self) -> set[tuple[str, str]]:
        """The (visit, service) of every charge line: a visit's line is posted once."""
        return {(c.visit, c.service) if isinstance(c, ChargeLine) else (str(c[2]), str(c[3])) for c in self._lines}

    def __eq__(self, other: object) -> bool:
        """Ledgers are equal when their lines, statements and totals are (however each was read)."""
        if not isinstance(other, Ledger):
            return NotImplemented
        return self._compared() == other._compared()

    __hash__ = None  # type: ignore[assignment]  # equal by value, and its lines change as it is folded

    def __repr__(self) -> str:
        return f"Ledger(charges={self.charges!r}, balance={self.balance}, credit={self.credit})"

    def _compared(self) -> tuple[object, ...]:
        return (self.charges, self.entries, self.charged, self.paid, self.adjusted, self.credit)

    @property
    def balance(self) -> Decimal:
        return self.charged - self.adjusted - self.paid

    def charge(self, line_id: str) -> ChargeLine | None:
        found = next((c for c in self._lines if _line_id(c) == line_id), None)
        return None if found is None else _read_line(found)

    def between(self, first: date, last: date, *, insurance: bool | None = None) -> list[ChargeLine]:
        """The charges (not voided) with a date of service in [first, last], of one kind if asked."""
        return [c for c in self.charges if not c.voided and first <= c.date_of_service <= last
                and (insurance is None or c.insurance == insurance)]


class _Statement(NamedTuple):
    """A ledger's statement as its fold holds it: the entries a snapshot held, as their canonical JSON text (a
    list of rows, ``_entry_row``; "" for none), and the entries folded since."""

    stored: str
    since: tuple[Entry, ...]

    def decoded(self) -> tuple[Entry, ...]:
        earlier = tuple(_entry_from(row) for row in json.loads(self.stored)) if self.stored else ()
        return (*earlier, *self.since)

    def text(self) -> str:
        """The whole statement as one canonical JSON list of rows: the stored text extended by the rows since
        (a list's canonical JSON is its rows' joined by commas, so the text is the same as encoding them all)."""
        rows = ",".join(canonical_json(_entry_row(e)) for e in self.since)
        if not self.stored:
            return f"[{rows}]"
        return self.stored if not rows else f"{self.stored[:-1]},{rows}]"


def _entry_row(e: Entry) -> list[str]:
    return [to_iso(e.at), e.kind, e.ref, e.description, str(e.amount), str(e.balance)]


def _entry_from(row: list[object]) -> Entry:
    at, kind, ref, text, amount, balance = row
    return Entry(_instant(at), str(kind), str(ref), str(text), Decimal(str(amount)), Decimal(str(balance)))


ChargeRow = tuple[Any, ...]
"""A charge line as the store's snapshot keeps it (``_charge_row``): a fold read from a snapshot holds the lines
settled then so, and decodes one when something reads it (``_read_line``). A tuple: of values only, the cycle
collector stops visiting it."""


def _line_id(line: ChargeLine | ChargeRow) -> str:
    return line.id if isinstance(line, ChargeLine) else str(line[0])


def _charge_row(c: ChargeLine) -> ChargeRow:
    return (c.id, to_iso(c.at), c.visit, c.service, c.description, c.code, c.units, str(c.fee), c.insurance,
            c.date_of_service.isoformat(), c.minutes, c.clinician, str(c.paid), str(c.written_off), c.voided)


def _read_line(line: ChargeLine | ChargeRow) -> ChargeLine:
    """The line a snapshot's row holds (its shape checked as it was read: ``_check_row``); ``StorageError`` when its
    values cannot be read (a hand's edit)."""
    if isinstance(line, ChargeLine):
        return line
    i, at, visit, service, text, code, units, fee, insurance, day, minutes, clinician, paid, off, voided = line
    try:
        return ChargeLine(str(i), _instant(at), str(visit), str(service), str(text), _text_or_none(code),
                          _integer(units), Decimal(str(fee)), _flag(insurance), date.fromisoformat(str(day)),
                          None if minutes is None else _integer(minutes), str(clinician), Decimal(str(paid)),
                          Decimal(str(off)), _flag(voided))
    except (ValueError, TypeError, ArithmeticError):
        raise unreadable_snapshot(f"a case's ledger (its charge line {i})") from None


def _check_row(row: object) -> ChargeRow:
    """What a snapshot's charge row is checked for as it is read (the rest, when something reads the line)."""
    if not (isinstance(row, list) and len(row) == 15 and isinstance(row[0], str) and isinstance(row[2], str)
            and isinstance(row[3], str) and type(row[8]) is bool and isinstance(row[9], str)
            and type(row[14]) is bool):
        raise ValueError("not a charge line as the store keeps it")
    return tuple(row)


class _Fold:
    """The ledger's fold, one fact at a time (see ``ledger``).

    A fold kept with a projection is never changed again: the next fact is folded into a ``copy``.
    """

    def __init__(self, billing: Billing) -> None:
        self.billing = billing
        # Lines posted, in order; those before ``_settled`` may be a snapshot's rows, read when something asks.
        self.charges: list[ChargeLine | ChargeRow] = []
        self.entries: list[Entry] = []  # the statement's entries folded here, after those of ``stored_entries``
        self.stored_entries = ""  # the statement's entries a snapshot held, undecoded (``_Statement``)
        # Where what a store's snapshot holds of it undecoded (its rows, its statement) is read from if it cannot be.
        self.refold: Refold[Ledger] | None = None
        self.credit = ZERO
        self.charged = self.paid = self.adjusted = ZERO
        self._settled = 0  # the lines before this index have nothing open
        self._books: Ledger | None = None

    def take(self, fact: FactEntry) -> None:
        names = self.billing.facts
        if fact.kind == names.charge:
            self.charge(fact.at, fact.data)
        elif fact.kind == names.payment:
            self.payment(fact.at, fact.data)
        else:
            self.adjustment(fact.at, fact.data)

    def then(self, fact: FactEntry) -> _Fold:
        """The fold after ``fact``, this one left as it is."""
        after = self.copy()
        after.take(fact)
        return after

    def copy(self) -> _Fold:
        """A fold to go on from. The lines a fact can change in place, those still open (from ``_settled``
        on), are copied; settled ones are shared (an adjustment copies the line it changes)."""
        after = _Fold(self.billing)
        after.charges = [*self.charges[:self._settled], *(copy(line) for line in self.open_lines())]
        after.entries, after.stored_entries = list(self.entries), self.stored_entries
        after.refold = self.refold and self.refold.copy()
        after.credit, after.charged, after.paid, after.adjusted = self.credit, self.charged, self.paid, self.adjusted
        after._settled = self._settled
        return after

    def books(self) -> Ledger:
        if self._books is None:
            self._books = Ledger(tuple(self.charges), self.statement(), self.charged, self.paid, self.adjusted,
                                 self.credit, self.refold)
        return self._books

    def open_lines(self) -> list[ChargeLine]:
        """The lines from ``_settled`` on: decoded, since a snapshot's rows are only of lines settled before it."""
        return cast(list[ChargeLine], self.charges[self._settled:])

    def statement(self) -> _Statement:
        return _Statement(self.stored_entries, tuple(self.entries))

    @property
    def balance(self) -> Decimal:
        return self.charged - self.adjusted - self.paid

    def note(self, at: datetime, kind: str, ref: str, description: str, amount: Decimal) -> None:
        self.entries.append(Entry(at, kind, ref, description, amount, self.balance))

    def charge(self, at: datetime, d: Mapping[str, Any]) -> None:
        line = ChargeLine(
            f"c{len(self.charges) + 1}", at, str(d["visit"]), str(d["service"]), str(d["description"]),
            str(d["code"]) if d.get("code") else None, int(d["units"]), cents(str(d["fee"])), bool(d["insurance"]),
            date.fromisoformat(str(d["date_of_service"])), int(d["minutes"]) if d.get("minutes") else None,
            str(d.get("clinician") or ""),
        )
        self.charges.append(line)
        self.charged += line.fee
        self.note(at, "charge", line.id, line.description + (f" ({line.code})" if line.code else ""), line.fee)
        self.apply_credit("")

    def payment(self, at: datetime, d: Mapping[str, Any]) -> None:
        amount = cents(str(d[AMOUNT]))
        self.paid += amount
        self.credit += amount
        purpose = str(d.get(PURPOSE) or "")
        self.note(at, "payment", purpose, f"payment ({purpose.replace('_', ' ')})" if purpose else "payment",
                  -amount)
        self.apply_credit(purpose)

    def adjustment(self, at: datetime, d: Mapping[str, Any]) -> None:
        action, reason = str(d["action"]), str(d["reason"])
        at_index = next((n for n, c in enumerate(self.charges) if _line_id(c) == d.get("charge")), None)
        line = None
        if at_index is not None:  # copied before it changes: a settled line may be shared with a kept fold
            line = copy(_read_line(self.charges[at_index]))
            self.charges[at_index] = line
        if action == "refund":
            amount = cents(str(d[AMOUNT]))
            self.credit -= amount
            self.paid -= amount
            self.note(at, action, "", f"refund: {reason}", amount)
        elif line is not None and action == "void":
            self.credit += line.paid  # what was paid on it is a credit again
            voided = line.fee - line.written_off
            self.adjusted += voided
            line.paid, line.voided = ZERO, True
            self.note(at, action, line.id, f"void of {line.id}: {reason}", -voided)
            self.apply_credit("")
        elif line is not None and action == "write_off":
            amount = cents(str(d[AMOUNT]))
            line.written_off += amount
            self.adjusted += amount
            self.note(at, action, line.id, f"write-off on {line.id}: {reason}", -amount)

    def apply_credit(self, purpose: str) -> None:
        """Apply the credit to open charges: those the purpose pays first, then the oldest.

        A line once settled (paid, written off or void) never opens again, so the search for the
        oldest open line starts where the last one ended: a year of payments folds in linear time.
        """
        if self.credit <= 0:
            return
        if purpose:
            for line in self.open_lines():
                if self._purpose(line) == purpose:
                    self._pay(line)
        while self._settled < len(self.charges) and cast(ChargeLine, self.charges[self._settled]).open <= 0:
            self._settled += 1
        for line in self.open_lines():
            if self.credit <= 0:
                return
            self._pay(line)

    def _pay(self, line: ChargeLine) -> None:
        applied = min(self.credit, line.open)
        if applied > 0:
            line.paid += applied
            self.credit -= applied

    def _purpose(self, line: ChargeLine) -> str:
        service = self.billing.service_of(line.service)
        return service.purpose if service is not None else ""


def ledger(facts: CaseFacts, billing: Billing) -> Ledger:
    """The case's ledger: its charges, payments and adjustments folded in the order they were recorded.

    A payment pays the open charges its purpose names first, then the oldest; what is left is a credit,
    which pays the next charge posted. A void returns what was paid on the charge to the credit.
    Kept with the projection, and stepped by each ledger fact recorded after it (``CaseFacts.derived``), and
    kept by the store (``stored_ledger``), so a case read cold steps its snapshot rather than folding a year.
    """
    fold = _kept_fold(facts, billing)
    if fold.refold is not None:
        fold.refold.note(facts)
    return fold.books()


def _kept_fold(facts: CaseFacts, billing: Billing) -> _Fold:
    def step(before: tuple[Billing, _Fold], fact: FactEntry) -> tuple[Billing, _Fold]:
        return before[0], before[1].then(fact)

    kept = facts.derived((ledger, id(billing)), lambda f: (billing, _folded(f, billing)),
                         reads=frozenset(billing.facts.ledger), step=step, stored=lambda: stored_ledger(billing))
    if kept[0] is billing:  # ids are reused once an object is gone: the object itself decides
        return kept[1]
    return _folded(facts, billing)


def _refolded_books(billing: Billing, facts: CaseFacts) -> Ledger:
    return _folded(facts, billing).books()


def _folded(facts: CaseFacts, billing: Billing) -> _Fold:
    fold = _Fold(billing)
    for fact in facts.of_kinds(billing.facts.ledger):
        fold.take(fact)
    return fold


LEDGER_VERSION = 2
"""Of the ledger's fold as the store keeps it (``stored_ledger``): raised when the fold changes."""

_LEDGER_NAMES: dict[int, tuple[Billing, str]] = {}  # a fee schedule's view name, by its id (worked out once)


def stored_ledger(billing: Billing) -> StoredView[tuple[Billing, _Fold]]:
    """How the store keeps a case's ledger: its lines, statement and totals, under a name that holds what of the
    fee schedule the fold reads (the fact kinds; each service's payment purpose), so a schedule that changes
    those folds the ledger again rather than reading a snapshot made under another."""
    named = _LEDGER_NAMES.get(id(billing))
    if named is None or named[0] is not billing:
        reads = {"facts": list(billing.facts.ledger), "purposes": {n: s.purpose for n, s in billing.services.items()}}
        digest = hashlib.sha256(canonical_json(reads).encode()).hexdigest()[:16]
        named = _LEDGER_NAMES[id(billing)] = (billing, f"ledger/{LEDGER_VERSION}:{digest}")
    return StoredView(named[1], _fold_json, lambda body: (billing, _fold_from(billing, body)))


def ledger_snapshot(facts: CaseFacts, billing: Billing) -> str:
    """The ledger folded from ``facts`` as the store keeps it (what ``audit verify`` compares a snapshot with)."""
    return canonical_json(_fold_json((billing, _folded(facts, billing))))


def _fold_json(kept: tuple[Billing, _Fold]) -> dict[str, Any]:
    fold = kept[1]
    return {
        "charges": [c if not isinstance(c, ChargeLine) else _charge_row(c) for c in fold.charges],
        # The statement as text: a command decoding the snapshot reads the lines and totals, not a year of entries.
        "entries": fold.statement().text(),
        "totals": [str(fold.credit), str(fold.charged), str(fold.paid), str(fold.adjusted)],
        "settled": fold._settled,
    }


def _fold_from(billing: Billing, body: Mapping[str, Any]) -> _Fold:
    fold = _Fold(billing)
    settled = fold._settled = _integer(body["settled"])
    rows = [_check_row(row) for row in body["charges"]]
    if not 0 <= settled <= len(rows):
        raise ValueError("the settled lines are among the lines")
    # The lines settled stay rows until something reads one; the open ones, which the fold pays, are read now.
    fold.charges = [*rows[:settled], *(_read_line(row) for row in rows[settled:])]
    stored = body["entries"]
    if not (isinstance(stored, str) and stored.startswith("[") and stored.endswith("]")):
        raise ValueError("not a statement as the store keeps it")
    fold.stored_entries = "" if stored == "[]" else stored
    fold.refold = Refold("a case's ledger", partial(_refolded_books, billing))
    fold.credit, fold.charged, fold.paid, fold.adjusted = (Decimal(v) for v in body["totals"])
    return fold


def _instant(text: object) -> datetime:
    return datetime.fromisoformat(str(text))


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not a whole number")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not true or false")
    return value


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def adjustment_problem(books: Ledger, d: Mapping[str, Any]) -> str | None:
    """Why the adjustment ``d`` cannot be made on ``books`` (a sentence saying what to do), or None."""
    action = str(d["action"])
    if action == "refund":
        amount = cents(str(d[AMOUNT]))
        if amount > books.credit:
            return (f"a refund of {money_text(amount)} is more than the credit on the account "
                    f"({money_text(books.credit)}): void or write off the charge first, or refund less")
        return None
    line = books.charge(str(d.get("charge")))
    if line is None:
        known = ", ".join(c.id for c in books.charges) or "none yet"
        return f"there is no charge line {d.get('charge')!r} on this case (its lines: {known})"
    if line.voided:
        return f"charge line {line.id} is already void"
    if action == "write_off":
        amount = cents(str(d[AMOUNT]))
        if amount > line.open:
            return (f"a write-off of {money_text(amount)} is more than what is open on {line.id} "
                    f"({money_text(line.open)})")
    return None


@dataclass(frozen=True)
class LedgerSummary:
    """What the billing work list needs of a case's ledger (the cross-case table's row): the balance in
    cents, the insurance lines not yet on a superbill, the dates of service of the oldest of those and of the
    oldest charge with something open (None: none)."""

    balance_cents: int
    unbilled: int
    oldest_unbilled: date | None
    oldest_open: date | None


def summary(books: Ledger, billed: Collection[str] = ()) -> LedgerSummary:
    """The ledger's summary; ``billed``: the charge line ids already on an issued superbill. Read from the lines as
    the ledger holds them: a snapshot's settled rows are not decoded (nothing is open on them)."""
    try:
        return _summary(books, books._lines, billed)
    except StorageError:  # a settled row a hand edited: the lines as the facts make them
        return _summary(books, books.charges, billed)


def _summary(books: Ledger, lines: Iterable[ChargeLine | ChargeRow], billed: Collection[str]) -> LedgerSummary:
    unbilled: list[date] = []
    open_days: list[date] = []
    for c in lines:
        if isinstance(c, ChargeLine):
            if c.insurance and not c.voided and c.id not in billed:
                unbilled.append(c.date_of_service)
            if c.open > 0:
                open_days.append(c.date_of_service)
        elif c[8] is True and c[14] is not True and str(c[0]) not in billed:
            unbilled.append(_day(c[9]))
    return LedgerSummary(int(books.balance * 100), len(unbilled), min(unbilled, default=None),
                         min(open_days, default=None) if books.balance > 0 else None)


def _day(text: object) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise unreadable_snapshot("a case's ledger (a date of service)") from None
