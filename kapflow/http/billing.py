"""The API's billing: a case's ledger (charges, payments, adjustments, balance).

Read by the roles that read every fact kind the ledger is made of (on the KAP pathway: billing, the front
desk, the client, clinicians and auditors), recorded in the access log. Payments and adjustments are
recorded as facts (``POST /v1/cases/{id}/facts/payment``, ``.../facts/billing_adjustment``); charges are
posted by the engine as visits complete.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from kapflow.app.billing import estimate_kinds, fhir_kinds, ledger_kinds, superbill_kinds
from kapflow.app.engine import Engine
from kapflow.http.common import PROBLEMS, V1, Acting, CaseId, JSONObject, require_reads
from kapflow.present import estimate_shape, ledger_shape, superbill_shape

EstimateReference = Annotated[str, Path(pattern=r"^GFE-[A-Z0-9]{1,16}-[0-9]{1,6}$", description="e.g. GFE-7F3A2B10-1")]
Reference = Annotated[str, Path(pattern=r"^SB-[A-Z0-9]{1,16}-[0-9]{1,6}$", description="e.g. SB-7F3A2B10-1")]


def router(engine: Engine) -> APIRouter:
    api = APIRouter(prefix=V1)

    @api.get("/cases/{case_id}/ledger", tags=["billing"], responses=PROBLEMS)
    def read_ledger(case_id: CaseId, actor: Acting) -> JSONObject:
        """The case's ledger: each charge line (its visit, service, CPT code, fee, what was paid and adjusted on
        it), the statement of every charge, payment and adjustment with the balance after it, and the totals.
        Amounts are exact decimal text ("165.00"). 403 for a role that may not read the case's charges,
        payments and adjustments; 422 if the case's workflow bills nothing."""
        require_reads(engine, actor, case_id, ledger_kinds, "read the ledger")
        shape = ledger_shape(engine.ledger(case_id))
        engine.record_access(actor, case_id, "ledger")
        return shape

    @api.post("/cases/{case_id}/superbills", status_code=201, tags=["billing"], responses=PROBLEMS)
    def issue_superbill(
        case_id: CaseId, actor: Acting, response: Response,
        first: Annotated[date, Body(description="The first date of service it covers (YYYY-MM-DD).")],
        last: Annotated[date, Body(description="The last date of service it covers.")],
        diagnoses: Annotated[list[str] | None, Body(description=(
            "The ICD-10-CM codes to list (default: every diagnosis made on or before its dates of service)."))]
        = None,
    ) -> JSONObject:
        """Issue the case's superbill for the services billed to insurance from ``first`` to ``last``, recorded
        on the case; its PDF is at ``Location``. Only the workflow's superbill issuers (KAP: billing). 422
        ``document_incomplete`` names every gap at once (the practice's or a clinician's details not set, the
        client's address not recorded, a line with no diagnosis made by its date), and nothing is written."""
        issued = engine.issue_superbill(case_id, first=first, last=last, diagnoses=diagnoses, actor=actor)
        response.headers["Location"] = f"{V1}/cases/{case_id}/superbills/{issued.record.reference}.pdf"
        return superbill_shape(issued.record)

    @api.get("/cases/{case_id}/superbills", tags=["billing"], responses=PROBLEMS)
    def list_superbills(case_id: CaseId, actor: Acting) -> list[JSONObject]:
        """The superbills issued on the case, oldest first: reference, period, lines, diagnoses, totals as
        issued. For the roles that read superbills and diagnoses (KAP: billing, clinicians, auditors)."""
        require_reads(engine, actor, case_id, superbill_kinds, "read superbills")
        shapes = [superbill_shape(r) for r in engine.superbills(case_id)]
        engine.record_access(actor, case_id, "superbills")
        return shapes

    @api.get("/cases/{case_id}/superbills/{reference}.pdf", tags=["billing"], responses=PROBLEMS,
             response_class=Response)
    def superbill_pdf(case_id: CaseId, reference: Reference, actor: Acting) -> Response:
        """A superbill issued on the case, as a PDF, made again exactly as it was issued."""
        require_reads(engine, actor, case_id, superbill_kinds, "read superbills")
        body = engine.document_pdf(engine.superbill(case_id, reference))
        engine.record_access(actor, case_id, "superbill")
        return Response(body, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{reference}.pdf"'})

    @api.get("/cases/{case_id}/estimates", tags=["billing"], responses=PROBLEMS)
    def list_estimates(case_id: CaseId, actor: Acting) -> list[JSONObject]:
        """The good faith estimates recorded on the case, oldest first: one each time its plan of care was set
        or extended, before the services it lists (No Surprises Act): each line's service, quantity and fee
        then, and the total. For the roles that read them (KAP: billing, the front desk, the client,
        clinicians, auditors)."""
        require_reads(engine, actor, case_id, estimate_kinds, "read estimates")
        shapes = [estimate_shape(r) for r in engine.estimates(case_id)]
        engine.record_access(actor, case_id, "estimates")
        return shapes

    @api.get("/cases/{case_id}/estimates/{reference}.pdf", tags=["billing"], responses=PROBLEMS,
             response_class=Response)
    def estimate_pdf(case_id: CaseId, reference: EstimateReference, actor: Acting) -> Response:
        """A good faith estimate as a PDF, with the disclaimer and the dispute notice it must carry; its
        diagnoses only for a role that reads them. 422 ``document_incomplete`` names every gap."""
        require_reads(engine, actor, case_id, estimate_kinds, "read estimates")
        body = engine.document_pdf(engine.estimate(case_id, reference, actor.role))
        engine.record_access(actor, case_id, "estimate")
        return Response(body, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{reference}.pdf"'})

    @api.get("/cases/{case_id}/billing.fhir.json", tags=["billing"], responses=PROBLEMS, response_class=Response)
    def billing_fhir(case_id: CaseId, actor: Acting) -> Response:
        """The case's billing and care as a FHIR R4B Bundle (``application/fhir+json``): Patient, EpisodeOfCare,
        CarePlan, Appointment, Encounter, ChargeItem (CPT, ICD-10-CM, place of service), Invoice and Account.
        For the roles that read all it shows (KAP: billing, clinicians, auditors)."""
        require_reads(engine, actor, case_id, fhir_kinds, "export billing")
        body = engine.billing_fhir(case_id)
        engine.record_access(actor, case_id, "billing.fhir")
        return Response(body, media_type="application/fhir+json")

    return api
