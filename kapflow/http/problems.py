"""Errors as RFC 9457 problem details: the one place an exception becomes an HTTP response.

The status and the body come from ``kapflow.present`` (``http_status``, ``error_body``), so the API,
the CLI and the console say the same thing: a refused fire carries every blocker with its code and
sentence, a version conflict is 409, invalid data 422, a missing permission 403 naming the permission,
never the data. Nothing but kapflow's own structured attributes reaches a body: no traceback, no
exception text of a library, no protected health information.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kapflow.errors import KapflowError
from kapflow.logging import get_logger
from kapflow.present import error_body, http_status

PROBLEM_JSON = "application/problem+json"
_TYPE = "urn:kapflow:problem:"
_log = get_logger("kapflow.http")


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem details response: ``type`` names kapflow's stable code, ``detail`` says what to do."""
    body = {"type": f"{_TYPE}{code}", "title": code.replace("_", " "), "status": status, "detail": detail,
            "code": code, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="kapflow"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def kapflow_error(_request: Request, exc: Exception) -> JSONResponse:
    """A ``KapflowError``: its status and its structured attributes (blockers, field, reason, ...)."""
    assert isinstance(exc, KapflowError)
    body = error_body(exc)
    code = str(body.pop("code", exc.code))
    detail = str(body.pop("message", "")) or str(exc)
    return problem(http_status(exc), code, detail, **body)


async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """A request FastAPI could not parse: where it was wrong, never the value sent (it may be PHI)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": str(e.get("msg", ""))}
              for e in exc.errors()]
    return problem(422, "invalid_input", "the request does not have the expected shape; see errors", errors=errors)


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own (unknown route, method not allowed) as problem details too."""
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code, "http_error")
    return problem(exc.status_code, code, str(exc.detail))


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything else is a bug: logged by type and route only, answered with a fixed sentence."""
    route = getattr(request.scope.get("route"), "path", "?")
    _log.error("request_failed", route=route, error=type(exc).__name__)
    return problem(500, "internal_error", "the server failed; this is a bug in kapflow, it has been logged")
