"""The console's routes under ``/console``: sign-in, my work, cases, one case, its actions and forms, audit.

Reads are plain GETs that work without JavaScript; every write is a form POST carrying the session's
CSRF token, answered by a redirect back to the page (so a reload never posts twice), or by the page
again with the problem beside the field or the refusal's sentences beside the action. htmx (shipped
in ``static/``) only makes these requests without a full page load; the pages do not depend on it.
Each case page a person opens is recorded in the access log, as an API read is.
"""

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData as StarletteForm
from starlette.responses import RedirectResponse, Response

from kapflow.app.billing import estimate_kinds
from kapflow.app.engine import Engine
from kapflow.app.queries import CasePage
from kapflow.audit.log_verify import LogReport
from kapflow.audit.proof import ProofReport
from kapflow.domain.estimate import EstimateRecord
from kapflow.domain.payload import IDENTIFIER_PATTERN
from kapflow.errors import InvalidFact, InvalidInput, NotPermitted, Refused, Unauthenticated
from kapflow.http.console import session as sessions
from kapflow.http.console.forms import FormData, read_form
from kapflow.http.console.rendering import PREFIX, Pages
from kapflow.http.console.session import Visitor
from kapflow.http.console.views import case_view, reads_everything
from kapflow.present import client_name

CASES_PAGE = 50
_FILTERS = ("state", "workflow", "blocker", "appointment_on", "overdue")


@dataclass(frozen=True)
class ConsoleOidc:
    """The console as a client of the practice's OpenID provider (``kapflow.http.console.oidc_sign_in``).

    ``client_secret`` None: a public client (PKCE only). It is kept out of ``repr`` so it never reaches a log.
    """

    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    role_claim: str = "kapflow_role"


@dataclass(frozen=True)
class ConsoleConfig:
    """How the console signs people in and out."""

    idle: timedelta = timedelta(minutes=15)
    totp_roles: tuple[str, ...] = ()
    oidc_name: str | None = None  # the practice's provider, when the console signs in through one
    oidc: ConsoleOidc | None = None  # the console's client settings at that provider
    # Verifies the whole audit log, against the practice's checkpoint file when its settings name one.
    verify_log: Callable[[], LogReport] | None = None
    # Proves a case's events in the newest signed checkpoint of the practice's checkpoint file (None: no file).
    prove_case: Callable[[str], ProofReport] | None = None


