"""The HTTP API: the Engine's commands and queries under ``/v1``, identity first, errors as problem details.

Every route but ``/healthz`` and ``/readyz`` needs a credential (``Authorization: Bearer ...``: an API
key of the practice's systems, or an OpenID Connect token of its identity provider); the ``Actor``
comes from it (``kapflow.http.identity``), never from the request body. A case's ``ETag`` is its
version: ``If-Match`` on a write becomes the engine's ``expected_version``, so two people completing
the same step cannot both win; ``Idempotency-Key`` becomes the engine's key, so a retried request
answers with the first result. Every successful read of a case is recorded in the access log (who, for
whom, which case, which view, when), which the audit log's checkpoints cover; each role reads only
the fact kinds its workflow grants it. The OpenAPI document is served at ``/openapi.json`` and checked into
``docs/api/openapi.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Body, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor, Outcome, to_iso
from kapflow.errors import InvalidInput, KapflowError
from kapflow.http import problems
from kapflow.logging import get_logger
from kapflow.present import case_shape, verdict_shape

_log = get_logger("kapflow.http")
API_VERSION = "1"
MAX_BODY_BYTES = 256 * 1024  # an intake form or a fact is a few kilobytes; more is a mistake or an attack


class Authenticator(Protocol):
    """Turns a request's credential into the ``Actor`` it acts as (``Unauthenticated`` when it cannot)."""

    def actor(self, authorization: str | None, on_behalf_of: str | None) -> Actor: ...


JSONObject = dict[str, Any]
_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No credential, or one that does not verify (RFC 9457 problem details)", **_PROBLEM},
    403: {"description": "The caller's role may not do this (names the permission, never the data)", **_PROBLEM},
    404: {"description": "No such case", **_PROBLEM},
    409: {"description": "Refused: every blocker with its code and sentence, or a version conflict", **_PROBLEM},
    413: {"description": "The request body is over the size limit", **_PROBLEM},
    422: {"description": "Invalid input: which field, never its value", **_PROBLEM},
}


_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="An API key of a service (kfk_...) or an OpenID Connect token of the practice's "
                                 "identity provider.")


