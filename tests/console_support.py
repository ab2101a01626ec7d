"""The console on a real uvicorn server, with local accounts for every role: for the console's tests.

Accounts and passwords are synthetic; every account shares one passphrase (``PASSWORD``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from http_server import serving

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor
from kapflow.http.app import create_app
from kapflow.http.console.pages import ConsoleConfig
from kapflow.http.identity import RequestAuthenticator

PASSWORD = "synthetic passphrase 0001"
ADMIN = Actor("admin-1", "front_desk")
ACCOUNTS = {
    "desk-1": "front_desk", "np-1": "prescriber", "therapist-1": "therapist", "billing-1": "billing",
    "auditor-1": "auditor", "client-1": "client",
}
"""Login name -> role: one local account per role of the KAP pathway."""

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    url: str
    engine: Engine

    def browser(self) -> httpx.Client:
        """A client that keeps cookies and does not follow redirects, as a test reads each answer."""
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def account(self, name: str) -> str:
        """``name``'s local account (one of ``ACCOUNTS``), made the first time it is asked for: hashing a
        passphrase is slow on purpose, so a test makes only the accounts it uses."""
        if not any(user.name == name for user in self.engine.list_users()):
            self.engine.add_user(name, ACCOUNTS[name], PASSWORD, totp=False, actor=ADMIN)
        return name

    @contextmanager
    def signed_in(self, name: str, password: str = PASSWORD, totp: str | None = None) -> Iterator[httpx.Client]:
        """A browser signed in as ``name``, closed when the block ends."""
        self.account(name)
        with self.browser() as client:
            answer = sign_in(client, name, password, totp)
            assert answer.status_code == 303, answer.text
            yield client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, name: str, password: str = PASSWORD, totp: str | None = None) -> httpx.Response:
    page = client.get("/console/sign-in")
    form = {"csrf": csrf_of(page.text), "name": name, "password": password}
    if totp:
        form["totp"] = totp
    return client.post("/console/sign-in", data=form)


def post_form(client: httpx.Client, page_path: str, action: str, data: dict[str, str | list[str]]) -> httpx.Response:
    """Post ``data`` to ``action`` with the CSRF token of the page at ``page_path``, as its form would."""
    token = csrf_of(client.get(page_path).text)
    return client.post(action, data={"csrf": token, **data})


@contextmanager
def console_serving(engine: Engine, config: ConsoleConfig | None = None) -> Iterator[Console]:
    app = create_app(engine, RequestAuthenticator(engine), ready=lambda: None, console=config or ConsoleConfig())
    with serving(app) as url:
        yield Console(url, engine)
