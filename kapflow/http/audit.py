"""The API's audit of one case: verify its hash chain, export its history with proofs.

Both carry, or vouch for, every event of the case with its data, so both are only for the roles that
read every fact kind of the case's workflow (on the KAP pathway: auditors and the clinicians, the
prescriber and the therapist); any other role gets 403. Each successful read is recorded in the access
log (``audit``, ``export``), which the audit log's checkpoints cover in turn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from kapflow.app.engine import Engine
from kapflow.audit.export_formats import ExportFormat, PdfView, render_bytes
from kapflow.domain.workflow import Workflow
from kapflow.http.common import PROBLEMS, V1, Acting, CaseId, JSONObject, require_reads
from kapflow.present import audit_report_shape, event_summary

MEDIA_TYPES = {
    ExportFormat.JSONL: "application/x-ndjson",
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.FHIR: "application/fhir+json",
    ExportFormat.PDF: "application/pdf",
}
_SUFFIXES = {ExportFormat.JSONL: "jsonl", ExportFormat.CSV: "csv", ExportFormat.FHIR: "fhir.json",
             ExportFormat.PDF: "pdf"}


def _every_kind(wf: Workflow) -> tuple[str, ...]:
    return tuple(wf.facts)


def router(engine: Engine) -> APIRouter:
    api = APIRouter(prefix=V1)

    @api.get("/cases/{case_id}/audit", tags=["audit"], responses=PROBLEMS)
    def verify(case_id: CaseId, actor: Acting) -> JSONObject:
        """Verify the case's audit history: every event's hash chain and the case row against it. ``ok``,
        the counts, and the first broken row if any. Only for a role that reads every fact kind of the
        case's workflow (KAP: auditors, prescribers, therapists)."""
        require_reads(engine, actor, case_id, _every_kind, "verify audit")
        shape = audit_report_shape(engine.verify_audit(case_id))
        engine.record_access(actor, case_id, "audit")
        return shape

    @api.get("/cases/{case_id}/export", tags=["audit"], response_class=Response, responses={
        **PROBLEMS, 200: {"description": "The case's history with proofs, in the format asked for",
                          "content": {media: {} for media in MEDIA_TYPES.values()}}})
    def export(
        case_id: CaseId, actor: Acting,
        form: Annotated[ExportFormat, Query(
            alias="format",
            description="jsonl and fhir can be proven (kapflow audit prove); csv is for a spreadsheet; pdf is "
                        "for a records request (times in the practice's time zone; needs the pdf extra).")]
        = ExportFormat.JSONL,
        checkpoint: Annotated[int | None, Query(
            ge=1, description="Prove against the signed checkpoint of this size (default: the newest).")] = None,
    ) -> Response:
        """The case's history, each event with its audit-log position and inclusion proof against a signed
        checkpoint (events written after it are marked not yet covered). It holds the client's data: only
        for a role that reads every fact kind of the case's workflow (KAP: auditors, prescribers,
        therapists). 422 if no checkpoint has been signed yet."""
        require_reads(engine, actor, case_id, _every_kind, "export audit")
        export = engine.export_case(case_id, checkpoint_size=checkpoint)
        pdf = PdfView(engine.app.practice, engine.clock.now(), event_summary) if form is ExportFormat.PDF else None
        body = render_bytes(export, form, pdf)
        engine.record_access(actor, case_id, "export")
        filename = f"{case_id}-audit.{_SUFFIXES[form]}"
        return Response(body, media_type=MEDIA_TYPES[form],
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @api.get("/cases/{case_id}/accesses", tags=["audit"], responses=PROBLEMS)
    def accesses(
        case_id: CaseId, actor: Acting, since: datetime | None = None, until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[JSONObject]:
        """Who read this case, for whom and which view, in [since, until) (times with their zone, ISO 8601):
        "who looked at this case this month". For the roles that read every fact kind (auditors, clinicians);
        this read is logged too."""
        require_reads(engine, actor, case_id, _every_kind, "read the access log")
        found = [a.as_dict() for a in engine.accesses(case_id=case_id, since=since, until=until, limit=limit)]
        engine.record_access(actor, case_id, "accesses")
        return found

    return api
