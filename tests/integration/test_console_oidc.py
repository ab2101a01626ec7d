"""The console signs people in through a real OpenID provider (``oidc-provider-mock`` on 127.0.0.1) by the
authorization code flow with PKCE, driven with httpx as a browser would follow it: the console sends the
visitor to the provider, the provider's form signs a synthetic subject in, the callback opens a session in
the role of the token's ``kapflow_role`` claim. A tampered or missing state, the provider's refusal, a token
for another sign-in (nonce) or another audience, and a role no workflow names (or the worker's ``system``)
are each a 401 sign-in page that repeats no code, token or claim, and open no session. The provider is
wrapped to record what it was sent: it received the S256 challenge of the verifier the console sent at
the token endpoint, and the verifier never travelled in a URL. All data is synthetic."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import werkzeug.serving
from http_server import serving

with warnings.catch_warnings():  # authlib (under the mock) warns about its own deprecations when imported
    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock  # type: ignore[import-untyped]

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.http.app import create_app
from kapflow.http.console import oidc_sign_in
from kapflow.http.console.pages import ConsoleConfig, ConsoleOidc
from kapflow.http.console.rendering import Pages
from kapflow.http.identity import RequestAuthenticator
from kapflow.http.oidc import OidcSettings, OidcVerifier

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIENT_ID = "kapflow-console"
SECRET = "synthetic-console-secret"
SUBJECT = "synthetic-desk-person-0001"
LOGIN_COOKIE = oidc_sign_in.LOGIN_COOKIE
SESSION_COOKIE = "kapflow-session"


@dataclass
class Recorder:
    """The provider's WSGI app, with the query of each authorization request and the form of each token request."""

    app: Any
    authorize: list[dict[str, list[str]]] = field(default_factory=list)
    token: list[dict[str, list[str]]] = field(default_factory=list)
    token_basic_auth: list[bool] = field(default_factory=list)  # whether each token request sent Basic credentials

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize":
            self.authorize.append(parse_qs(environ.get("QUERY_STRING", "")))
        elif path == "/oauth2/token" and environ.get("REQUEST_METHOD") == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            self.token.append(parse_qs(body.decode()))
            self.token_basic_auth.append(environ.get("HTTP_AUTHORIZATION", "").startswith("Basic "))
        return self.app(environ, start_response)


@dataclass
class Provider:
    issuer: str
    recorder: Recorder


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    recorder = Recorder(oidc_provider_mock.app())
    server = werkzeug.serving.make_server("127.0.0.1", 0, recorder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Provider(f"http://127.0.0.1:{server.server_port}", recorder)
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@dataclass
class Console:
    url: str
    engine: Engine
    provider: Provider

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)


@contextmanager
def _console(url: str, provider: Provider, *, audience: str = CLIENT_ID,
             secret: str | None = SECRET) -> Iterator[Console]:
    engine = build_engine(url, settings=Settings())
    settings = ConsoleOidc(issuer=provider.issuer, client_id=CLIENT_ID, client_secret=secret)
    config = ConsoleConfig(oidc_name="the practice's sign-in", oidc=settings)
    if audience == CLIENT_ID:  # wired as ``kapflow serve`` wires it (kapflow.http.console.mount)
        app = create_app(engine, RequestAuthenticator(engine), console=config)
    else:  # the same console, but its client checks ID tokens for another audience
        app = create_app(engine, RequestAuthenticator(engine), console=replace(config, oidc=None))
        verifier = OidcVerifier(OidcSettings(issuer=provider.issuer, audience=audience, algorithms=("RS256",)))
        client = oidc_sign_in.ConsoleOidcClient(settings, verifier=verifier)
        app.include_router(oidc_sign_in.router(engine, _pages_of(engine), config, client))
    try:
        with serving(app) as served:
            yield Console(served, engine, provider)
    finally:
        engine.close()


def _pages_of(engine: Engine) -> Pages:
    clients = frozenset(wf.client_role for wf in engine.workflows.versions() if wf.client_role)
    return Pages(engine.app.practice, clients)


@pytest.fixture
def console(db_url: str, provider: Provider) -> Iterator[Console]:
    # On SQLite: the provider's flow is checked before anything is stored; a session's rows on PostgreSQL are
    # test_console_accounts' and test_console's (any_console).
    with _console(db_url, provider) as found:
        yield found


