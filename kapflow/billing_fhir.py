"""One case's billing and care as a FHIR R4B Bundle, for a payer, an EHR or a records request that takes FHIR.

A superbill is paper for a client to send on; a system takes the same facts as FHIR resources. This module
is one of the two of kapflow that import ``fhir.resources`` (the other is ``kapflow.audit.fhir``), and it
uses its R4B models. The Bundle (type ``collection``) holds the client (Patient), the case (EpisodeOfCare),
the tailored plan (CarePlan), each appointment (Appointment), each visit charged for (Encounter), each
charge line (ChargeItem), the account they are billed to (Account) and the statement of it (Invoice). Every
resource's id is a UUIDv5 of the case and the resource's key, and they refer to each other by those
``urn:uuid:`` URLs, so the same case, ledger and moment give byte-identical JSON.

Nothing here knows a pathway: field names come from the workflow (its intake's ``ClientFields``, its
billing's ``ClientRecords`` and ``EstimateRule``). The models do not enforce FHIR's required code bindings,
so ``REQUIRED_CODES`` copies the codes R4B allows for those this export sets, and every resource is checked
against it before the JSON is handed back (``check_codes``).
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.account import Account
from fhir.resources.R4B.address import Address
from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.appointment import AppointmentParticipant
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.careplan import CarePlan, CarePlanActivity, CarePlanActivityDetail
from fhir.resources.R4B.chargeitem import ChargeItem, ChargeItemPerformer
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.contactpoint import ContactPoint
from fhir.resources.R4B.encounter import Encounter, EncounterLocation, EncounterParticipant
from fhir.resources.R4B.episodeofcare import EpisodeOfCare
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.invoice import Invoice, InvoiceLineItem, InvoiceLineItemPriceComponent
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.money import Money
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from kapflow.domain.appointments import Appointment
from kapflow.domain.billing import Billing, ChargeLine, Ledger, money_text
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, CaseRecord
from kapflow.domain.superbill import Practice
from kapflow.domain.workflow import Workflow

CASE_SYSTEM = "urn:kapflow:case"
CLINICIAN_SYSTEM = "urn:kapflow:clinician"
APPOINTMENT_SYSTEM = "urn:kapflow:appointment"
CHARGE_SYSTEM = "urn:kapflow:charge"
EXPORT_SYSTEM = "urn:kapflow:billing-export"
CPT = "http://www.ama-assn.org/go/cpt"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NPI = "http://hl7.org/fhir/sid/us-npi"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PLACE_OF_SERVICE = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
USD = "USD"
_NAMESPACE = uuid.UUID("3b6f1d2e-9a47-4c58-8e21-6d0f4b7a9c13")
"""Resource ids are UUIDv5 of the case and the resource's key, so the same inputs give the same Bundle."""


def _codes(spec_text: str) -> frozenset[str]:
    """A binding's codes as the R4B spec lists them, ``a | b | c``."""
    return frozenset(spec_text.split(" | "))


