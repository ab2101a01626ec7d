"""OpenID Connect bearer tokens: tokens signed here with our own RSA, EC and Ed25519 keys pass; every kind of
forgery or misfit (expired, not yet valid, wrong issuer or audience, ``alg: none``, HS256 signed with the public
key, an unknown key id, a tampered payload) is refused with its own reason; keys rotate with one rate-limited
refresh; settings refuse ``none``/HMAC and plain http to other hosts. All data is synthetic."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from kapflow.errors import ConfigError, Unauthenticated
from kapflow.http.oidc import MIN_REFRESH_SECONDS, OidcSettings, OidcVerifier, TokenIdentity

ISSUER = "https://idp.example.test/realms/practice"
AUDIENCE = "kapflow-api"
NOW = 1_800_000_000.0
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"
JWKS_URI = f"{ISSUER}/protocol/openid-connect/certs"

RSA = RSAKey.generate_key(2048, {"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", {"kid": "ec-1"})
ED = OKPKey.generate_key("Ed25519", {"kid": "ed-1"})
ALG = {"rsa-1": "RS256", "ec-1": "ES256", "ed-1": "EdDSA"}
KEYS = {"rsa-1": RSA, "ec-1": EC, "ed-1": ED}


class Provider:
    """A fake identity provider: the discovery document and a JWKS that can rotate; counts what was fetched."""

    def __init__(self, *keys: Any) -> None:
        self.keys = list(keys)
        self.fetched: list[str] = []
        self.down = False
        self.discovery: dict[str, Any] = {"issuer": ISSUER, "jwks_uri": JWKS_URI}

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.fetched.append(url)
        if self.down:
            raise OSError("connection refused")
        if url == DISCOVERY:
            return self.discovery
        if url == JWKS_URI:
            return {"keys": [key.as_dict(private=False) for key in self.keys]}
        raise AssertionError(f"unexpected URL {url}")

    def jwks_reads(self) -> int:
        return self.fetched.count(JWKS_URI)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-0001", "exp": NOW + 300, "iat": NOW - 10, "nbf": NOW - 10,
        "kapflow_role": "clinician",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(payload: Mapping[str, Any], key: Any = RSA, alg: str | None = None, *, kid: str | None = "same") -> str:
    algorithm = alg or ALG[key.kid]
    header: dict[str, Any] = {"alg": algorithm, "typ": "JWT"}
    if kid == "same":
        header["kid"] = key.kid
    elif kid is not None:
        header["kid"] = kid
    with warnings.catch_warnings():  # joserfc warns on "EdDSA" (RFC 9864 prefers "Ed25519"); providers still use it
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(header, json.dumps(payload).encode(), key, algorithms=[algorithm])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


def make(*keys: Any, settings: OidcSettings | None = None) -> tuple[OidcVerifier, Provider, Clock]:
    provider, clock = Provider(*(keys or (RSA, EC, ED))), Clock()
    verifier = OidcVerifier(settings or OidcSettings(issuer=ISSUER, audience=AUDIENCE), fetch=provider, clock=clock)
    return verifier, provider, clock


def refused(verifier: OidcVerifier, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(token)
    error = caught.value
    assert error.as_dict()["error"] == "unauthenticated"
    assert all(part not in error.message for part in token.split(".") if len(part) >= 8)
    assert "user-0001" not in error.message and "clinician" not in error.message
    return error


# --- tokens that pass ---


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
def test_a_valid_token_of_each_key_type_passes(key: Any) -> None:
    verifier, _, _ = make()
    identity = verifier.verify(sign(claims(), key))
    assert identity == TokenIdentity(
        subject="user-0001", role="clinician", issuer=ISSUER, claims=claims()
    )


def test_ps256_passes_and_the_audience_may_be_a_list() -> None:
    verifier, _, _ = make()
    token = sign(claims(aud=["other-api", AUDIENCE]), RSA, "PS256")
    assert verifier.verify(token).subject == "user-0001"


def test_the_role_claim_is_configurable_and_a_one_role_list_is_that_role() -> None:
    verifier, _, _ = make(settings=OidcSettings(issuer=ISSUER, audience=AUDIENCE, role_claim="roles"))
    assert verifier.verify(sign(claims(roles=["front_desk"]))).role == "front_desk"
    assert verifier.verify(sign(claims(roles="billing"))).role == "billing"


def test_a_token_without_kid_is_matched_against_every_key() -> None:
    verifier, _, _ = make()
    assert verifier.verify(sign(claims(), EC, kid=None)).role == "clinician"


def test_small_clock_skew_is_tolerated() -> None:
    verifier, _, _ = make()
    assert verifier.verify(sign(claims(exp=NOW - 30, nbf=NOW + 30, iat=NOW + 30))).subject == "user-0001"


def test_keys_are_cached_between_tokens() -> None:
    verifier, provider, _ = make()
    for _ in range(5):
        verifier.verify(sign(claims()))
    assert provider.fetched == [DISCOVERY, JWKS_URI]


# --- refusals, each with its reason ---


def test_an_expired_token_is_refused() -> None:
    verifier, _, _ = make()
    assert refused(verifier, sign(claims(exp=NOW - 61))).reason == "expired"


def test_a_token_without_expiry_is_refused() -> None:
    verifier, _, _ = make()
    assert refused(verifier, sign(claims(exp=None))).reason == "no_expiry"
    assert refused(verifier, sign(claims(exp="tomorrow"))).reason == "no_expiry"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_not_yet_valid_token_is_refused(claim: str) -> None:
    verifier, _, _ = make()
    assert refused(verifier, sign(claims(**{claim: NOW + 120}))).reason == "not_yet_valid"


def test_a_wrong_audience_is_refused() -> None:
    verifier, _, _ = make()
    assert refused(verifier, sign(claims(aud="another-client"))).reason == "wrong_audience"
    assert refused(verifier, sign(claims(aud=["another-client"]))).reason == "wrong_audience"
    assert refused(verifier, sign(claims(aud=None))).reason == "wrong_audience"


def test_a_wrong_issuer_is_refused() -> None:
    verifier, _, _ = make()
    assert refused(verifier, sign(claims(iss="https://evil.example.test/realms/practice"))).reason == "wrong_issuer"
    assert refused(verifier, sign(claims(iss=ISSUER + "/"))).reason == "wrong_issuer"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    verifier, provider, _ = make()
    token = unsigned({"alg": alg, "kid": "rsa-1"}, claims()) + "."
    assert refused(verifier, token).reason in {"bad_algorithm", "malformed"}
    assert refused(verifier, unsigned({"alg": alg}, claims()) + ".c2ln").reason == "bad_algorithm"
    assert provider.fetched == []  # refused before any key is read


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    """The classic forgery: HMAC with the RSA public key (PEM or JWK text) as the secret."""
    verifier, _, _ = make()
    for secret in (RSA.as_pem(private=False), json.dumps(RSA.as_dict(private=False)).encode()):
        for kid in ("rsa-1", None):
            header = {"alg": "HS256", **({"kid": kid} if kid else {})}
            signing_input = unsigned(header, claims())
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            assert refused(verifier, f"{signing_input}.{b64(mac)}").reason == "bad_algorithm"


def test_an_algorithm_that_does_not_fit_the_named_key_is_refused() -> None:
    """An ES256 token naming the RSA key's kid: refused on the key's type, not tried."""
    verifier, _, _ = make()
    assert refused(verifier, sign(claims(), EC, "ES256", kid="rsa-1")).reason == "bad_algorithm"


def test_an_algorithm_outside_the_allow_list_is_refused() -> None:
    verifier, _, _ = make(settings=OidcSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=("ES256",)))
    assert refused(verifier, sign(claims())).reason == "bad_algorithm"


def test_an_unknown_key_id_is_refused_after_one_refresh() -> None:
    verifier, provider, clock = make()
    verifier.verify(sign(claims()))
    clock.now += MIN_REFRESH_SECONDS
    stranger = RSAKey.generate_key(2048, {"kid": "rsa-unknown"})
    assert refused(verifier, sign(claims(), stranger, "RS256")).reason == "unknown_key"
    assert provider.jwks_reads() == 2  # the first read, then one refresh for the unknown kid


def test_a_token_signed_by_another_key_with_a_known_kid_is_refused() -> None:
    verifier, provider, _ = make()
    impostor = RSAKey.generate_key(2048, {"kid": "rsa-1"})
    assert refused(verifier, sign(claims(), impostor, "RS256")).reason == "bad_signature"
    assert provider.jwks_reads() == 1  # a known kid that fails is a forgery, not a rotation: no refresh


def test_a_tampered_payload_is_refused() -> None:
    verifier, _, _ = make()
    header, _, signature = sign(claims()).split(".")
    forged = b64(json.dumps(claims(kapflow_role="admin")).encode())
    assert refused(verifier, f"{header}.{forged}.{signature}").reason == "bad_signature"


def test_a_tampered_signature_is_refused() -> None:
    verifier, _, _ = make()
    for key in (RSA, EC, ED):
        header, payload, signature = sign(claims(), key).split(".")
        flipped = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        flipped[0] ^= 1
        assert refused(verifier, f"{header}.{payload}.{b64(bytes(flipped))}").reason == "bad_signature"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d.e", "..", "eyJhbGciOiJSUzI1NiJ9..sig", "!!!.e30.c2ln", "W10.e30.c2ln", "x" * 20_000],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    verifier, _, _ = make()
    assert refused(verifier, token).reason == "malformed"


def test_a_payload_that_is_not_a_json_object_is_malformed() -> None:
    verifier, _, _ = make()
    token = jws.serialize_compact({"alg": "RS256", "kid": "rsa-1"}, b"[1, 2]", RSA, algorithms=["RS256"])
    assert refused(verifier, token).reason == "malformed"


def test_critical_header_extensions_are_refused() -> None:
    verifier, _, _ = make()
    _, payload, signature = sign(claims()).split(".")
    crit = b64(json.dumps({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}).encode())
    assert refused(verifier, f"{crit}.{payload}.{signature}").reason == "malformed"


def test_subject_and_role_are_required() -> None:
    verifier, _, _ = make()
    assert refused(verifier, sign(claims(sub=None))).reason == "no_subject"
    assert refused(verifier, sign(claims(sub=""))).reason == "no_subject"
    assert refused(verifier, sign(claims(kapflow_role=None))).reason == "no_role"
    assert refused(verifier, sign(claims(kapflow_role=""))).reason == "no_role"
    assert refused(verifier, sign(claims(kapflow_role=7))).reason == "no_role"
    assert refused(verifier, sign(claims(kapflow_role=[]))).reason == "no_role"
    assert refused(verifier, sign(claims(kapflow_role=["clinician", "admin"]))).reason == "ambiguous_role"


# --- the key cache: rotation, rate limit, outages ---


def test_a_rotated_key_is_found_with_one_refresh() -> None:
    verifier, provider, clock = make(RSA)
    verifier.verify(sign(claims()))
    provider.keys = [RSA, EC]  # the provider publishes a new key
    clock.now += MIN_REFRESH_SECONDS
    assert verifier.verify(sign(claims(), EC)).subject == "user-0001"
    assert provider.jwks_reads() == 2
    assert verifier.verify(sign(claims(), EC)).subject == "user-0001"
    assert provider.jwks_reads() == 2


def test_a_rotated_key_without_kid_is_found_with_one_refresh() -> None:
    """Providers whose tokens carry no kid (oidc-provider-mock) rotate too: no key verifies → one refresh."""
    verifier, provider, clock = make(RSA)
    verifier.verify(sign(claims(), kid=None))
    new = RSAKey.generate_key(2048, {"kid": "rsa-2"})
    provider.keys = [new]
    clock.now += MIN_REFRESH_SECONDS
    assert verifier.verify(sign(claims(exp=clock.now + 300), new, "RS256", kid=None)).role == "clinician"
    assert provider.jwks_reads() == 2


def test_refreshes_for_unknown_keys_are_rate_limited() -> None:
    verifier, provider, clock = make()
    verifier.verify(sign(claims()))
    strangers = [RSAKey.generate_key(2048, {"kid": f"rsa-x{n}"}) for n in range(3)]
    for stranger in strangers:
        assert refused(verifier, sign(claims(), stranger, "RS256")).reason == "unknown_key"
    assert provider.jwks_reads() == 1  # the first read was just now: no refresh yet
    clock.now += MIN_REFRESH_SECONDS
    for stranger in strangers:
        assert refused(verifier, sign(claims(exp=clock.now + 300), stranger, "RS256")).reason == "unknown_key"
    assert provider.jwks_reads() == 2  # one refresh for the whole flood


def test_keys_are_refreshed_when_stale() -> None:
    verifier, provider, clock = make()
    verifier.verify(sign(claims()))
    clock.now += 301
    verifier.verify(sign(claims(exp=clock.now + 300)))
    assert provider.jwks_reads() == 2
    assert provider.fetched.count(DISCOVERY) == 1  # discovery is read once


def test_cached_keys_are_kept_when_a_refresh_fails() -> None:
    verifier, provider, clock = make()
    verifier.verify(sign(claims()))
    provider.down = True
    clock.now += 301
    assert verifier.verify(sign(claims(exp=clock.now + 300))).subject == "user-0001"


def test_an_unreachable_provider_refuses_with_its_reason_and_is_not_hammered() -> None:
    verifier, provider, clock = make()
    provider.down = True
    error = refused(verifier, sign(claims()))
    assert error.reason == "provider_unreachable"
    assert refused(verifier, sign(claims())).reason == "provider_unreachable"
    assert len(provider.fetched) == 1
    provider.down = False
    clock.now += MIN_REFRESH_SECONDS
    assert verifier.verify(sign(claims(exp=clock.now + 300))).subject == "user-0001"


def test_a_discovery_document_for_another_issuer_is_refused() -> None:
    verifier, provider, _ = make()
    provider.discovery = {"issuer": "https://evil.example.test", "jwks_uri": JWKS_URI}
    assert refused(verifier, sign(claims())).reason == "provider_mismatch"


def test_a_plain_http_jwks_uri_to_another_host_is_refused() -> None:
    verifier, provider, _ = make()
    provider.discovery = {"issuer": ISSUER, "jwks_uri": "http://keys.example.test/certs"}
    assert refused(verifier, sign(claims())).reason == "provider_mismatch"


def test_private_key_members_and_unusable_keys_in_the_jwks_are_ignored() -> None:
    published = [RSA.as_dict(private=True), {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, {"kty": "bogus"},
                 {**EC.as_dict(private=False), "use": "enc"}]
    provider, clock = Provider(), Clock()

    def fetch(url: str) -> Mapping[str, Any]:
        return {"keys": published} if url == JWKS_URI else provider(url)

    verifier = OidcVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE), fetch=fetch, clock=clock)
    assert verifier.verify(sign(claims())).subject == "user-0001"
    assert refused(verifier, sign(claims(), EC)).reason == "unknown_key"
    assert refused(verifier, sign(claims(), kid="hmac")).reason == "unknown_key"


def test_concurrent_first_requests_read_the_provider_once() -> None:
    verifier, provider, _ = make()
    tokens = [sign(claims(), key) for key in (RSA, EC, ED) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        identities = list(pool.map(verifier.verify, tokens))
    assert {identity.subject for identity in identities} == {"user-0001"}
    assert provider.fetched == [DISCOVERY, JWKS_URI]


# --- settings ---


def test_default_settings_are_valid() -> None:
    settings = OidcSettings(issuer=ISSUER, audience=AUDIENCE)
    assert settings.algorithms == ("RS256", "ES256", "EdDSA", "PS256")
    assert (settings.role_claim, settings.leeway_seconds, settings.jwks_refresh_seconds) == ("kapflow_role", 60, 300)


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080", "http://localhost:9000/realm", "http://[::1]:8080"])
def test_plain_http_is_allowed_to_loopback_only(issuer: str) -> None:
    assert OidcSettings(issuer=issuer, audience=AUDIENCE).issuer == issuer


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"issuer": "http://idp.example.test"}, "https"),
        ({"issuer": "idp.example.test"}, "absolute https URL"),
        ({"issuer": "ftp://idp.example.test"}, "absolute https URL"),
        ({"algorithms": ("RS256", "none")}, "'none' is never allowed"),
        ({"algorithms": ("HS256",)}, "'HS256' is never allowed"),
        ({"algorithms": ("hs512",)}, "never allowed"),
        ({"algorithms": ("RS1",)}, "unknown"),
        ({"algorithms": ()}, "at least one"),
        ({"audience": " "}, "audience"),
        ({"role_claim": ""}, "role_claim"),
        ({"leeway_seconds": -1}, "leeway_seconds"),
        ({"jwks_refresh_seconds": 1}, "jwks_refresh_seconds"),
    ],
)
def test_wrong_settings_are_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        OidcSettings(**{"issuer": ISSUER, "audience": AUDIENCE, **changes})
    assert caught.value.source == "oidc"
    assert any(problem in text for text in caught.value.problems)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        OidcSettings(issuer="http://idp.example.test", audience="", algorithms=("none", "HS256"))
    assert len(caught.value.problems) == 4
