"""Who a request acts as: from its verified credential, never from what it claims.

``Authorization: Bearer kfk_...`` is an API key of one of the practice's systems (``kapflow apikey
create``); with a ``Kapflow-On-Behalf-Of`` header a key allowed to delegate acts for one of its
users, in a role it was granted, and the audit event names both. Any other bearer token is an
OpenID Connect token of the practice's identity provider: its subject is the actor, its role claim
the role. A role no loaded workflow names (and the worker's own ``system``) is refused. A client
(a workflow's ``client_role``) reaches only a case the practice bound its identity to
(``kapflow.app.clients``): any other case, and every listing of cases, is refused with 403, whether
or not the case exists.
"""

from __future__ import annotations

from kapflow.app.api_keys import known_roles
from kapflow.app.engine import Engine
from kapflow.domain.case import Actor
from kapflow.domain.identity import KEY_PREFIX, ON_BEHALF_OF_HEADER
from kapflow.errors import InvalidInput, NotPermitted, Unauthenticated
from kapflow.http.oidc import OidcVerifier


class RequestAuthenticator:
    """API keys always; OpenID Connect tokens when the practice names its provider."""

    def __init__(self, engine: Engine, oidc: OidcVerifier | None = None) -> None:
        self._engine = engine
        self._oidc = oidc
        self._roles = frozenset(known_roles(engine.app))
        self._clients = frozenset(wf.client_role for wf in engine.workflows.versions() if wf.client_role is not None)

    def actor(
        self, authorization: str | None, on_behalf_of: str | None, *, case_id: str | None, case_route: bool,
    ) -> Actor:
        """The verified actor; a client only on a case bound to it (``case_route``: the route reads cases)."""
        found = self._verified(authorization, on_behalf_of)
        if found.role in self._clients and case_route and (
                case_id is None or not self._engine.client_bound(case_id, found.id)):
            raise NotPermitted(case_id="", trigger="reach_case", state="", role=found.role,
                               allowed=sorted(self._roles - self._clients))
        return found

    def _verified(self, authorization: str | None, on_behalf_of: str | None) -> Actor:
        credential = _bearer(authorization)
        if credential.startswith(KEY_PREFIX):
            return self._engine.api_key_actor(credential, on_behalf_of)
        if self._oidc is None:
            raise Unauthenticated("unknown_key", "this server takes API keys only (kfk_...): no OpenID provider "
                                                 "is configured ([serve] oidc_issuer)")
        if on_behalf_of is not None:
            raise InvalidInput(f"{ON_BEHALF_OF_HEADER} is for API keys of services; a person's token acts "
                               "for that person only", field=ON_BEHALF_OF_HEADER)
        identity = self._oidc.verify(credential)
        if identity.role not in self._roles:
            raise Unauthenticated("unknown_role", "the token's role is none the practice's workflows name: "
                                                  "fix the role claim at the identity provider")
        return Actor(identity.subject, identity.role)


def _bearer(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise Unauthenticated("missing", "send Authorization: Bearer <API key or OpenID Connect token>")
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("malformed", "the Authorization header must be 'Bearer <credential>'")
    return credential.strip()
