"""The console's pages from Jinja2 templates, with the headers every page carries.

Templates autoescape and fail on an undefined name, so a typo is an error in the tests, not an empty
cell on a page. Every page is sent with a Content-Security-Policy that allows scripts and styles from
the console's own static files only (no ``unsafe-inline``, no ``eval``): an injected ``<script>`` or
``style=`` does nothing even if escaping ever failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from kapflow.domain.billing import money_text
from kapflow.domain.calendar import PracticeCalendar
from kapflow.present import audit_problem_text, log_problem_text

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PREFIX = "/console"


class Pages:
    """Renders a template into a response with the console's security headers."""

    def __init__(self, calendar: PracticeCalendar, client_roles: frozenset[str] = frozenset(),
                 audit_roles: frozenset[str] = frozenset()) -> None:
        self.calendar = calendar
        self.client_roles = client_roles
        self.audit_roles = audit_roles  # the roles the audit pages are for (the navigation links them)
        self.env = Environment(
            loader=PackageLoader("kapflow.http.console", "templates"),
            autoescape=select_autoescape(["html", "svg"], default_for_string=True),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.env.globals.update(prefix=PREFIX, practice_zone=calendar.zone_name)
        self.env.filters.update(when=self.when, when_long=self.when_long, words=words, money=money_text,
                                audit_problem=audit_problem_text, log_problem=log_problem_text)

    def when(self, moment: datetime | None) -> str:
        """A time as staff read it: the practice's zone and clock style."""
        return "" if moment is None else self.calendar.time_text(moment)

    def when_long(self, moment: datetime | None) -> str:
        return "" if moment is None else self.calendar.long_text(moment)

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(name).render(**context)

    def page(self, request: Request, name: str, context: Mapping[str, Any], *, status: int = 200,
             headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """``name`` rendered for ``request``; an htmx request for a fragment gets the template's block only."""
        visitor = context.get("visitor")
        staff = visitor is not None and visitor.role not in self.client_roles
        audits = visitor is not None and visitor.role in self.audit_roles
        body = self.render(name, {"active": "", "visitor": None, **context, "staff": staff, "audits": audits,
                                  "request": request, "partial": _is_htmx(request)})
        response = HTMLResponse(body, status_code=status, headers=dict(headers or {}))
        secure_headers(response)
        return response


def secure_headers(response: Any) -> None:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    # The console's own forms then carry their Origin (checked beside the CSRF token); no other site learns
    # a console address (a case's id) from a link.
    response.headers["Referrer-Policy"] = "same-origin"


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-Boosted") != "true"


def words(code: str) -> str:
    """A code (``kap_session``, ``ready_for_kap``) in words: ``kap session``."""
    return code.replace("_", " ")