def router(engine: Engine, pages: Pages, config: ConsoleConfig) -> APIRouter:
    web = APIRouter(prefix=PREFIX, include_in_schema=False)
    clients = frozenset(wf.client_role for wf in engine.workflows.versions() if wf.client_role)

    def signed_in(request: Request) -> Visitor:
        found = sessions.visitor(engine, request, config.idle)
        request.state.actor = found.actor  # for the request's log line
        return found

    Signed = Annotated[Visitor, Depends(signed_in)]  # noqa: N806 (a type, named as one)

    def reach(visitor: Visitor, case_id: str) -> None:
        """A client reaches only a case bound to it; any other case is refused as if it did not exist."""
        if visitor.role in clients and not engine.client_bound(case_id, visitor.actor.id):
            raise NotPermitted(case_id="", trigger="reach_case", state="", role=visitor.role, allowed=[])

    async def posted(request: Request, visitor: Visitor) -> StarletteForm:
        form = await request.form()
        sessions.check_csrf(request, form, visitor.csrf)
        return form

    # ------------------------------------------------------------------ sign-in

    @web.get("/sign-in")
    def sign_in_page(request: Request, expired: bool = False) -> Response:
        token = engine_token()
        response = pages.page(request, "sign_in.html", {
            "csrf": token, "error": "", "expired": expired, "name": "", "oidc": config.oidc_name,
            "totp_roles": config.totp_roles})
        sessions.set_cookie(request, response, sessions.SIGN_IN_COOKIE, token, max_age=3600)
        return response

    @web.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        sessions.check_csrf(request, form, request.cookies.get(sessions.SIGN_IN_COOKIE, ""))
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        code = str(form.get("totp", "")).strip() or None
        source = request.client.host if request.client else "unknown"
        try:
            token, _ = await run_in_threadpool(
                lambda: engine.sign_in(name, password, code, source=source, totp_required_roles=config.totp_roles))
        except Unauthenticated as exc:
            again = engine_token()
            response = pages.page(request, "sign_in.html", {
                "csrf": again, "error": str(exc), "expired": False, "name": name, "oidc": config.oidc_name,
                "totp_roles": config.totp_roles, "reason": exc.reason}, status=401)
            sessions.set_cookie(request, response, sessions.SIGN_IN_COOKIE, again, max_age=3600)
            return response
        signed = RedirectResponse(f"{PREFIX}/", status_code=303)
        sessions.set_cookie(request, signed, sessions.LOOPBACK_COOKIE, token)
        sessions.clear_cookie(request, signed, sessions.SIGN_IN_COOKIE)
        return signed

    @web.post("/sign-out")
    async def sign_out(request: Request, visitor: Signed) -> Response:
        await posted(request, visitor)
        token = sessions.session_token(request)
        if token:
            await run_in_threadpool(engine.sign_out, token)
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        sessions.clear_cookie(request, response, sessions.cookie_name(request))
        return response

    # ------------------------------------------------------------------ my work and cases

    @web.get("/")
    def my_work(request: Request, visitor: Signed) -> Response:
        if visitor.role in clients:
            return pages.page(request, "client_home.html", {"visitor": visitor, "cases": [
                {"id": case_id, "estimates": _client_estimates(engine, case_id, visitor.role)}
                for case_id in engine.client_cases(visitor.actor.id)]})
        waiting = engine.work(visitor.role, visitor.actor.id)
        status = engine.audit_log_status() if reads_everything(engine, visitor.role) else None
        return pages.page(request, "work.html", {"visitor": visitor, "waiting": waiting, "active": "work",
                                                 "status": status})

    @web.get("/cases")
    def case_list(
        request: Request, visitor: Signed, state: str | None = None, workflow: str | None = None,
        blocker: str | None = None, cursor: str | None = None, appointment_on: str | None = None,
        overdue: str | None = None, case: str | None = None,
    ) -> Response:
        if visitor.role in clients:
            raise NotPermitted(case_id="", trigger="list_cases", state="", role=visitor.role, allowed=[])
        if case and case.strip():  # "find a case by its id": straight to its page, which says if there is none
            found_id = case.strip()
            if not _IDENTIFIER.fullmatch(found_id):
                raise InvalidInput("case: a case's id looks like case-0123456789abcdef", field="case")
            return RedirectResponse(f"{PREFIX}/cases/{found_id}", status_code=303)
        filters: dict[str, str | None] = {
            "state": state or None, "workflow": workflow or None, "blocker": blocker or None,
            "appointment_on": appointment_on or None, "overdue": "true" if overdue == "true" else None}
        try:  # the form's date input sends YYYY-MM-DD (or nothing)
            day = date.fromisoformat(filters["appointment_on"]) if filters["appointment_on"] else None
        except ValueError:
            raise InvalidInput("appointment_on: must be a date (YYYY-MM-DD)", field="appointment_on") from None
        page = engine.case_page(cursor=cursor or None, limit=CASES_PAGE, state=filters["state"],
                                workflow=filters["workflow"], blocker=filters["blocker"], appointment_on=day,
                                overdue=filters["overdue"] is not None)
        return list_page(request, visitor, page, filters, None)

    @web.post("/cases/search")
    async def name_search(request: Request, visitor: Signed) -> Response:
        """Cases by their client's name: posted, so the name is in no URL (servers and browsers log those)."""
        form = await posted(request, visitor)
        if visitor.role in clients:
            raise NotPermitted(case_id="", trigger="list_cases", state="", role=visitor.role, allowed=[])
        name, cursor = str(form.get("name", "")), str(form.get("cursor", "")) or None

        def search() -> Response:
            engine.check_name_search(visitor.role)
            page = engine.case_page(cursor=cursor, limit=CASES_PAGE, name=name)
            return list_page(request, visitor, page, dict.fromkeys(_FILTERS), name)

        return await run_in_threadpool(search)

    def list_page(request: Request, visitor: Visitor, page: CasePage, filters: dict[str, str | None],
                  name: str | None) -> Response:
        rows = []
        for found in page.cases:
            wf = engine.workflow_of(found)
            rows.append({"case": found, "workflow": wf,
                         "client": client_name(found, wf) if wf.intake_fact in wf.readable(visitor.role) else None})
        counts = _state_counts(engine)
        workflows = sorted({wf.name for wf in engine.workflows.versions()})
        searches_names = all(wf.intake_fact in wf.readable(visitor.role) for wf in engine.workflows.versions())
        return pages.page(request, "cases.html", {"workflows": workflows,
            "visitor": visitor, "active": "cases", "rows": rows, "next_cursor": page.next_cursor, "filters": filters,
            "counts": counts, "states": sorted(counts), "query": _query(filters), "name": name,
            "searches_names": searches_names})

    @web.get("/cases/{case_id}")
    def case_page(request: Request, visitor: Signed, case_id: CaseIdPath) -> Response:
        reach(visitor, case_id)
        view = case_view(engine, case_id, visitor)
        engine.record_access(visitor.actor, case_id, "console.case")
        return pages.page(request, "case.html", {"visitor": visitor, "view": view, "error": None,
                                                 "notice": request.query_params.get("done")})

    @web.post("/cases/{case_id}/triggers/{trigger}")
    async def fire(request: Request, visitor: Signed, case_id: CaseIdPath, trigger: NamePath) -> Response:
        form = await posted(request, visitor)
        reach(visitor, case_id)
        wf = await run_in_threadpool(lambda: engine.workflow_of(engine.case(case_id)))
        transition = next((t for t in wf.transitions if t.trigger == trigger), None)
        data = {k: str(form.get(k, "")).strip() for k in (transition.requires if transition else ())}
        data = {k: v for k, v in data.items() if v}
        version = _version(form)
        return await _command(request, visitor, case_id, f"{trigger} done", lambda: engine.fire(
            case_id, trigger, actor=visitor.actor, data=data or None, expected_version=version))

    @web.post("/cases/{case_id}/facts/{kind}")
    async def record(request: Request, visitor: Signed, case_id: CaseIdPath, kind: NamePath) -> Response:
        form = await posted(request, visitor)
        reach(visitor, case_id)
        wf = await run_in_threadpool(lambda: engine.workflow_of(engine.case(case_id)))
        spec = wf.facts.get(kind)
        if spec is None:
            raise InvalidInput(f"{kind!r} is not a fact kind of this case's workflow", field="kind")
        values: FormData = {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form}
        read = read_form(spec.spec, values, pages.calendar)
        problems = read.problems or spec.spec.problems(read.data, engine.clock.now())
        if problems:
            return _invalid(request, visitor, case_id, kind, values, problems)
        version = _version(form)
        return await _command(request, visitor, case_id, f"{kind} recorded", lambda: engine.record(
            case_id, kind, read.data, actor=visitor.actor, expected_version=version), submitted=(kind, values))

    async def _command(
        request: Request, visitor: Visitor, case_id: str, notice: str, run: Callable[[], object],
        submitted: tuple[str, FormData] | None = None,
    ) -> Response:
        """Run a write; back to the case page (303), or the page again with why it was refused."""
        try:
            await run_in_threadpool(run)
        except InvalidFact as exc:
            assert submitted is not None
            return _invalid(request, visitor, case_id, submitted[0], submitted[1], [(str(exc.field), exc.reason)])
        except (Refused, InvalidInput) as exc:
            view = await run_in_threadpool(lambda: case_view(engine, case_id, visitor))
            return pages.page(request, "case.html", {"visitor": visitor, "view": view, "notice": None,
                                                     "error": _refusal(exc)}, status=409)
        return RedirectResponse(f"{PREFIX}/cases/{case_id}?done={quote(notice)}#top", status_code=303)

    def _invalid(request: Request, visitor: Visitor, case_id: str, kind: str, values: FormData,
                 problems: Any) -> Response:
        view = case_view(engine, case_id, visitor, submitted=(kind, values), problems=problems)
        return pages.page(request, "case.html", {"visitor": visitor, "view": view, "notice": None,
                                                 "error": None}, status=422)

    return web