REQUIRED_CODES: Mapping[tuple[str, str], frozenset[str]] = {
    # (resource type, path of the coded element): the codes FHIR R4B's required binding allows
    ("Bundle", "type"): _codes("document | message | transaction | transaction-response | batch | batch-response "
                               "| history | searchset | collection"),
    ("Patient", "telecom.system"): _codes("phone | fax | email | pager | url | sms | other"),
    ("Patient", "telecom.use"): _codes("home | work | temp | old | mobile"),
    ("Patient", "address.use"): _codes("home | work | temp | old | billing"),
    ("EpisodeOfCare", "status"): _codes("planned | waitlist | active | onhold | finished | cancelled "
                                        "| entered-in-error"),
    ("CarePlan", "status"): _codes("draft | active | on-hold | revoked | completed | entered-in-error | unknown"),
    ("CarePlan", "intent"): _codes("proposal | plan | order | option"),
    ("CarePlan", "activity.detail.status"): _codes("not-started | scheduled | in-progress | on-hold | completed "
                                                   "| cancelled | stopped | unknown | entered-in-error"),
    ("Location", "status"): _codes("active | suspended | inactive"),
    ("Location", "mode"): _codes("instance | kind"),
    ("Appointment", "status"): _codes("proposed | pending | booked | arrived | fulfilled | cancelled | noshow "
                                      "| entered-in-error | checked-in | waitlist"),
    ("Appointment", "participant.status"): _codes("accepted | declined | tentative | needs-action"),
    ("Appointment", "participant.required"): _codes("required | optional | information-only"),
    ("Encounter", "status"): _codes("planned | arrived | triaged | in-progress | onleave | finished | cancelled "
                                    "| entered-in-error | unknown"),
    ("ChargeItem", "status"): _codes("planned | billable | not-billable | aborted | billed | entered-in-error "
                                     "| unknown"),
    ("Account", "status"): _codes("active | inactive | entered-in-error | on-hold | unknown"),
    ("Invoice", "status"): _codes("draft | issued | balanced | cancelled | entered-in-error"),
    ("Invoice", "lineItem.priceComponent.type"): _codes("base | surcharge | deduction | discount | tax "
                                                        "| informational"),
}
"""The required bindings this export sets (fhir.resources does not enforce them), with R4B's codes."""

APPOINTMENT_STATUS = {"booked": "booked", "attended": "fulfilled", "cancelled": "cancelled", "no_show": "noshow"}
"""kapflow's appointment status -> FHIR's (``Appointment.status``)."""
_MISSED = ("cancelled", "no_show")


# ------------------------------------------------------------------------------------------ checking


def check_codes(resource: Mapping[str, Any]) -> None:
    """``ValueError`` unless every required-bound element of ``resource`` (its JSON) has an allowed code."""
    kind = str(resource.get("resourceType"))
    for (of, path), allowed in REQUIRED_CODES.items():
        if of != kind:
            continue
        for value in _values(resource, path.split(".")):
            if value not in allowed:
                raise ValueError(f"{kind}.{path} is {value!r}, which FHIR R4B's required binding does not allow "
                                 f"(allowed: {', '.join(sorted(allowed))}): the export builds it wrongly")


def _values(node: object, path: Sequence[str]) -> Iterator[object]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
    elif not path:
        yield node
    elif isinstance(node, Mapping) and path[0] in node:
        yield from _values(node[path[0]], path[1:])


# ------------------------------------------------------------------------------------------ writing


def billing_bundle(
    case: CaseRecord, wf: Workflow, books: Ledger, booked: Sequence[Appointment], practice: Practice,
    cal: PracticeCalendar, *, generated_at: datetime,
) -> str:
    """The case's billing and care as the JSON of a FHIR R4B Bundle (type ``collection``); deterministic for
    the same inputs. ``ValueError`` if the workflow bills nothing, or a resource would break FHIR's rules
    (a programming error: the export's, not the case's)."""
    if wf.billing is None:
        raise ValueError(f"workflow {wf.name} bills nothing: it has no billing to export")
    try:
        built = _Export(case, wf, wf.billing, books, booked, practice, cal).bundle(generated_at)
    except ValidationError as exc:  # the message names fields, never their values (health information)
        raise ValueError(f"the billing export built an invalid FHIR R4B resource ({exc.error_count()} problems: "
                         f"{', '.join('.'.join(map(str, e['loc'])) for e in exc.errors())})") from None
    text = str(built.model_dump_json(exclude_none=True, indent=1))
    parsed = json.loads(text)
    check_codes(parsed)
    for entry in parsed.get("entry", ()):
        check_codes(entry["resource"])
    return text


