"""What every route of the API shares: the caller's identity, the headers it maps, problem responses.

Each route module (``kapflow.http.cases``, ...) builds an ``APIRouter`` over the engine from these, and
``kapflow.http.app`` puts them together. The actor comes from the verified credential only
(``Authenticator``, ``kapflow.http.identity``), never from a request's body.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Annotated, Any, Protocol

from fastapi import Depends, Header, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor, CaseRecord, Outcome
from kapflow.domain.identity import ON_BEHALF_OF_PATTERN
from kapflow.domain.payload import IDENTIFIER_PATTERN
from kapflow.domain.workflow import Workflow
from kapflow.errors import InvalidInput, NotPermitted

JSONObject = dict[str, Any]
V1 = "/v1"
"""The prefix of every route module's router."""
CASES = f"{V1}/cases"
"""The routes that reach cases: a client's credential reaches only the one bound to it."""


class Authenticator(Protocol):
    """Turns a request's credential into the ``Actor`` it acts as (``Unauthenticated`` when it cannot)."""

    def actor(
        self, authorization: str | None, on_behalf_of: str | None, *, case_id: str | None, case_route: bool,
    ) -> Actor: ...


_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No credential, or one that does not verify (RFC 9457 problem details)", **_PROBLEM},
    403: {"description": "The caller's role may not do this (names the permission, never the data)", **_PROBLEM},
    404: {"description": "No such case", **_PROBLEM},
    409: {"description": "Refused: every blocker with its code and sentence, or a version conflict", **_PROBLEM},
    413: {"description": "The request body is over the size limit", **_PROBLEM},
    422: {"description": "Invalid input: which field, never its value", **_PROBLEM},
}
"""The problem responses every ``/v1`` route may give, declared in the OpenAPI document."""

_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="An API key of a service (kfk_...) or an OpenID Connect token of the practice's "
                                 "identity provider.")


def _acting(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    kapflow_on_behalf_of: Annotated[str | None, Header(
        pattern=ON_BEHALF_OF_PATTERN,
        description="With a delegating API key: `user-id; role=ROLE`, the person the service acts for.")] = None,
) -> Actor:
    """The request's actor, from its verified credential (a 401 problem when there is none).

    The raw header is checked here, not FastAPI's parse of it, so a malformed one is told apart."""
    authenticator: Authenticator = request.app.state.authenticator
    route = str(getattr(request.scope.get("route"), "path", ""))
    actor = authenticator.actor(request.headers.get("authorization"), kapflow_on_behalf_of,
                                case_id=request.path_params.get("case_id"), case_route=route.startswith(CASES))
    request.state.actor = actor  # for the request's log line
    return actor


Acting = Annotated[Actor, Depends(_acting)]
CaseId = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$",
                             description="The case's id, e.g. case-0123456789abcdef.")]
Name = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$", description="A trigger, fact kind or appointment id.")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def etag(version: int) -> str:
    return f'"{version}"'


def expected(if_match: str | None) -> int | None:
    """``If-Match: "7"`` as the expected version 7; anything else is a clear 422, never a silent ignore."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidInput('If-Match must be a case\'s ETag, e.g. "7" (its version)', field="If-Match")
    return int(text)


def outcome_body(outcome: Outcome, response: Response) -> JSONObject:
    """A command's outcome, its new version as the ``ETag``."""
    response.headers["ETag"] = etag(outcome.version)
    return outcome.as_dict()


def require_reads(engine: Engine, actor: Actor, case_id: str, needs: Callable[[Workflow], Collection[str]],
                  what: str) -> tuple[CaseRecord, Workflow]:
    """The case and its workflow, when ``actor``'s role reads every fact kind ``needs`` names in it; else a
    ``NotPermitted`` (403) naming the roles that may (``UnknownCase``, 404, first)."""
    found = engine.case(case_id)
    wf = engine.workflow_of(found)
    kinds = set(needs(wf))
    if not kinds <= wf.readable(actor.role):
        allowed = [role for role in sorted(wf.roles) if kinds <= wf.readable(role)]
        raise NotPermitted(case_id=case_id, trigger=what, state=found.state, role=actor.role, allowed=allowed)
    return found, wf