def set_claims(provider: Provider, subject: str, claims: dict[str, object]) -> None:
    answer = httpx.put(f"{provider.issuer}/users/{subject}", json=claims, timeout=10)
    assert answer.status_code < 300, answer.text


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _start(browser: httpx.Client) -> httpx.Response:
    started = browser.get("/console/sign-in/oidc")
    assert started.status_code == 303, started.text
    return started


def _at_provider(location: str, subject: str = SUBJECT, *, action: str | None = None) -> str:
    """Sign ``subject`` in on the provider's form; the callback address it sends the browser back to."""
    with httpx.Client(timeout=30, follow_redirects=False) as at_provider:
        assert at_provider.get(location).status_code == 200  # the provider's sign-in form
        data = {"sub": subject} | ({"action": action} if action else {})
        answer = at_provider.post(location, data=data)
        assert answer.status_code == 302, answer.text
        return str(answer.headers["location"])


def _assert_refused(answer: httpx.Response, browser: httpx.Client, console: Console, *secrets: str) -> str:
    assert answer.status_code == 401, answer.text
    assert 'id="sign-in-error"' in answer.text
    for secret in secrets:
        assert secret not in answer.text
    assert SESSION_COOKIE not in browser.cookies
    assert LOGIN_COOKIE not in browser.cookies  # the pending sign-in is used up, whatever its outcome
    attempts = console.engine.sign_in_attempts()
    assert not [a for a in attempts if str(a.outcome) == "ok"]
    assert [(a.name, str(a.outcome)) for a in attempts][-1:] == [("(openid)", "oidc_refused")]  # audited
    again = browser.get("/console/")
    assert again.status_code == 303 and again.headers["location"].startswith("/console/sign-in")
    return answer.text


