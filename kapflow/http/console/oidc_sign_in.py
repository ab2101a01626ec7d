"""Signing in to the console through the practice's OpenID provider: the authorization code flow with PKCE.

``GET /console/sign-in/oidc`` makes a fresh ``state``, ``nonce`` and PKCE ``code_verifier`` and sends the
browser (303) to the provider's authorization endpoint (from its discovery document) with the verifier's
S256 challenge. The provider sends the browser back to ``GET /console/sign-in/oidc/callback`` with a
``code`` and the ``state``; the console checks the state, exchanges the code at the token endpoint with
the verifier (and its client secret, when it has one: ``client_secret_basic`` or ``client_secret_post``,
whichever the provider offers), verifies the ID token with the API's own verifier
(``kapflow.http.oidc.OidcVerifier``: signature, issuer, audience = the console's client id, lifetime),
checks its ``nonce``, and opens a console session for its subject in the role of the configured claim.
A role no loaded workflow names, and the worker's own ``system``, are refused as the API refuses them.

Where the pending sign-in is kept: in one short-lived cookie (10 minutes, ``HttpOnly``, ``SameSite=Lax``
because the provider brings the browser back cross-site with a GET; ``Secure`` with the ``__Host-``
prefix except on a loopback address over plain HTTP), holding ``state``, ``nonce`` and the verifier. It
is not signed, on purpose: nothing in it is a claim the server trusts. The state is checked by comparing
the cookie with the query (constant time), so a callback the visitor's own browser did not start is
refused (login CSRF); the verifier only has to stay out of URLs, and a visitor who edits their own
cookie can only make their own sign-in fail (the provider holds the challenge; the token carries the
nonce the provider was given). The ``__Host-`` prefix keeps a sibling subdomain from planting the
cookie. This needs no signing key shared by several server workers and no table: any worker finishes
a sign-in any other started. The cookie is cleared when the callback is answered, whatever the outcome.

Every refusal (the provider's error, a missing or mismatched state, a failed exchange, a token that does
not verify, a wrong nonce, an unknown role) shows the sign-in page with a sentence and status 401; no
page or log line repeats a code, a token or a claim's value (the log names the reason only). The
engine has no way yet to record a refused OpenID sign-in in ``sign_in_attempts`` (``kapflow.app.accounts``
records local refusals only, through a private function, with outcomes for passwords and TOTP), so a
refusal is logged as ``console_oidc_refused`` with its reason (``error_code``) and a stable code of
what failed (``error``, e.g. ``wrong_audience``), never a value; a successful one is recorded (``ok``) by
``Engine.open_session``.

This is the only module of kapflow that imports authlib: the PKCE challenge, the authorization URL, the
token request's body and the client's authentication at the token endpoint come from it.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from authlib.oauth2.auth import ClientAuth  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from kapflow.app.api_keys import known_roles
from kapflow.app.engine import Engine
from kapflow.errors import InvalidInput, Unauthenticated
from kapflow.http.console import session as sessions
from kapflow.http.console.pages import ConsoleConfig, ConsoleOidc, engine_token
from kapflow.http.console.rendering import PREFIX, Pages
from kapflow.http.oidc import OidcSettings, OidcVerifier, TokenIdentity
from kapflow.logging import get_logger

__all__ = ["LOGIN_COOKIE", "ConsoleOidcClient", "PendingLogin", "SignInRefused", "router"]

_log = get_logger("kapflow.http")

LOGIN_COOKIE = "kapflow-oidc"  # on loopback over plain HTTP; elsewhere "__Host-kapflow-oidc"
SECURE_LOGIN_COOKIE = "__Host-kapflow-oidc"
LOGIN_SECONDS = 600  # a sign-in started longer ago than this is refused: start again
VIA_OIDC = "oidc"
TIMEOUT_SECONDS = 10.0
MAX_PARAM_CHARS = 4096  # a code or state longer than this is refused before anything else
MAX_TOKEN_RESPONSE_BYTES = 1_000_000
_PART = re.compile(r"[A-Za-z0-9_-]{43,128}")

# What the visitor reads for each refusal: a sentence, never a value from the request or the provider.
MESSAGES: Mapping[str, str] = {
    "expired": "This sign-in was started too long ago or in another browser, so it was refused. "
               "Start again with the button below.",
    "state": "This answer from the identity provider does not belong to the sign-in started here, "
             "so it was refused. Start again with the button below.",
    "provider_error": "The identity provider did not sign you in. Try again, or sign in with your account.",
    "no_code": "The identity provider's answer was incomplete, so you were not signed in. Start again.",
    "exchange": "The sign-in could not be completed with the identity provider. Try again in a moment.",
    "token": "The identity provider's answer could not be verified, so you were not signed in. Start again.",
    "nonce": "The identity provider's answer belongs to another sign-in, so it was refused. Start again.",
    "role": "Your account at the identity provider has no role this console knows. Ask the practice's "
            "administrator to give it one.",
    "account": "Your account at the identity provider cannot be used here. Ask the practice's administrator.",
    "unreachable": "The identity provider cannot be reached right now. Try again in a moment, or sign in "
                   "with your account.",
}


class SignInRefused(Exception):
    """A sign-in through the provider that is refused; ``reason`` is a key of ``MESSAGES``."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail  # a stable code from the verifier (``wrong_audience``), for the log only

    @property
    def message(self) -> str:
        return MESSAGES[self.reason]


