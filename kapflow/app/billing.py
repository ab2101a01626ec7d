"""Billing's queries and commands: a case's ledger (its charges, payments and adjustments).

Charges are posted by the visit's own command (``kapflow.app.cases``); payments and adjustments are facts
recorded like any other. This module reads them back as the ledger a billing clerk works from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from kapflow.app.cases import append_fact
from kapflow.app.command_input import check_actor_shape
from kapflow.app.context import AppContext
from kapflow.app.queries import check_day
from kapflow.app.runner import Transaction
from kapflow.domain.appointments import Appointment, appointments
from kapflow.domain.billing import Billing, ClientRecords, Ledger, ledger
from kapflow.domain.billing_documents import Diagnosis, GoodFaithEstimateView, SuperbillView
from kapflow.domain.case import Actor, CaseRecord, Outcome
from kapflow.domain.errors import DocumentIncomplete, InvalidInput, NotPermitted, UnknownCase
from kapflow.domain.estimate import EstimateRecord, estimate_view
from kapflow.domain.events import EventKind
from kapflow.domain.names import client_name_of
from kapflow.domain.superbill import (
    Client,
    SuperbillRecord,
    SuperbillRequest,
    diagnoses_made,
    reissued,
    superbill_for,
)
from kapflow.domain.workflow import Workflow
from kapflow.errors import missing_extra
from kapflow.logging import get_logger

_log = get_logger("kapflow.billing")


def billing_of(wf: Workflow) -> Billing:
    """The workflow's billing; ``InvalidInput`` if it bills nothing."""
    if wf.billing is None:
        raise InvalidInput(f"workflow {wf.name} version {wf.version} bills nothing: it declares no fee schedule",
                           field="case_id")
    return wf.billing


def case_ledger(app: AppContext, case_id: str) -> Ledger:
    """The case's ledger."""
    case = _case(app, case_id)
    return ledger(case.projection, billing_of(app.workflows.of(case)))


def ledger_kinds(wf: Workflow) -> frozenset[str]:
    """The fact kinds a ledger is made of (``InvalidInput`` if the workflow bills nothing)."""
    return frozenset(billing_of(wf).facts.ledger)


def superbill_kinds(wf: Workflow) -> frozenset[str]:
    """The fact kinds a superbill shows: the ledger's, the diagnoses, the address, the superbills issued."""
    records = _records(wf)
    return ledger_kinds(wf) | {records.diagnosis, records.address, records.superbill}


def estimate_kinds(wf: Workflow) -> frozenset[str]:
    """The fact kinds an estimate's document shows: the estimate, the intake, the client's address."""
    return frozenset({_estimate_kind(wf), wf.intake_fact, _records(wf).address})


# ------------------------------------------------------------------ superbills


@dataclass(frozen=True)
class IssuedSuperbill:
    """A superbill issued (recorded on the case) and its document's view (``kapflow.documents`` renders it)."""

    outcome: Outcome
    view: SuperbillView
    record: SuperbillRecord


def _describe(code: str) -> str:
    # The code set is loaded on first use (a second or two, once per process): kapflow.codesets.icd10cm.
    from kapflow.codesets.icd10cm import describe

    return describe(code)


def _client(case: CaseRecord, wf: Workflow) -> Client:
    return Client(client_name_of(case.projection, wf), case.projection, wf.intake_fact)


def _records(wf: Workflow) -> ClientRecords:
    records = billing_of(wf).records
    if records is None:
        raise DocumentIncomplete("superbill", [f"workflow {wf.name} issues no superbills: it names no client "
                                               "records in its billing"])
    return records


def issue_superbill(
    app: AppContext, case_id: str, request: SuperbillRequest, *, actor: Actor, issued_on: date | None = None,
) -> IssuedSuperbill:
    """Make the case's superbill for ``request`` and record it on the case (audited, in one transaction).

    The actor's role must be one of the workflow's ``Billing.issuers``; every gap of the document is
    named at once (``DocumentIncomplete``) and then nothing is written."""
    check_actor_shape(actor)
    for day, name in ((request.first, "first"), (request.last, "last")):
        check_day(day, name)

    def body(tx: Transaction) -> IssuedSuperbill:
        case, wf = tx.load(case_id)
        records = _records(wf)
        issuers = billing_of(wf).issuers
        if actor.role not in issuers:
            raise NotPermitted(case_id=case_id, trigger="", state=case.state, role=actor.role, allowed=issuers,
                               fact_kind=records.superbill)
        books = ledger(case.projection, billing_of(wf))
        day = issued_on or app.practice.local_date(tx.now())
        issued = len(case.projection.of_kind(records.superbill))
        reference = f"SB-{case_id.removeprefix('case-')[:8].upper()}-{issued + 1}"
        view, record = superbill_for(_client(case, wf), billing_of(wf), books, request, app.documents, _describe,
                                     issued_on=day, reference=reference)
        updated = append_fact(tx, case, actor, records.superbill, dict(record.as_fact()), None)
        return IssuedSuperbill(Outcome(case.id, EventKind.FACT, case.state, updated.version, updated.event_count,
                                       extra={"fact_kind": records.superbill, "reference": reference}), view,
                              record)

    issued = app.runner.run(body, case_id=case_id)
    _log.info("superbill_made", case_id=case_id)
    return issued


