"""The console's billing pages: one case's ledger, its superbills, and issuing one.

For the roles that read every kind of fact a ledger is made of (on the KAP pathway: billing, the front
desk, clinicians, auditors), staff only. Payments and adjustments are recorded with the case page's forms
(generated from the workflow's fact specifications, like every fact); here billing sees the ledger they
make, issues a superbill for a range of dates of service (every gap named at once when it cannot be
made), and downloads the superbills issued. Each read is recorded in the access log.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations when the router is built.
from datetime import date
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from kapflow.app.billing import estimate_kinds, ledger_kinds, superbill_kinds
from kapflow.app.engine import Engine
from kapflow.domain.payload import IDENTIFIER_PATTERN
from kapflow.errors import DocumentIncomplete, InvalidInput, NotPermitted
from kapflow.http.common import require_reads
from kapflow.http.console import session as sessions
from kapflow.http.console.pages import ConsoleConfig
from kapflow.http.console.rendering import PREFIX, Pages
from kapflow.http.console.session import Visitor
from kapflow.present import client_name

CaseIdPath = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$")]
Reference = Annotated[str, Path(pattern=r"^SB-[A-Z0-9]{1,16}-[0-9]{1,6}$")]
EstimateReference = Annotated[str, Path(pattern=r"^GFE-[A-Z0-9]{1,16}-[0-9]{1,6}$")]


def router(engine: Engine, pages: Pages, config: ConsoleConfig) -> APIRouter:
    web = APIRouter(prefix=f"{PREFIX}/cases", include_in_schema=False)

    def staff(request: Request) -> Visitor:
        found = sessions.visitor(engine, request, config.idle)
        request.state.actor = found.actor
        if found.role in pages.client_roles:
            raise NotPermitted(case_id="", trigger="billing", state="", role=found.role, allowed=[])
        return found

    Staff = Annotated[Visitor, Depends(staff)]  # noqa: N806 (a type, named as one)

    def anyone(request: Request) -> Visitor:
        found = sessions.visitor(engine, request, config.idle)
        request.state.actor = found.actor
        return found

    Anyone = Annotated[Visitor, Depends(anyone)]  # noqa: N806 (a type, named as one)

    def page(request: Request, visitor: Visitor, case_id: str, *, status: int = 200,
             missing: tuple[str, ...] = (), asked: tuple[str, str] = ("", "")) -> Response:
        case, wf = require_reads(engine, visitor.actor, case_id, ledger_kinds, "read the ledger")
        issues = wf.billing is not None and wf.billing.records is not None and visitor.role in wf.billing.issuers
        reads_superbills = wf.billing is not None and wf.billing.records is not None and superbill_kinds(
            wf) <= wf.readable(visitor.role)
        reads_estimates = wf.billing is not None and wf.billing.estimate is not None and estimate_kinds(
            wf) <= wf.readable(visitor.role)
        engine.record_access(visitor.actor, case_id, "console.billing")
        return pages.page(request, "billing.html", {
            "visitor": visitor, "case": case, "client": client_name(case, wf), "books": engine.ledger(case_id),
            "superbills": engine.superbills(case_id) if reads_superbills else None, "issues": issues,
            "estimates": engine.estimates(case_id) if reads_estimates else None,
            "missing": missing, "asked": asked, "notice": request.query_params.get("done"),
        }, status=status)

    @web.get("/{case_id}/billing")
    def billing(request: Request, visitor: Staff, case_id: CaseIdPath) -> Response:
        return page(request, visitor, case_id)

    @web.post("/{case_id}/superbills")
    async def issue(request: Request, visitor: Staff, case_id: CaseIdPath) -> Response:
        form = await request.form()
        sessions.check_csrf(request, form, visitor.csrf)
        asked = (str(form.get("first", "")), str(form.get("last", "")))
        missing: tuple[str, ...] = ()
        try:
            first, last = _day(asked[0], "first"), _day(asked[1], "last")
            issued = await run_in_threadpool(lambda: engine.issue_superbill(
                case_id, first=first, last=last, actor=visitor.actor))
        except DocumentIncomplete as incomplete:
            missing = incomplete.missing
        except InvalidInput as invalid:
            missing = (str(invalid),)
        if missing:
            return await run_in_threadpool(lambda: page(request, visitor, case_id, status=422, missing=missing,
                                                        asked=asked))
        done = quote(f"superbill {issued.record.reference} issued")
        return RedirectResponse(f"{PREFIX}/cases/{case_id}/billing?done={done}", status_code=303)

    @web.get("/{case_id}/superbills/{reference}.pdf")
    def download(visitor: Staff, case_id: CaseIdPath, reference: Reference) -> Response:
        require_reads(engine, visitor.actor, case_id, superbill_kinds, "read superbills")
        body = engine.document_pdf(engine.superbill(case_id, reference))
        engine.record_access(visitor.actor, case_id, "console.superbill")
        return Response(body, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{reference}.pdf"'})

    @web.get("/{case_id}/estimates/{reference}.pdf")
    def estimate(visitor: Anyone, case_id: CaseIdPath, reference: EstimateReference) -> Response:
        """A good faith estimate: for staff who read estimates, and for the case's own client."""
        if visitor.role in pages.client_roles and not engine.client_bound(case_id, visitor.actor.id):
            raise NotPermitted(case_id="", trigger="reach_case", state="", role=visitor.role, allowed=[])
        require_reads(engine, visitor.actor, case_id, estimate_kinds, "read estimates")
        body = engine.document_pdf(engine.estimate(case_id, reference, visitor.role))
        engine.record_access(visitor.actor, case_id, "console.estimate")
        return Response(body, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{reference}.pdf"'})

    return web


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name}: give a date (YYYY-MM-DD)", field=name) from None
