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
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from kapflow.app.engine import Engine
from kapflow.errors import KapflowError
from kapflow.http import appointments, audit, billing, cases, problems, reminders, workflows
from kapflow.http.common import PROBLEMS, Acting, Authenticator
from kapflow.http.console.mount import mount_console
from kapflow.http.console.pages import ConsoleConfig
from kapflow.logging import get_logger

_log = get_logger("kapflow.http")
API_VERSION = "1"
MAX_BODY_BYTES = 256 * 1024  # an intake form or a fact is a few kilobytes; more is a mistake or an attack

ROUTERS: tuple[Callable[[Engine], APIRouter], ...] = (
    cases.router, appointments.router, reminders.router, audit.router, workflows.router, billing.router,
)
"""The route modules under ``/v1``, each a function of the engine."""


_NO_TELEMETRY: TelemetryConfig = {
    "tracing": False, "metrics": False, "logs": False, "operation_spans": False, "auto_configure": False,
}
"""FastAPI's own OpenTelemetry, off: it would trace, measure and log every request (exception messages and stack
traces among them, which a database driver may fill with a stored value) through any provider the embedding
process configured, or an exporter its environment names. What the service says about a request is kapflow's
log line: the route template, the status, the actor, no PHI."""


def create_app(
    engine: Engine, authenticator: Authenticator, *, ready: Callable[[], None] | None = None,
    cors_origins: Sequence[str] = (), console: ConsoleConfig | None = None, requests_per_connection: int = 0,
) -> FastAPI:
    """The API over ``engine``; ``ready`` raises when the service should not take traffic (``/readyz``);
    ``cors_origins``: the browser origins allowed to call it (none: CORS off); ``console``: also serve the
    practice's web console under ``/console``; ``requests_per_connection``: answers on one kept-alive connection
    before the service closes it (0: never), so one of several server processes does not keep a client's
    connections (``SpreadConnections``)."""
    app = FastAPI(
        telemetry=_NO_TELEMETRY,
        title="kapflow", version=API_VERSION, openapi_url="/openapi.json", docs_url=None, redoc_url=None,
        description="The kapflow engine over HTTP: cases, facts, triggers and their audit history. Every "
                    "route under /v1 needs `Authorization: Bearer` with an API key or an OpenID Connect token.",
    )
    app.add_exception_handler(KapflowError, problems.kapflow_error)
    app.add_exception_handler(RequestValidationError, problems.invalid_request)
    app.add_exception_handler(StarletteHTTPException, problems.http_error)
    app.add_exception_handler(Exception, problems.internal_error)
    app.middleware("http")(_guarded)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    if requests_per_connection < 0:
        raise ValueError("requests_per_connection: at least one answer on a connection before it is closed, or 0")
    if requests_per_connection:
        app.add_middleware(SpreadConnections, every=requests_per_connection)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_credentials=False, max_age=600,
            allow_methods=["GET", "POST"], expose_headers=["ETag", "Location"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "Idempotency-Key", "Kapflow-On-Behalf-Of"],
        )
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

    @app.get("/v1/whoami", tags=["operations"], responses=PROBLEMS)
    def whoami(actor: Acting) -> dict[str, str | None]:
        """Who the credential acts as: the actor, the role and the service it came through. Reads nothing."""
        return {"actor": actor.id, "role": actor.role, "via": actor.via}

    for build in ROUTERS:
        app.include_router(build(engine))  # each under V1: its routes' paths (and log lines) carry the prefix
    if console is not None:
        mount_console(app, engine, console)
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
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.2f}"  # the server's own time, for clients and bench/
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"  # case data must not sit in a shared cache
    response.headers.setdefault("Referrer-Policy", "no-referrer")  # the console's pages set their own
    response.headers["X-Frame-Options"] = "DENY"
    route = getattr(request.scope.get("route"), "path", "(no route)")
    actor = getattr(request.state, "actor", None)
    _log.info("request", method=request.method, route=route, status=response.status_code,
              duration_ms=round(elapsed_ms, 2),
              actor=actor.id if actor else None, role=actor.role if actor else None, via=actor.via if actor else None)
    return response


class SpreadConnections:
    """Closes a kept-alive connection after ``every`` answers (the last one says ``Connection: close``), so the
    client's next connection goes to whichever of the server's processes accepts it: one that is idle, most often.

    A connection stays with the process that accepted it, and a client system holding a few (a practice-management
    system's pool) could keep one process busy while another idled. A client reconnects at the next request, at
    the cost of a connection (and a TLS handshake) every ``every`` requests. Connections are told apart by the
    client's address and port while open; the counts are a bounded cache (cleared when full: a connection then
    starts counting again).
    """

    _KEPT = 4096  # connections counted at most

    def __init__(self, app: Any, every: int) -> None:
        self.app = app
        self.every = every
        self._answered: dict[tuple[str, int], int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        if client is None:
            await self.app(scope, receive, send)
            return
        key = (str(client[0]), int(client[1]))
        answered = self._answered.pop(key, 0) + 1
        if answered < self.every:
            if len(self._answered) >= self._KEPT:
                self._answered.clear()
            self._answered[key] = answered
            await self.app(scope, receive, send)
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


class BodyLimit:
    """Counts a request's body as it arrives, so a chunked body (no Content-Length) is held to the limit too.

    Past the limit it answers 413 itself and stops the body there; whatever the application then makes of
    the cut-off body (FastAPI: a 400) is dropped, as the answer has been sent.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received, answered = 0, False

        async def counted() -> Any:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                received += len(message.get("body", b""))
                if received > self.limit:
                    answered = True
                    refusal = problems.problem(413, "request_too_large",
                                               f"a request body is at most {self.limit} bytes")
                    refusal.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
                    await refusal(scope, receive, send)
                    raise StarletteHTTPException(413, "request body over the limit")
            return message

        async def unless_answered(message: Any) -> None:
            if not answered:
                await send(message)

        await self.app(scope, counted, unless_answered)