@dataclass(frozen=True)
class PendingLogin:
    """A sign-in sent to the provider and not answered yet: what its login cookie holds."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> PendingLogin:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48))

    def cookie(self) -> str:
        return f"{self.state}.{self.nonce}.{self.verifier}"

    @classmethod
    def from_cookie(cls, value: str | None) -> PendingLogin | None:
        parts = (value or "").split(".")
        if len(parts) != 3 or not all(_PART.fullmatch(part) for part in parts):
            return None
        return cls(*parts)


class ConsoleOidcClient:
    """The console as a client of the practice's provider; safe to share between request threads.

    ``verifier`` checks ID tokens (the default: the provider's ``OidcVerifier`` with the client id as its
    audience and the configured role claim); tests pass another to see a misfit token refused.
    """

    def __init__(self, settings: ConsoleOidc, *, verifier: OidcVerifier | None = None) -> None:
        self.settings = settings
        self.verifier = verifier if verifier is not None else OidcVerifier(OidcSettings(
            issuer=settings.issuer, audience=settings.client_id, role_claim=settings.role_claim))

    def authorization_url(self, pending: PendingLogin, redirect_uri: str) -> str:
        """Where to send the browser: the provider's authorization endpoint with the S256 challenge."""
        try:
            endpoint = self.verifier.endpoints().authorization
        except Unauthenticated as exc:
            raise SignInRefused("unreachable", exc.reason) from None
        url: str = prepare_grant_uri(
            endpoint, client_id=self.settings.client_id, response_type="code", redirect_uri=redirect_uri,
            scope="openid", state=pending.state, nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.verifier), code_challenge_method="S256")
        return url

    def finish(self, pending: PendingLogin, redirect_uri: str, code: str) -> TokenIdentity:
        """The verified identity of the ID token the code is exchanged for (``SignInRefused`` if none)."""
        id_token = self._exchange(pending, redirect_uri, code)
        try:
            identity = self.verifier.verify(id_token)
        except Unauthenticated as exc:
            raise SignInRefused("token", exc.reason) from None
        nonce = identity.claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
            raise SignInRefused("nonce")
        party = identity.claims.get("azp")
        if party is not None and party != self.settings.client_id:
            raise SignInRefused("token", "wrong_authorized_party")
        return identity

    def _exchange(self, pending: PendingLogin, redirect_uri: str, code: str) -> str:
        """POST the code and the verifier to the token endpoint; the ID token it answers with."""
        try:
            endpoints = self.verifier.endpoints()
        except Unauthenticated as exc:
            raise SignInRefused("exchange", exc.reason) from None
        body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri,
                                     code_verifier=pending.verifier)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        auth = ClientAuth(self.settings.client_id, self.settings.client_secret,
                          _auth_method(self.settings.client_secret, endpoints.token_auth_methods))
        url, headers, body = auth.prepare("POST", endpoints.token, headers, body)
        try:
            with httpx.Client(timeout=TIMEOUT_SECONDS, verify=True, follow_redirects=False) as client:
                answer = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SignInRefused("exchange", type(exc).__name__) from None
        if answer.status_code != 200 or len(answer.content) > MAX_TOKEN_RESPONSE_BYTES:
            raise SignInRefused("exchange", f"status_{answer.status_code}")
        try:
            document = answer.json()
        except ValueError:
            raise SignInRefused("exchange", "not_json") from None
        id_token = document.get("id_token") if isinstance(document, dict) else None
        if not isinstance(id_token, str):
            raise SignInRefused("exchange", "no_id_token")
        return id_token


