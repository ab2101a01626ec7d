"""The console's audit pages: where the audit log stands, verifying it, one case's audit, its exports.

Only a role that reads every fact kind of a workflow (on the KAP pathway: the auditor and the
clinicians) opens them, as only such a role may read a case's whole history through the API. A
case's audit page verifies its hash chain and its place in the signed log, shows who read the case
(the access log), and offers its history as CSV, JSON lines with inclusion proofs, and PDF. Each of
those reads is recorded in the access log in turn.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations when the router is built.
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from kapflow.app.engine import Engine
from kapflow.audit.export_formats import CaseExport, ExportFormat, PdfView, render, render_bytes
from kapflow.domain.payload import IDENTIFIER_PATTERN
from kapflow.errors import NotPermitted
from kapflow.http.console import session as sessions
from kapflow.http.console.pages import ConsoleConfig
from kapflow.http.console.rendering import PREFIX, Pages
from kapflow.http.console.session import Visitor
from kapflow.present import event_summary

RECENT = 50
"""Sign-in attempts and checkpoints shown on the audit page (the newest)."""

DOWNLOADS = {"csv": (ExportFormat.CSV, "text/csv; charset=utf-8"),
             "jsonl": (ExportFormat.JSONL, "application/x-ndjson")}

CaseIdPath = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$")]
Suffix = Annotated[str, Path(pattern="^(csv|jsonl|pdf)$")]


def router(engine: Engine, pages: Pages, config: ConsoleConfig) -> APIRouter:
    web = APIRouter(prefix=f"{PREFIX}/audit", include_in_schema=False)

    def auditor(request: Request) -> Visitor:
        found = sessions.visitor(engine, request, config.idle)
        request.state.actor = found.actor
        if found.role not in pages.audit_roles:
            raise NotPermitted(case_id="", trigger="audit", state="", role=found.role,
                               allowed=sorted(pages.audit_roles))
        return found

    Auditor = Annotated[Visitor, Depends(auditor)]  # noqa: N806 (a type, named as one)

    def case_auditor(visitor: Visitor, case_id: str) -> None:
        wf = engine.workflow_of(engine.case(case_id))
        if wf.readable(visitor.role) != frozenset(wf.facts):
            raise NotPermitted(case_id=case_id, trigger="audit", state="", role=visitor.role,
                               allowed=[r for r in sorted(wf.roles) if wf.readable(r) == frozenset(wf.facts)])

    @web.get("")
    def overview(request: Request, visitor: Auditor) -> Response:
        return pages.page(request, "audit.html", {
            "visitor": visitor, "active": "audit", "status": engine.audit_log_status(),
            "attempts": engine.sign_in_attempts(since=engine.clock.now() - timedelta(days=30))[-RECENT:][::-1],
            "report": None, "chains": None})

    @web.post("/verify")
    async def verify(request: Request, visitor: Auditor) -> Response:
        form = await request.form()
        sessions.check_csrf(request, form, visitor.csrf)
        verify_log: Callable[[], object] = config.verify_log or (lambda: engine.verify_log(None, None))
        report = await run_in_threadpool(verify_log)
        chains = await run_in_threadpool(engine.verify_audit)
        return pages.page(request, "audit.html", {
            "visitor": visitor, "active": "audit", "status": engine.audit_log_status(),
            "attempts": [], "report": report, "chains": chains})

    @web.get("/cases/{case_id}")
    def case_audit(request: Request, visitor: Auditor, case_id: CaseIdPath) -> Response:
        case_auditor(visitor, case_id)
        chain = engine.verify_audit(case_id)
        proof = config.prove_case(case_id) if config.prove_case else None
        readers = engine.accesses(case_id=case_id, since=engine.clock.now() - timedelta(days=90))
        engine.record_access(visitor.actor, case_id, "console.audit")
        return pages.page(request, "case_audit.html", {
            "visitor": visitor, "active": "audit", "case_id": case_id, "chain": chain, "proof": proof,
            "readers": readers[::-1], "status": engine.audit_log_status()})

    @web.get("/cases/{case_id}/history.{suffix}")
    def download(request: Request, visitor: Auditor, case_id: CaseIdPath, suffix: Suffix) -> Response:
        case_auditor(visitor, case_id)
        export = engine.export_case(case_id)
        if suffix == "pdf":
            body: bytes | str = pdf_export(engine, export)
            media = "application/pdf"
        else:
            form, media = DOWNLOADS[suffix]
            body = render(export, form)
        engine.record_access(visitor.actor, case_id, f"console.export.{suffix}")
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{case_id}-history.{suffix}"'})

    return web


def pdf_export(engine: Engine, export: CaseExport) -> bytes:
    """The case's history as a PDF for a records request, in the practice's time zone."""
    view = PdfView(engine.app.practice, engine.clock.now(), event_summary)
    return render_bytes(export, ExportFormat.PDF, view)