_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
CaseIdPath = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$")]
NamePath = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$")]


def engine_token() -> str:
    """A random token for a form before there is a session (the sign-in form's CSRF token)."""
    return secrets.token_urlsafe(32)


def _version(form: StarletteForm) -> int | None:
    text = str(form.get("version", ""))
    return int(text) if text.isdigit() else None


def _refusal(exc: Exception) -> Mapping[str, Any]:
    """A refusal's blockers, as the engine told them to the visitor's role (``for_reader``, in the runner)."""
    return {"message": str(exc), "blockers": [(b.code, b.message) for b in getattr(exc, "blockers", ())]}


def _client_estimates(engine: Engine, case_id: str, role: str) -> list[EstimateRecord]:
    """The good faith estimates of a client's own case, when its workflow gives them and the role reads them."""
    wf = engine.workflow_of(engine.case(case_id))
    if wf.billing is None or wf.billing.estimate is None or wf.billing.records is None:
        return []
    return engine.estimates(case_id) if estimate_kinds(wf) <= wf.readable(role) else []


def _query(filters: Mapping[str, str | None]) -> str:
    return "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)


def _state_counts(engine: Engine) -> dict[str, int]:
    states = {s.name for wf in engine.workflows.versions() for s in wf.states}
    return {state: engine.count_cases(state=state) for state in sorted(states)}