class _Export:
    """The resources of one case's export, each built once and referred to by its ``urn:uuid:``."""

    def __init__(self, case: CaseRecord, wf: Workflow, billing: Billing, books: Ledger,
                 booked: Sequence[Appointment], practice: Practice, cal: PracticeCalendar) -> None:
        self.case, self.wf, self.billing, self.books = case, wf, billing, books
        self.booked = {a.id: a for a in booked}
        self.practice, self.cal = practice, cal
        self.facts: CaseFacts = case.projection
        self.final = wf.state(case.state).final if case.state in {s.name for s in wf.states} else False
        # The visits an Encounter records: every charged visit but a missed appointment's fee (nobody came).
        self.visits = list(dict.fromkeys(
            c.visit for c in books.charges
            if not (c.visit in self.booked and self.booked[c.visit].status in _MISSED)))
        self.superbilled = self.on_superbills()

    def url(self, key: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{self.case.id}/{key}')}"

    def ref(self, key: str) -> Reference:
        return Reference(reference=self.url(key))

    def bundle(self, generated_at: datetime) -> Bundle:
        resources: list[tuple[str, Resource]] = [
            ("Patient", self.patient()), ("EpisodeOfCare", self.episode()), ("Location", self.place()),
        ]
        plan = self.care_plan()
        if plan is not None:
            resources.append(("CarePlan", plan))
        resources += [(f"Appointment/{a.id}", self.appointment(a)) for a in self.booked.values()]
        resources += [(f"Encounter/{v}", self.encounter(v)) for v in self.visits]
        resources += [(f"ChargeItem/{c.id}", self.charge_item(c)) for c in self.books.charges]
        resources += [("Account", self.account()), ("Invoice", self.invoice(generated_at))]
        entries = []
        for key, resource in resources:
            resource.id = self.url(key).removeprefix("urn:uuid:")
            entries.append(BundleEntry(fullUrl=self.url(key), resource=resource))
        return Bundle(id=self.url("Bundle").removeprefix("urn:uuid:"), type="collection",
                      identifier=Identifier(system=EXPORT_SYSTEM, value=f"{self.case.id}@{self.case.version}"),
                      timestamp=_utc(generated_at), entry=entries)

    # ----------------------------------------------------------------------------- the client and the case

    def patient(self) -> Patient:
        intake = self.facts.latest(self.wf.intake_fact)
        data: Mapping[str, Any] = intake.data if intake is not None else {}
        records = self.billing.records
        born = _text(data.get(records.birth_date)) if records is not None else None
        return Patient(
            identifier=[Identifier(system=CASE_SYSTEM, value=self.case.id)],
            name=_names(self.wf.client.name, data),
            birthDate=date.fromisoformat(born) if born else None,
            telecom=_telecom(self.wf.client.addresses, data) or None,
            address=[a for a in (self.address(),) if a is not None] or None,
        )

    def address(self) -> Address | None:
        """The address fact as FHIR takes it. Its lines are the workflow's templates; the last, when it has
        three fields, is a US "{city}, {state} {ZIP}" line, its fields in that order."""
        records = self.billing.records
        fact = self.facts.latest(records.address) if records is not None else None
        if records is None or fact is None:
            return None
        templates = records.address_lines
        last = _fields(templates[-1]) if templates else []
        locality = [_text(fact.data.get(name)) for name in last] if len(last) == 3 else [None, None, None]
        street = templates[:-1] if len(last) == 3 else templates
        lines: list[str | None] = [line for line in (_filled(t, fact.data) for t in street) if line]
        written = [line for line in (_filled(t, fact.data) for t in templates) if line]
        return Address(use="home", line=lines or None, city=locality[0], state=locality[1], postalCode=locality[2],
                       country="US", text=", ".join(written) or None)

    def episode(self) -> EpisodeOfCare:
        return EpisodeOfCare(
            identifier=[Identifier(system=CASE_SYSTEM, value=self.case.id)],
            status="finished" if self.final else "active",
            patient=self.ref("Patient"),
            period=Period(start=_utc(self.case.opened_at), end=_utc(self.case.updated_at) if self.final else None),
            managingOrganization=self.organization(),
            account=[self.ref("Account")],
        )

    def care_plan(self) -> CarePlan | None:
        """The tailored plan, from the facts that set, extend or end it (the workflow's estimate rule names
        them). A plan fact that leads to expect no service ended it early: ``revoked``, FHIR's "terminated
        prior to reaching completion" (``completed`` would claim the planned care was given, ``stopped`` is
        not a CarePlan status). Otherwise it is ``completed`` once the case is closed, else ``active``."""
        rule = self.billing.estimate
        plans = self.facts.of_kind(rule.fact) if rule is not None else []
        if rule is None or not plans:
            return None
        expected = [(fact, rule.expected(fact.data, self.facts)) for fact in plans]
        ended = not expected[-1][1]
        status = "revoked" if ended else "completed" if self.final else "active"
        end = plans[-1].at if ended else self.case.updated_at if self.final else None
        activities = []
        for fact, lines in expected:
            # Each plan fact's services move together: begun once one of them was charged after it.
            names = {name for name, _ in lines}
            begun = any(c.service in names and c.at >= fact.at and not c.voided for c in self.books.charges)
            step = "stopped" if ended else "completed" if self.final else "in-progress" if begun else "not-started"
            for name, quantity in lines:
                activities.append(CarePlanActivity(detail=CarePlanActivityDetail(
                    code=self.service_code(name), status=step, quantity=Quantity(value=Decimal(quantity)),
                    description=rule.basis(fact.data),
                )))
        described = "; ".join(rule.basis(fact.data) for fact, lines in expected if lines)
        return CarePlan(
            status=status, intent="plan", subject=self.ref("Patient"),
            period=Period(start=_day(self.cal.local_date(plans[0].at)),
                          end=_day(self.cal.local_date(end)) if end is not None else None),
            created=_utc(plans[0].at), description=described or None, activity=activities or None,
        )

    def service_code(self, name: str) -> CodeableConcept:
        service = self.billing.service_of(name)
        if service is None:
            return CodeableConcept(text=name)
        return CodeableConcept(coding=[Coding(system=CPT, code=service.code)] if service.code else None,
                               text=service.description)

    # ----------------------------------------------------------------------------- the practice

    def organization(self) -> Reference | None:
        party = self.practice.party
        if party is None:
            return None
        return Reference(identifier=Identifier(system=NPI, value=party.npi), display=party.name)

    def clinician(self, clinician_id: str) -> Reference | None:
        if not clinician_id:
            return None
        known = self.practice.clinicians.get(clinician_id)
        return Reference(identifier=Identifier(system=CLINICIAN_SYSTEM, value=clinician_id),
                         display=known.name if known is not None else None)

    def place(self) -> Location:
        """The place of service, as CMS codes it (11: office). R4B's ChargeItem has no place of service, nor
        an extension for it; the standard home of the code is Claim.item.locationCodeableConcept (bound to
        the CMS code set), which this export does not make. A Location of mode ``kind`` is FHIR's way to
        name a class of place rather than one building, and ``Location.type`` is extensibly bound, so it
        takes the CMS code; each Encounter points to it (``Encounter.location``), and each ChargeItem to
        its Encounter."""
        code = self.billing.place_of_service
        return Location(status="active", mode="kind", name=f"Place of service {code}",
                        type=[CodeableConcept(coding=[Coding(system=PLACE_OF_SERVICE, code=code)])],
                        managingOrganization=self.organization())

    # ----------------------------------------------------------------------------- the visits

    def appointment(self, appt: Appointment) -> FhirAppointment:
        """A booking as FHIR's Appointment; a booking the engine charged a completed visit to was fulfilled,
        though nobody marked it attended (a pathway may complete its visits by its own steps)."""
        status = APPOINTMENT_STATUS[appt.status]
        if appt.status == "booked" and appt.id in self.visits:
            status = "fulfilled"
        participants = [AppointmentParticipant(actor=self.ref("Patient"), status="accepted", required="required")]
        clinician = self.clinician(appt.clinician)
        if clinician is not None:
            participants.append(AppointmentParticipant(actor=clinician, status="accepted", required="required"))
        return FhirAppointment(
            identifier=[Identifier(system=APPOINTMENT_SYSTEM, value=appt.uid)],
            status=status, start=_utc(appt.starts_at), end=_utc(appt.ends_at), minutesDuration=appt.minutes,
            serviceType=[CodeableConcept(text=appt.kind)], appointmentType=CodeableConcept(text=appt.kind),
            created=_utc(appt.booked_at), participant=participants,
        )

    def encounter(self, visit: str) -> Encounter:
        lines = [c for c in self.books.charges if c.visit == visit]
        appt = self.booked.get(visit)
        period = (Period(start=_utc(appt.starts_at), end=_utc(appt.ends_at)) if appt is not None
                  else Period(start=_day(lines[0].date_of_service)))
        clinician = self.clinician(lines[0].clinician)
        return Encounter.model_validate({  # by its JSON names: the model calls ``class`` ``class_fhir``
            "status": "finished",
            "class": Coding(system=ACT_CODE, code="AMB", display="ambulatory"),
            "subject": self.ref("Patient"),
            "episodeOfCare": [self.ref("EpisodeOfCare")],
            "appointment": [self.ref(f"Appointment/{visit}")] if appt is not None else None,
            "period": period,
            "serviceType": CodeableConcept(text=appt.kind if appt is not None
                                           else "; ".join(c.description for c in lines)),
            "participant": [EncounterParticipant(individual=clinician)] if clinician is not None else None,
            "location": [EncounterLocation(location=self.ref("Location"))],
            "account": [self.ref("Account")],
        })

    # ----------------------------------------------------------------------------- the money

    def charge_item(self, line: ChargeLine) -> ChargeItem:
        """A charge line. Voided: ``aborted``, the charge was posted (an audited fact) and its billing then
        withdrawn with a reason; ``entered-in-error`` would say the record itself is false and is to be
        ignored, which a void does not claim. A line on an issued superbill is ``billed``, else ``billable``."""
        status = "aborted" if line.voided else "billed" if line.id in self.superbilled else "billable"
        context = f"Encounter/{line.visit}" if line.visit in self.visits else "EpisodeOfCare"
        clinician = self.clinician(line.clinician)
        adjustments = [e for e in self.books.entries if e.ref == line.id and e.kind != "charge"]
        return ChargeItem(
            identifier=[Identifier(system=CHARGE_SYSTEM, value=f"{self.case.id}/{line.id}")],
            status=status,
            code=CodeableConcept(coding=[Coding(system=CPT, code=line.code)] if line.code else None,
                                 text=line.description),
            subject=self.ref("Patient"), context=self.ref(context),
            occurrenceDateTime=_day(line.date_of_service), enteredDate=_utc(line.at),
            performer=[ChargeItemPerformer(actor=clinician)] if clinician is not None else None,
            quantity=Quantity(value=Decimal(line.units)), priceOverride=_money(line.fee),
            reason=[CodeableConcept(coding=[Coding(system=ICD10CM, code=code)])  # a visit's, not a missed one's
                    for code in self.diagnoses(line.date_of_service) if line.visit in self.visits] or None,
            account=[self.ref("Account")],
            note=[Annotation(text=e.description, time=_utc(e.at)) for e in adjustments] or None,
        )

    def on_superbills(self) -> set[str]:
        """The charge line ids on a superbill issued (billed: a claim of them is in the client's hands)."""
        records = self.billing.records
        if records is None:
            return set()
        return {line for fact in self.facts.of_kind(records.superbill) for line in str(fact.data["lines"]).split()}

    def diagnoses(self, day: date) -> list[str]:
        """The case's diagnosis codes made on or before ``day`` (a code's first date counts), in order."""
        records = self.billing.records
        if records is None:
            return []
        made: dict[str, date] = {}
        for fact in self.facts.of_kind(records.diagnosis):
            made.setdefault(str(fact.data["code"]), date.fromisoformat(str(fact.data[records.diagnosis_date])))
        return [code for code, on in made.items() if on <= day]

    def account(self) -> Account:
        settled = self.final and self.books.balance == 0
        return Account(
            identifier=[Identifier(system=CASE_SYSTEM, value=self.case.id)],
            status="inactive" if settled else "active",
            type=CodeableConcept(coding=[Coding(system=ACT_CODE, code="PBILLACCT", display="patient billing account")]),
            subject=[self.ref("Patient")], owner=self.organization(),
            servicePeriod=Period(start=_utc(self.case.opened_at)),
        )

    def invoice(self, generated_at: datetime) -> Invoice:
        """The account's statement: its lines (each fee, less what was written off or voided), charged as the
        gross total, the balance as the net; paid and adjusted in its note. ``balanced`` when nothing is owed."""
        books = self.books
        lines = [InvoiceLineItem(sequence=n, chargeItemReference=self.ref(f"ChargeItem/{c.id}"),
                                 priceComponent=_price(c))
                 for n, c in enumerate(books.charges, start=1)]
        said = f"Paid {money_text(books.paid)}; adjusted (voids and write-offs) {money_text(books.adjusted)}"
        if books.credit:
            said += f"; credit on account {money_text(books.credit)}"
        return Invoice(
            identifier=[Identifier(system=CASE_SYSTEM, value=self.case.id)],
            status="balanced" if books.balance == 0 else "issued",
            subject=self.ref("Patient"), recipient=self.ref("Patient"), date=_utc(generated_at),
            issuer=self.organization(), account=self.ref("Account"), lineItem=lines or None,
            totalGross=_money(books.charged), totalNet=_money(books.balance), note=[Annotation(text=said + ".")],
        )


def _price(line: ChargeLine) -> list[InvoiceLineItemPriceComponent]:
    parts = [InvoiceLineItemPriceComponent(type="base", amount=_money(line.fee))]
    if line.written_off:
        parts.append(InvoiceLineItemPriceComponent(type="discount", amount=_money(line.written_off)))
    if line.voided:
        parts.append(InvoiceLineItemPriceComponent(type="deduction", amount=_money(line.fee - line.written_off)))
    return parts


def _names(fields: Sequence[str], data: Mapping[str, Any]) -> list[HumanName] | None:
    """Given and family names when the workflow names the client by two fields (first, last); else text."""
    parts = [_text(data.get(name)) for name in fields]
    if len(fields) == 2 and all(parts):
        return [HumanName(given=[parts[0]], family=parts[1])]
    joined = " ".join(p for p in parts if p)
    return [HumanName(text=joined)] if joined else None


_CONTACT_SYSTEMS = REQUIRED_CODES[("Patient", "telecom.system")]


def _telecom(addresses: Mapping[str, str], data: Mapping[str, Any]) -> list[ContactPoint]:
    """The client's address on each channel, its system the channel when FHIR has it (email, sms: a number
    that takes text messages, which is a mobile), else ``other``."""
    found = []
    for channel, name in sorted(addresses.items()):
        value = _text(data.get(name))
        if value:
            system = channel if channel in _CONTACT_SYSTEMS else "other"
            found.append(ContactPoint(system=system, value=value, use="mobile" if system == "sms" else None))
    return found


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _filled(template: str, data: Mapping[str, Any]) -> str:
    """An address line from its template, fields not given left out (as a superbill writes it)."""
    values = {name: _text(data.get(name)) or "" for name in _fields(template)}
    return " ".join(template.format_map(values).split()).strip(" ,")


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _money(amount: Decimal) -> Money:
    return Money(value=amount, currency=USD)


def _day(day: date) -> Any:
    """A FHIR dateTime of a day's precision ("2026-03-02"): the models type it ``datetime`` and take a date."""
    return day


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