def test_a_person_signs_in_through_the_provider_with_pkce(console: Console) -> None:
    set_claims(console.provider, SUBJECT, {"kapflow_role": "front_desk"})
    recorder = console.provider.recorder
    recorder.authorize.clear()
    recorder.token.clear()
    recorder.token_basic_auth.clear()
    with console.browser() as browser:
        started = _start(browser)
        cookie = started.headers["set-cookie"]
        assert cookie.startswith(f"{LOGIN_COOKIE}=") and "HttpOnly" in cookie and "Max-Age=600" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        location = started.headers["location"]
        assert location.startswith(f"{console.provider.issuer}/oauth2/authorize?")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID and query["scope"] == "openid"
        assert query["redirect_uri"] == f"{console.url}/console/sign-in/oidc/callback"
        assert query["code_challenge_method"] == "S256" and query["state"] and query["nonce"]
        assert "code_verifier" not in query

        back = _at_provider(location)
        assert back.startswith(f"{console.url}/console/sign-in/oidc/callback?")
        signed_in = browser.get(back)
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == "/console/"
        assert SESSION_COOKIE in browser.cookies and LOGIN_COOKIE not in browser.cookies
        session_cookie = next(c for c in signed_in.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
        assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie.replace("Strict", "strict")

        home = browser.get("/console/")
        assert home.status_code == 200, home.text
        assert SUBJECT in home.text and "front desk" in home.text

        session = console.engine.session(browser.cookies[SESSION_COOKIE])
        assert session is not None and (session.actor, session.role, session.via) == (SUBJECT, "front_desk", "oidc")
    assert [(a.name, str(a.outcome)) for a in console.engine.sign_in_attempts()] == [(SUBJECT, "ok")]

    # PKCE: the provider got the challenge, and the token request the verifier whose S256 hash it is
    [sent_authorize] = [q for q in recorder.authorize if "code_challenge" in q][:1]
    [sent_token] = recorder.token
    verifier = sent_token["code_verifier"][0]
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert sent_authorize["code_challenge"] == [expected]
    assert sent_token["grant_type"] == ["authorization_code"]
    assert sent_token["redirect_uri"] == [f"{console.url}/console/sign-in/oidc/callback"]
    assert verifier not in location and verifier not in back  # never in a URL
    assert "client_secret" not in sent_token and recorder.token_basic_auth == [True]  # client_secret_basic


def test_a_tampered_state_is_refused_and_opens_no_session(console: Console) -> None:
    set_claims(console.provider, SUBJECT, {"kapflow_role": "front_desk"})
    with console.browser() as browser:
        back = _at_provider(_start(browser).headers["location"])
        code = parse_qs(urlsplit(back).query)["code"][0]
        text = _assert_refused(browser.get(_with_query(back, state="forged-" + "x" * 40)), browser, console, code)
        assert "does not belong to the sign-in started here" in text


def test_a_callback_the_browser_did_not_start_is_refused(console: Console) -> None:
    set_claims(console.provider, SUBJECT, {"kapflow_role": "front_desk"})
    with console.browser() as starter:
        back = _at_provider(_start(starter).headers["location"])
    with console.browser() as victim:  # login CSRF: another browser is sent the attacker's callback
        text = _assert_refused(victim.get(back), victim, console, parse_qs(urlsplit(back).query)["code"][0])
        assert "started too long ago or in another browser" in text


def test_the_providers_refusal_is_a_401_sign_in_page(console: Console) -> None:
    with console.browser() as browser:
        back = _at_provider(_start(browser).headers["location"], action="deny")
        assert "error=access_denied" in back
        text = _assert_refused(browser.get(back), browser, console)
        assert "did not sign you in" in text and "access_denied" not in text


def test_a_token_for_another_sign_in_is_refused_by_its_nonce(console: Console) -> None:
    set_claims(console.provider, SUBJECT, {"kapflow_role": "front_desk"})
    with console.browser() as browser:
        location = _start(browser).headers["location"]
        back = _at_provider(_with_query(location, nonce="another-sign-ins-nonce-" + "n" * 30))
        text = _assert_refused(browser.get(back), browser, console, SUBJECT)
        assert "belongs to another sign-in" in text


def test_a_code_issued_to_another_client_is_refused(console: Console) -> None:
    set_claims(console.provider, SUBJECT, {"kapflow_role": "front_desk"})
    with console.browser() as browser:
        location = _start(browser).headers["location"]
        back = _at_provider(_with_query(location, client_id="another-client"))
        text = _assert_refused(browser.get(back), browser, console, SUBJECT)
        assert "could not be completed" in text


def test_an_id_token_for_another_audience_is_refused(db_url: str, provider: Provider) -> None:
    set_claims(provider, SUBJECT, {"kapflow_role": "front_desk"})
    with _console(db_url, provider, audience="another-audience") as console, console.browser() as browser:
        back = _at_provider(_start(browser).headers["location"])
        text = _assert_refused(browser.get(back), browser, console, SUBJECT)
        assert "could not be verified" in text


@pytest.mark.parametrize("role", ["janitor", "system"])
def test_a_role_no_workflow_names_and_the_workers_own_are_refused(console: Console, role: str) -> None:
    subject = f"synthetic-{role}-person-0002"
    set_claims(console.provider, subject, {"kapflow_role": role})
    with console.browser() as browser:
        back = _at_provider(_start(browser).headers["location"], subject)
        text = _assert_refused(browser.get(back), browser, console, subject)
        assert "no role this console knows" in text and f">{role}<" not in text


def test_a_public_client_sends_its_verifier_and_no_secret(db_url: str, provider: Provider) -> None:
    """Without a client secret the console authenticates with ``none`` (client_id in the body, PKCE alone).
    The mock provider takes confidential clients only, so it refuses the exchange: a 401 sign-in page."""
    set_claims(provider, SUBJECT, {"kapflow_role": "front_desk"})
    provider.recorder.token.clear()
    provider.recorder.token_basic_auth.clear()
    with _console(db_url, provider, secret=None) as console, console.browser() as browser:
        back = _at_provider(_start(browser).headers["location"])
        text = _assert_refused(browser.get(back), browser, console, parse_qs(urlsplit(back).query)["code"][0])
        assert "could not be completed" in text
    [sent] = provider.recorder.token
    assert sent["client_id"] == [CLIENT_ID] and "client_secret" not in sent and sent["code_verifier"]
    assert provider.recorder.token_basic_auth == [False]


def test_the_sign_in_page_offers_the_provider(console: Console) -> None:
    page = httpx.get(f"{console.url}/console/sign-in", timeout=30)
    assert page.status_code == 200 and 'href="/console/sign-in/oidc"' in page.text