def _auth_method(secret: str | None, offered: tuple[str, ...]) -> str:
    """How the client authenticates at the token endpoint: none for a public client, else what is offered."""
    if secret is None:
        return "none"
    return "client_secret_post" if "client_secret_basic" not in offered and "client_secret_post" in offered \
        else "client_secret_basic"


def router(engine: Engine, pages: Pages, config: ConsoleConfig, client: ConsoleOidcClient) -> APIRouter:
    web = APIRouter(prefix=PREFIX, include_in_schema=False)
    roles = frozenset(known_roles(engine.app))

    def refused(request: Request, exc: SignInRefused) -> Response:
        _log.info("console_oidc_refused", error_code=exc.reason, error=exc.detail)
        if exc.reason != "unreachable":  # the provider down is no attempt of anyone's
            engine.record_oidc_refusal(request.client.host if request.client else None)
        csrf = engine_token()
        response = pages.page(request, "sign_in.html", {
            "csrf": csrf, "error": exc.message, "expired": False, "name": "", "oidc": config.oidc_name,
            "totp_roles": config.totp_roles, "reason": exc.reason},
            status=503 if exc.reason == "unreachable" else 401)
        sessions.set_cookie(request, response, sessions.SIGN_IN_COOKIE, csrf, max_age=3600)
        _clear_login_cookie(request, response)
        return response

    @web.get("/sign-in/oidc")
    def start(request: Request) -> Response:
        pending = PendingLogin.new()
        try:
            target = client.authorization_url(pending, _callback_url(request))
        except SignInRefused as exc:
            return refused(request, exc)
        response = RedirectResponse(target, status_code=303)
        secure = sessions.is_secure(request)
        response.set_cookie(SECURE_LOGIN_COOKIE if secure else LOGIN_COOKIE, pending.cookie(),
                            max_age=LOGIN_SECONDS, path="/", secure=secure, httponly=True, samesite="lax")
        response.headers["Cache-Control"] = "no-store"
        return response

    @web.get("/sign-in/oidc/callback", name="console_oidc_callback")
    def callback(request: Request) -> Response:
        try:
            identity = _identity(request)
            if identity.role not in roles:
                raise SignInRefused("role")
            source = request.client.host if request.client else None
            try:
                token, _ = engine.open_session(identity.subject, identity.role, via=VIA_OIDC, source=source)
            except InvalidInput as exc:  # a subject kapflow cannot take as an actor id
                raise SignInRefused("account", exc.field) from None
        except SignInRefused as exc:
            return refused(request, exc)
        _log.info("console_oidc_signed_in")
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        sessions.set_cookie(request, response, sessions.LOOPBACK_COOKIE, token)
        sessions.clear_cookie(request, response, sessions.SIGN_IN_COOKIE)
        _clear_login_cookie(request, response)
        return response

    def _identity(request: Request) -> TokenIdentity:
        pending = PendingLogin.from_cookie(request.cookies.get(_login_cookie_name(request)))
        if pending is None:
            raise SignInRefused("expired")
        query = request.query_params
        if "error" in query:  # refused either way; some providers leave the state off their error answer
            raise SignInRefused("provider_error")
        state = query.get("state", "")
        if not state or len(state) > MAX_PARAM_CHARS or not hmac.compare_digest(
                state.encode(), pending.state.encode()):
            raise SignInRefused("state")
        code = query.get("code", "")
        if not code or len(code) > MAX_PARAM_CHARS:
            raise SignInRefused("no_code")
        return client.finish(pending, _callback_url(request), code)

    return web


def _callback_url(request: Request) -> str:
    """The console's own callback address as the browser reaches it (the same for the request and the exchange)."""
    return str(request.url_for("console_oidc_callback"))


def _login_cookie_name(request: Request) -> str:
    return SECURE_LOGIN_COOKIE if sessions.is_secure(request) else LOGIN_COOKIE


def _clear_login_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(_login_cookie_name(request), path="/", secure=sessions.is_secure(request),
                           httponly=True, samesite="lax")