def _acting(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    kapflow_on_behalf_of: Annotated[str | None, Header(
        description="With a delegating API key: `user-id; role=ROLE`, the person the service acts for.")] = None,
) -> Actor:
    """The request's actor, from its verified credential (a 401 problem when there is none).

    The raw header is checked here, not FastAPI's parse of it, so a malformed one is told apart."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.actor(request.headers.get("authorization"), kapflow_on_behalf_of)


Acting = Annotated[Actor, Depends(_acting)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def create_app(engine: Engine, authenticator: Authenticator, *, ready: Callable[[], None] | None = None) -> FastAPI:
    """The API over ``engine``; ``ready`` raises when the service should not take traffic (``/readyz``)."""
    app = FastAPI(
        title="kapflow", version=API_VERSION, openapi_url="/openapi.json", docs_url=None, redoc_url=None,
        description="The kapflow engine over HTTP: cases, facts, triggers and their audit history. Every "
                    "route under /v1 needs `Authorization: Bearer` with an API key or an OpenID Connect token.",
    )
    app.add_exception_handler(KapflowError, problems.kapflow_error)
    app.add_exception_handler(RequestValidationError, problems.invalid_request)
    app.add_exception_handler(StarletteHTTPException, problems.http_error)
    app.add_exception_handler(Exception, problems.internal_error)
    app.middleware("http")(_guarded)

    app.state.authenticator = authenticator

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> dict[str, str]:
        """The database is reachable and its schema is this kapflow's newest (else 503)."""
        if ready is not None:
            ready()
        return {"status": "ready"}

    @app.post("/v1/cases", status_code=201, tags=["cases"], responses=_PROBLEMS)
    def open_case(
        actor: Acting, response: Response,
        intake: Annotated[JSONObject, Body(embed=True, description="The workflow's intake form.")],
        idempotency_key: IdempotencyKey = None, workflow: Annotated[str | None, Body(embed=True)] = None,
    ) -> JSONObject:
        """Open a case from its intake form (for KAP, the inquiry)."""
        outcome = engine.open_case(intake, actor=actor, idempotency_key=idempotency_key, workflow=workflow)
        response.headers["Location"] = f"/v1/cases/{outcome.case_id}"
        return _outcome(outcome, response)

    @app.get("/v1/cases/{case_id}", tags=["cases"], responses=_PROBLEMS)
    def read_case(case_id: str, actor: Acting, response: Response) -> JSONObject:
        """A case: its state, version and workflow. Its ``ETag`` is its version (send it as ``If-Match``).

        ``client`` (the name on the intake form) is null for a role that may not read the intake."""
        found = engine.case(case_id)
        wf = engine.workflow_of(found)
        response.headers["ETag"] = _etag(found.version)
        shape = case_shape(found, wf)
        if wf.intake_fact not in wf.readable(actor.role):
            shape["client"] = None
        engine.record_access(actor, case_id, "case")
        return shape

    @app.get("/v1/cases/{case_id}/facts", tags=["facts"], responses=_PROBLEMS)
    def read_facts(case_id: str, actor: Acting, kind: str | None = None) -> list[JSONObject]:
        """The case's facts, oldest first: only the kinds the caller's role may read (the minimum necessary
        its workflow declares: the front desk reads appointments and payments, not screenings or vitals)."""
        facts = [{"kind": f.kind, "at": to_iso(f.at), "by": f.by, "data": dict(f.data)}
                 for f in engine.readable_facts(case_id, actor.role, kind)]
        engine.record_access(actor, case_id, "facts")
        return facts

    @app.get("/v1/cases/{case_id}/history", tags=["cases"], responses=_PROBLEMS)
    def read_history(case_id: str, actor: Acting) -> list[JSONObject]:
        """Who did what, when, in which role: every event of the case. The data of an event about a fact
        kind the caller's role may not read is withheld (``{"withheld": kind}``), its blockers too."""
        events = [ev.as_dict() for ev in engine.readable_history(case_id, actor.role)]
        engine.record_access(actor, case_id, "history")
        return events

    @app.get("/v1/cases/{case_id}/triggers", tags=["triggers"], responses=_PROBLEMS)
    def available(case_id: str, actor: Acting) -> list[JSONObject]:
        """Every trigger leaving the case's state, each with whether it may fire now and every blocker."""
        verdicts = [verdict_shape(v) for v in engine.available(case_id, actor=actor)]
        engine.record_access(actor, case_id, "triggers")
        return verdicts

    @app.get("/v1/cases/{case_id}/triggers/{trigger}", tags=["triggers"], responses=_PROBLEMS)
    def check(case_id: str, trigger: str, actor: Acting) -> JSONObject:
        """Would ``trigger`` fire now? Every blocker, with its code and sentence. Writes nothing."""
        verdict = verdict_shape(engine.check(case_id, trigger, actor=actor))
        engine.record_access(actor, case_id, "check")
        return verdict

    @app.post("/v1/cases/{case_id}/triggers/{trigger}", tags=["triggers"], responses=_PROBLEMS)
    def fire(
        case_id: str, trigger: str, actor: Acting, response: Response, idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None, data: Annotated[JSONObject | None, Body(embed=True)] = None,
    ) -> JSONObject:
        """Fire ``trigger``: 200 with the new version, or 409 with every blocker (the refusal is audited)."""
        outcome = engine.fire(case_id, trigger, actor=actor, data=data, idempotency_key=idempotency_key,
                              expected_version=_expected(if_match))
        return _outcome(outcome, response)

    @app.post("/v1/cases/{case_id}/facts/{kind}", tags=["facts"], responses=_PROBLEMS)
    def record(
        case_id: str, kind: str, actor: Acting, response: Response,
        fact: Annotated[JSONObject, Body(description="The fact's fields.")],
        idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
    ) -> JSONObject:
        """Record a validated fact (a payment, vitals, consent, ...)."""
        outcome = engine.record(case_id, kind, fact, actor=actor, idempotency_key=idempotency_key,
                                expected_version=_expected(if_match))
        return _outcome(outcome, response)

    @app.get("/v1/cases", tags=["cases"], responses=_PROBLEMS)
    def list_cases(
        actor: Acting, state: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> JSONObject:
        """Cases, oldest first, optionally in one state."""
        found = engine.cases(state=state, limit=limit, offset=offset)
        return {"cases": [case_shape(c, engine.workflow_of(c)) for c in found], "limit": limit, "offset": offset}

    return app


async def _guarded(request: Request, call_next: Callable[[Request], Any]) -> Any:
    """Refuse a body past the size limit before reading it, set the security headers on every answer, and
    log one line per request: method, route template (never the raw path or query), status, duration."""
    started = time.perf_counter()
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        response: Any = problems.problem(413, "request_too_large",
                                         f"a request body is at most {MAX_BODY_BYTES} bytes")
    else:
        response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"  # case data must not sit in a shared cache
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    route = getattr(request.scope.get("route"), "path", "(no route)")
    _log.info("request", method=request.method, route=route, status=response.status_code,
              duration_ms=round((time.perf_counter() - started) * 1000, 2))
    return response


def _etag(version: int) -> str:
    return f'"{version}"'


def _expected(if_match: str | None) -> int | None:
    """``If-Match: "7"`` as the expected version 7; anything else is a clear 422, never a silent ignore."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidInput('If-Match must be a case\'s ETag, e.g. "7" (its version)', field="If-Match")
    return int(text)


def _outcome(outcome: Outcome, response: Response) -> JSONObject:
    response.headers["ETag"] = _etag(outcome.version)
    return outcome.as_dict()
