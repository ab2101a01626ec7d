"""Who is using the console: a server-side session behind an HttpOnly cookie, and its CSRF token.

The cookie holds a random token only; the session (actor, role, how they signed in, its CSRF token,
when it was last used) lives in the database, hashed, so signing out or an idle timeout ends it on
every server at once. The cookie is ``HttpOnly`` and ``SameSite=Strict``, and ``Secure`` (with the
``__Host-`` prefix) except on a loopback address over plain HTTP, where a browser would not send a
Secure cookie back. Every form posts the session's CSRF token; a post whose token is missing or wrong,
or whose ``Origin`` is another site, is refused before anything is read from it or written.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor

SECURE_COOKIE = "__Host-kapflow-session"
LOOPBACK_COOKIE = "kapflow-session"
CSRF_FIELD = "csrf"
SIGN_IN_COOKIE = "kapflow-sign-in"  # the CSRF token of the sign-in form, before there is a session


class SignInNeeded(Exception):
    """No session, an ended one or one idle too long: the visitor is sent to sign in."""


class CsrfRefused(Exception):
    """A form came without the session's CSRF token, or from another site: nothing was read or written."""


@dataclass(frozen=True)
class Visitor:
    """A signed-in person: the actor their actions are audited as, and the token their forms must carry."""

    actor: Actor
    csrf: str
    via: str

    @property
    def role(self) -> str:
        return self.actor.role


def is_secure(request: Request) -> bool:
    """Whether cookies must be Secure: anything but plain HTTP to a loopback address."""
    if request.url.scheme == "https":
        return True
    host = request.client.host if request.client else ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def cookie_name(request: Request) -> str:
    return SECURE_COOKIE if is_secure(request) else LOOPBACK_COOKIE


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    secure = is_secure(request)
    if name == LOOPBACK_COOKIE and secure:
        name = SECURE_COOKIE
    response.set_cookie(name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict")


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=is_secure(request), httponly=True, samesite="strict")


def session_token(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request))


def visitor(engine: Engine, request: Request, idle: timedelta) -> Visitor:
    """The signed-in visitor of ``request`` (``SignInNeeded`` when there is none)."""
    token = session_token(request)
    found = engine.session(token, idle=idle) if token else None
    if found is None:
        raise SignInNeeded()
    return Visitor(Actor(found.actor, found.role), found.csrf, found.via)


def check_csrf(request: Request, form: Any, expected: str) -> None:
    """Refuse a post without ``expected`` as its CSRF token, or sent from another origin."""
    origin = request.headers.get("origin")
    # "null" is what a browser sends when a page's referrer policy hides its origin: the token decides then.
    if origin not in (None, "null") and origin != _own_origin(request):
        raise CsrfRefused()
    sent = form.get(CSRF_FIELD) if form is not None else None
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise CsrfRefused()


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
