"""The console inside the API's application: its pages, its static files, and its own error pages.

The console is served by the same ``kapflow serve`` as the API and shares its engine, roles, read
filtering and access log. Under ``/console`` an error is a page, not a problem document: no session
sends the visitor to sign in, a refused form says nothing was changed, and a missing case or a role
that may not reach it are told in words that never repeat what was asked for.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from kapflow.app.engine import Engine
from kapflow.errors import KapflowError, NotPermitted, UnknownCase
from kapflow.http import problems
from kapflow.http.console import audit_pages, billing_pages
from kapflow.http.console import pages as console_pages
from kapflow.http.console.pages import ConsoleConfig
from kapflow.http.console.rendering import PREFIX, Pages
from kapflow.http.console.session import CsrfRefused, SignInNeeded, session_token
from kapflow.http.console.views import reads_everything
from kapflow.present import http_status


def mount_console(app: FastAPI, engine: Engine, config: ConsoleConfig) -> None:
    """Add the console's pages and static files to ``app``, and its error pages under ``/console``."""
    clients = frozenset(wf.client_role for wf in engine.workflows.versions() if wf.client_role)
    roles = {role for wf in engine.workflows.versions() for role in wf.roles}
    pages = Pages(engine.app.practice, clients, frozenset(r for r in roles if reads_everything(engine, r)))
    # follow_symlink: an editable install (strict mode) links the package's files from a build folder.
    static = StaticFiles(packages=[("kapflow.http.console", "static")], follow_symlink=True)
    app.mount(f"{PREFIX}/static", static, name="console-static")
    app.include_router(console_pages.router(engine, pages, config))
    if config.oidc is not None:  # sign-in through the practice's provider (authorization code with PKCE)
        from kapflow.http.console import oidc_sign_in  # authlib is loaded only by a console that uses it

        client = oidc_sign_in.ConsoleOidcClient(config.oidc)
        app.include_router(oidc_sign_in.router(engine, pages, config, client))
    app.include_router(audit_pages.router(engine, pages, config))
    app.include_router(billing_pages.router(engine, pages, config))

    async def sign_in_needed(request: Request, exc: Exception) -> Response:
        target = f"{PREFIX}/sign-in" + ("?expired=true" if session_token(request) else "")
        if request.headers.get("HX-Request") == "true":
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return _error(pages, request, 403, "Form refused",
                      "This form was out of date or came from another site, so nothing was changed. "
                      "Reload the page and try again.")

    async def kapflow_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX):
            return await problems.kapflow_error(request, exc)
        if isinstance(exc, UnknownCase) or (isinstance(exc, NotPermitted) and exc.trigger == "reach_case"):
            return _error(pages, request, 404, "Not found", "There is no case here that you may open.")
        if isinstance(exc, NotPermitted):
            return _error(pages, request, 403, "Not for your role", str(exc))
        return _error(pages, request, http_status(exc), "Not done", str(exc))

    async def invalid_request(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX):
            return await problems.invalid_request(request, exc)
        return _error(pages, request, 404, "Not found", "That address is not a page of the console.")

    app.add_exception_handler(SignInNeeded, sign_in_needed)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(KapflowError, kapflow_error)
    app.add_exception_handler(RequestValidationError, invalid_request)


def _error(pages: Pages, request: Request, status: int, title: str, message: str) -> Response:
    visitor: Any = None  # an error page draws no navigation: it may be shown to someone not signed in
    return pages.page(request, "error.html", {"title": title, "message": message, "visitor": visitor},
                      status=status)