def superbill(app: AppContext, case_id: str, reference: str) -> SuperbillView:
    """The superbill issued on the case as ``reference``, made again as it was issued."""
    case = _case(app, case_id)
    wf = app.workflows.of(case)
    records = _records(wf)
    found = next((f for f in case.projection.of_kind(records.superbill) if f.data.get("reference") == reference),
                 None)
    if found is None:
        raise InvalidInput(f"no superbill {reference!r} was issued on this case", field="reference")
    books = ledger(case.projection, billing_of(wf))
    return reissued(_client(case, wf), billing_of(wf), books, SuperbillRecord.from_fact(found.data), app.documents,
                    _describe)


def superbills(app: AppContext, case_id: str) -> list[SuperbillRecord]:
    """The superbills issued on the case, oldest first."""
    case = _case(app, case_id)
    records = _records(app.workflows.of(case))
    return [SuperbillRecord.from_fact(f.data) for f in case.projection.of_kind(records.superbill)]


def document_pdf(view: SuperbillView | GoodFaithEstimateView) -> bytes:
    """The document as a PDF; the ``pdf`` extra (fpdf2) is imported only when one is asked for."""
    try:
        from kapflow.documents import estimate_pdf, superbill_pdf
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "pdf") from None
    return superbill_pdf(view) if isinstance(view, SuperbillView) else estimate_pdf(view)


# ------------------------------------------------------------------ good faith estimates


def _estimate_kind(wf: Workflow) -> str:
    rule = billing_of(wf).estimate
    if rule is None:
        raise InvalidInput(f"workflow {wf.name} version {wf.version} gives no good faith estimates",
                           field="reference")
    return rule.kind


def estimates(app: AppContext, case_id: str) -> list[EstimateRecord]:
    """The good faith estimates recorded on the case, oldest first."""
    case = _case(app, case_id)
    kind = _estimate_kind(app.workflows.of(case))
    return [EstimateRecord.from_fact(f.data) for f in case.projection.of_kind(kind)]


def estimate(app: AppContext, case_id: str, reference: str, role: str | None = None) -> GoodFaithEstimateView:
    """The good faith estimate recorded on the case as ``reference``, as a document: the practice and the
    clinician the case is booked with (its settings), the client, the diagnoses made by then (only for a
    ``role`` that reads diagnoses, or None: any)."""
    case = _case(app, case_id)
    wf = app.workflows.of(case)
    found = next((f for f in case.projection.of_kind(_estimate_kind(wf)) if f.data.get("reference") == reference),
                 None)
    if found is None:
        raise InvalidInput(f"no good faith estimate {reference!r} was recorded on this case", field="reference")
    record = EstimateRecord.from_fact(found.data)
    booked = sorted(_booked(case, wf), key=lambda a: a.starts_at)
    clinician = next((a.clinician for a in reversed(booked) if a.clinician), "")
    start = app.practice.start_of_day(record.issued_on)
    expected_from = next((app.practice.local_date(a.starts_at) for a in booked
                          if a.active and a.starts_at >= start), None)
    records = _records(wf)
    shown = role is None or records.diagnosis in wf.readable(role)
    made = diagnoses_made(case.projection, records) if shown else {}
    diagnoses = tuple(Diagnosis(code, _describe(code)) for code, day in made.items() if day <= record.issued_on)
    return estimate_view(_client(case, wf), billing_of(wf), record, app.documents, clinician, diagnoses,
                         expected_from)


def _booked(case: CaseRecord, wf: Workflow) -> list[Appointment]:
    return list(appointments(case.id, case.projection, wf.appointments).values()) if wf.appointments else []


def _case(app: AppContext, case_id: str) -> CaseRecord:
    case = app.store.get_case(case_id)
    if case is None:
        raise UnknownCase(case_id)
    return case


# ------------------------------------------------------------------ FHIR


def fhir_kinds(wf: Workflow) -> frozenset[str]:
    """The fact kinds a case's billing Bundle shows: a superbill's, the appointments, and the plan as its good
    faith estimates say it (the services expected, not the clinical plan itself)."""
    appointment_kinds = {wf.appointments.booking, wf.appointments.update} if wf.appointments is not None else set()
    rule = billing_of(wf).estimate
    return superbill_kinds(wf) | appointment_kinds | ({rule.kind} if rule is not None else set())


def fhir_bundle(app: AppContext, case_id: str) -> str:
    """The case's billing and care as a FHIR R4B Bundle (JSON): Patient, EpisodeOfCare, CarePlan,
    Appointment, Encounter, ChargeItem, Invoice and Account (the ``fhir`` extra)."""
    case = _case(app, case_id)
    wf = app.workflows.of(case)
    books = ledger(case.projection, billing_of(wf))
    booked = _booked(case, wf)
    try:
        from kapflow.billing_fhir import billing_bundle  # only when asked for: fhir.resources is an extra
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "fhir") from None
    return billing_bundle(case, wf, books, booked, app.documents, app.practice, generated_at=app.clock.now())
