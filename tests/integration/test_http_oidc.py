"""OpenID Connect end to end over HTTP: the API verifies tokens of a real provider (``oidc-provider-mock`` on
127.0.0.1) through its discovery document and JWKS. A user whose ``kapflow_role`` is ``front_desk`` opens a
case (the audit history names the token's subject); forged or misfit tokens are 401 (expired, another
audience, a tampered payload, ``alg: none``, HS256 signed with the provider's public key, an unknown key
id); a role no workflow names is 401; the client role is 403. Nothing is written by a refused request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from http_server import serving
from integration.test_oidc_provider import (
    CLIENT_ID,
    id_token,
    issuer,  # noqa: F401 - a fixture
    set_claims,
)
from joserfc import jws
from joserfc.jwk import RSAKey
from support import INQUIRY

from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.http.oidc import OidcSettings, OidcVerifier

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DESK_USER = "synthetic-desk-user-0001"


@dataclass
class Served:
    url: str
    issuer: str
    engine: Any

    def post_case(self, token: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/cases", json={"intake": INQUIRY},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def served(db_url: str, issuer: str) -> Iterator[Served]:  # noqa: F811 - the imported fixture
    # On SQLite: a token is verified before the database is asked anything (the API keys' and the console's
    # sessions, which are stored, run on each backend in their own tests).
    engine = build_engine(db_url, settings=Settings())
    verifier = OidcVerifier(OidcSettings(issuer=issuer, audience=CLIENT_ID, algorithms=("RS256",)))
    try:
        with serving(create_app(engine, RequestAuthenticator(engine, verifier))) as url:
            yield Served(url, issuer, engine)
    finally:
        engine.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(header + "==")), json.loads(base64.urlsafe_b64decode(payload + "==")),
            signature)


def _assert_401(served: Served, token: str, *reasons: str) -> None:
    answer = served.post_case(token)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["reason"] in reasons, answer.json()
    assert token.split(".")[1] not in answer.text and DESK_USER not in answer.text
    assert served.engine.count_cases() == 0


def _desk_token(served: Served, role: str = "front_desk") -> str:
    set_claims(served.issuer, DESK_USER, {"kapflow_role": role})
    return id_token(served.issuer, subject=DESK_USER)


def test_a_front_desk_user_opens_a_case_and_the_audit_names_the_token_subject(served: Served) -> None:
    token = _desk_token(served)
    answer = served.post_case(token)
    assert answer.status_code == 201, answer.text
    case_id = answer.json()["case_id"]
    (opened,) = served.engine.history(case_id)
    assert (opened.actor, opened.role) == (DESK_USER, "front_desk")
    who = httpx.get(f"{served.url}/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert who.json() == {"actor": DESK_USER, "role": "front_desk", "via": None}


def test_a_token_for_another_client_id_is_401(served: Served) -> None:
    set_claims(served.issuer, DESK_USER, {"kapflow_role": "front_desk"})
    _assert_401(served, id_token(served.issuer, client_id="another-client", subject=DESK_USER), "wrong_audience")


def test_a_tampered_payload_is_401(served: Served) -> None:
    header, payload, signature = _desk_token(served, "billing").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["kapflow_role"] = "front_desk"
    _assert_401(served, f"{header}.{_b64(json.dumps(claims).encode())}.{signature}", "bad_signature")


def test_alg_none_is_401(served: Served) -> None:
    header, claims, _ = _parts(_desk_token(served))
    header["alg"] = "none"
    unsigned = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    _assert_401(served, unsigned + ".", "bad_algorithm", "malformed")
    _assert_401(served, unsigned + "." + _b64(b"sig"), "bad_algorithm")


def _provider_key(served: Served) -> dict[str, Any]:
    jwks_uri = httpx.get(f"{served.issuer}/.well-known/openid-configuration", timeout=10).json()["jwks_uri"]
    keys = httpx.get(jwks_uri, timeout=10).json()["keys"]
    assert keys
    return dict(keys[0])


def test_hs256_signed_with_the_providers_public_key_is_401(served: Served) -> None:
    """The classic forgery: HMAC with the provider's public key (its JWK text, or PEM) as the secret."""
    _, claims, _ = _parts(_desk_token(served))
    public = _provider_key(served)
    pem = RSAKey.import_key(public).as_pem(private=False)
    for secret in (pem, json.dumps(public).encode()):
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        _assert_401(served, f"{signing_input}.{_b64(signature)}", "bad_algorithm")


def _own_signed(claims: dict[str, Any], kid: str) -> str:
    key = RSAKey.generate_key(2048, {"kid": kid})
    return jws.serialize_compact({"alg": "RS256", "typ": "JWT", "kid": kid}, json.dumps(claims).encode(), key,
                                 algorithms=["RS256"])


def test_a_token_signed_by_an_unknown_key_id_is_401(served: Served) -> None:
    _, claims, _ = _parts(_desk_token(served))
    _assert_401(served, _own_signed(claims, "not-the-providers-key"), "unknown_key")


def test_an_expired_token_is_401(served: Served) -> None:
    """The provider's own token, presented after its ``exp`` (and the leeway): the API is served with a verifier
    whose clock reads that moment (re-signing an altered ``exp`` would need the provider's private key)."""
    token = _desk_token(served)
    _, claims, _ = _parts(token)
    later = OidcVerifier(OidcSettings(issuer=served.issuer, audience=CLIENT_ID, algorithms=("RS256",)),
                         clock=lambda: float(claims["exp"]) + 61)
    app = create_app(served.engine, RequestAuthenticator(served.engine, later))
    with serving(app) as url:
        answer = httpx.post(f"{url}/v1/cases", json={"intake": INQUIRY}, headers={"Authorization": f"Bearer {token}"},
                            timeout=30)
    assert answer.status_code == 401 and answer.json()["reason"] == "expired", answer.text
    assert served.engine.count_cases() == 0
    assert claims["exp"] > time.time()  # the same token is still good on the served API
    assert served.post_case(token).status_code == 201


@pytest.mark.parametrize("role", ["administrator", "system"])
def test_a_role_no_workflow_names_and_the_worker_s_own_are_401(served: Served, role: str) -> None:
    """Nobody acts as the worker (``system``) over the network, whatever the identity provider says."""
    _assert_401(served, _desk_token(served, role), "unknown_role")


def test_the_client_role_is_403(served: Served) -> None:
    answer = served.post_case(_desk_token(served, "client"))
    assert answer.status_code == 403 and answer.json()["role"] == "client", answer.text
    assert served.engine.count_cases() == 0
