"""A real OpenID provider (``oidc-provider-mock``, a werkzeug server on 127.0.0.1) issues an id_token by the
authorization-code flow, and ``OidcVerifier`` accepts it through the provider's own discovery document and JWKS
over HTTP; a token the same provider issued for another client id, or one a tamperer retouched, is refused.

The mock's id_tokens carry no ``kid``, so this also covers matching a key without one. All data is synthetic."""

from __future__ import annotations

import base64
import json
import threading
import warnings
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import werkzeug.serving
from werkzeug.wrappers import Request, Response

with warnings.catch_warnings():  # authlib (under the mock) warns about its own deprecations when imported
    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock  # type: ignore[import-untyped]

from kapflow.errors import Unauthenticated
from kapflow.http.oidc import OidcSettings, OidcVerifier, http_fetch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIENT_ID = "kapflow-api"
REDIRECT_URI = "http://127.0.0.1/callback"
SUBJECT = "synthetic-clinician-0001"


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    """The provider on 127.0.0.1 (``run_server_in_thread`` binds "localhost", which may resolve to ::1)."""
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def id_token(issuer: str, *, client_id: str = CLIENT_ID, subject: str = SUBJECT) -> str:
    """Sign in as ``subject`` through the provider's consent form and return the id_token it issues."""
    with httpx.Client(base_url=issuer, timeout=10) as client:
        query = {
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
            "scope": "openid", "state": "state-1", "nonce": "nonce-1",
        }
        assert client.get("/oauth2/authorize", params=query).status_code == 200  # the consent/login form
        answer = client.post("/oauth2/authorize", params=query, data={"sub": subject})
        assert answer.status_code == 302, answer.text
        redirect = parse_qs(urlsplit(answer.headers["location"]).query)
        assert redirect["state"] == ["state-1"]
        tokens = client.post(
            "/oauth2/token",
            data={"grant_type": "authorization_code", "code": redirect["code"][0], "redirect_uri": REDIRECT_URI},
            auth=(client_id, "synthetic-secret"),
        )
        assert tokens.status_code == 200, tokens.text
        token = tokens.json()["id_token"]
        assert isinstance(token, str)
        return token


def set_claims(issuer: str, subject: str, claims: dict[str, object]) -> None:
    response = httpx.put(f"{issuer}/users/{subject}", json=claims, timeout=10)
    assert response.status_code < 300, response.text


def verifier(issuer: str) -> OidcVerifier:
    return OidcVerifier(OidcSettings(issuer=issuer, audience=CLIENT_ID, algorithms=("RS256",)))


def test_a_token_from_the_provider_verifies_over_http(issuer: str) -> None:
    set_claims(issuer, SUBJECT, {"kapflow_role": "clinician"})
    token = id_token(issuer)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert "kid" not in header  # the mock's id_tokens name no key: the verifier must match one itself
    identity = verifier(issuer).verify(token)
    assert (identity.subject, identity.role, identity.issuer) == (SUBJECT, "clinician", issuer)
    assert identity.claims["aud"] in (CLIENT_ID, [CLIENT_ID])


def test_a_token_for_another_client_is_refused(issuer: str) -> None:
    set_claims(issuer, SUBJECT, {"kapflow_role": "clinician"})
    token = id_token(issuer, client_id="another-client")
    with pytest.raises(Unauthenticated) as caught:
        verifier(issuer).verify(token)
    assert caught.value.reason == "wrong_audience"


def test_a_tampered_token_from_the_provider_is_refused(issuer: str) -> None:
    set_claims(issuer, SUBJECT, {"kapflow_role": "front_desk"})
    header, payload, signature = id_token(issuer).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["kapflow_role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated) as caught:
        verifier(issuer).verify(f"{header}.{forged}.{signature}")
    assert caught.value.reason == "bad_signature"


def test_a_user_without_a_role_is_refused(issuer: str) -> None:
    subject = "synthetic-no-role-0002"
    set_claims(issuer, subject, {"email": "no-role@example.test"})
    with pytest.raises(Unauthenticated) as caught:
        verifier(issuer).verify(id_token(issuer, subject=subject))
    assert caught.value.reason == "no_role"


def test_a_verifier_for_another_issuer_spelling_is_refused(issuer: str) -> None:
    """``localhost`` is the same machine but not the issuer the provider names: discovery must match exactly."""
    set_claims(issuer, SUBJECT, {"kapflow_role": "clinician"})
    token = id_token(issuer)
    other = OidcVerifier(OidcSettings(issuer=issuer + "/", audience=CLIENT_ID))
    with pytest.raises(Unauthenticated) as caught:
        other.verify(token)
    assert caught.value.reason == "provider_mismatch"


def test_an_unreachable_provider_is_refused_with_its_reason(issuer: str) -> None:
    token = id_token(issuer)
    with pytest.raises(Unauthenticated) as caught:
        OidcVerifier(OidcSettings(issuer="http://127.0.0.1:9", audience=CLIENT_ID)).verify(token)
    assert caught.value.reason == "provider_unreachable"


@Request.application
def _redirecting(request: Request) -> Response:
    """Same origin: /moved → /doc; another host (localhost is not 127.0.0.1 as an origin): /away → there."""
    port = request.host.rsplit(":", 1)[1]
    if request.path == "/moved":
        return Response(status=302, headers={"Location": "/doc"})
    if request.path == "/away":
        return Response(status=302, headers={"Location": f"http://localhost:{port}/doc"})
    return Response(json.dumps({"keys": []}), content_type="application/json")


def test_the_default_fetch_follows_redirects_on_its_own_origin_only() -> None:
    server = werkzeug.serving.make_server("127.0.0.1", 0, _redirecting, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert http_fetch(f"{base}/moved") == {"keys": []}
        with pytest.raises(Unauthenticated) as caught:
            http_fetch(f"{base}/away")
        assert caught.value.reason == "provider_unreachable"
        assert "another host" in caught.value.message
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
