"""OpenID Connect bearer tokens: who is calling ``kapflow serve``, and in which role.

A practice signs its staff in at its own identity provider; the API receives the provider's
signed token (a JWT) as ``Authorization: Bearer ...`` and must decide, without calling the
provider per request, whether to trust it. This module is that decision:

* the provider is *discovered* from its issuer URL (``/.well-known/openid-configuration``), and the
  discovery document must name the very issuer configured, so a look-alike cannot slip in;
* its public keys (the JWKS) are fetched, cached and refreshed every ``jwks_refresh_seconds``, and
  at once when a token names a key id the cache lacks (keys rotate), but at most once every
  ``MIN_REFRESH_SECONDS``, so a flood of forged tokens cannot hammer the provider;
* only asymmetric algorithms from an allow-list are accepted, and only with a key of the matching
  type: never ``none``, never HMAC (the classic forgery signs ``HS256`` with the public key as the
  secret), never a key the token carries or points to itself (``jwk``, ``jku``, ``x5u`` are ignored);
* ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` are checked with a small leeway for clock skew;
* the actor id is ``sub`` and the role comes from one configured claim.

Every refusal is a ``kapflow.errors.Unauthenticated`` (HTTP 401) with a stable ``reason`` and a
message that says what to fix; no message repeats the token or a claim's value, since a token is a
credential and claims may carry personal data. This is the only module of kapflow that imports
joserfc: its exceptions are translated here and nothing of it leaks out.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry

from kapflow.errors import ConfigError, Unauthenticated

__all__ = ["MIN_REFRESH_SECONDS", "OidcSettings", "OidcVerifier", "ProviderEndpoints", "TokenIdentity", "http_fetch"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MIN_REFRESH_SECONDS = 10.0  # the fewest seconds between two JWKS fetches forced by unknown keys
MAX_TOKEN_CHARS = 16_384  # a bearer token longer than this is refused before any parsing
MAX_DOCUMENT_BYTES = 1_000_000  # a discovery document or JWKS larger than this is refused
FETCH_TIMEOUT_SECONDS = 5.0
MAX_REDIRECTS = 3

# The asymmetric algorithms kapflow knows, and the key each needs: (JWK "kty", allowed curves or None).
# HMAC ("HS*") and "none" are absent on purpose: a verifier holding only public keys must never take one.
_KEY_FOR_ALGORITHM: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "Ed25519": ("OKP", frozenset({"Ed25519"})),
    "Ed448": ("OKP", frozenset({"Ed448"})),
}

Fetch = Callable[[str], Mapping[str, Any]]


# --- settings and results -------------------------------------------------------------------------


@dataclass(frozen=True)
class OidcSettings:
    """Which provider to trust and how: checked when built, so a wrong setting fails at start-up.

    ``issuer`` is the provider's issuer URL exactly as its tokens carry it (https, or http only to a
    loopback host for tests and local providers); ``audience`` is the client id (or API identifier)
    the tokens must be issued for; ``role_claim`` names the claim that carries the kapflow role.
    """

    issuer: str
    audience: str
    role_claim: str = "kapflow_role"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA", "PS256")
    leeway_seconds: int = 60
    jwks_refresh_seconds: int = 300

    def __post_init__(self) -> None:
        problems = [
            *_issuer_problems(self.issuer),
            *_algorithm_problems(self.algorithms),
            *_plain_problems(self),
        ]
        if problems:
            raise ConfigError("oidc", problems)


def _issuer_problems(issuer: str) -> list[str]:
    """An issuer must be an absolute https URL; plain http only to this machine (nothing to intercept)."""
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return ["issuer must be an absolute https URL such as https://login.example.org/realms/practice"]
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return ["issuer must use https (plain http is allowed only to 127.0.0.1, ::1 or localhost)"]
    if parts.query or parts.fragment:
        return ["issuer must not carry a query or a fragment"]
    return []


def _algorithm_problems(algorithms: tuple[str, ...]) -> list[str]:
    """Never ``none``, never HMAC: both let anyone who knows the public key (everyone) forge tokens."""
    if not algorithms:
        return ["algorithms must name at least one algorithm, for example RS256"]
    problems = []
    for name in algorithms:
        if name.lower() == "none" or name.upper().startswith("HS"):
            problems.append(f"algorithm {name!r} is never allowed: use asymmetric ones such as RS256 or ES256")
        elif name not in _KEY_FOR_ALGORITHM:
            problems.append(f"algorithm {name!r} is unknown; known: {', '.join(sorted(_KEY_FOR_ALGORITHM))}")
    return problems


def _plain_problems(settings: OidcSettings) -> list[str]:
    problems = []
    if not settings.audience.strip():
        problems.append("audience must be the client id (or API identifier) tokens are issued for")
    if not settings.role_claim.strip():
        problems.append("role_claim must name the claim that carries the role, for example kapflow_role")
    if not 0 <= settings.leeway_seconds <= 300:
        problems.append("leeway_seconds must be between 0 and 300")
    if settings.jwks_refresh_seconds < MIN_REFRESH_SECONDS:
        problems.append(f"jwks_refresh_seconds must be at least {MIN_REFRESH_SECONDS:.0f}")
    return problems


@dataclass(frozen=True)
class TokenIdentity:
    """Who a verified token speaks for: ``subject`` becomes the actor id, ``role`` the actor's role.

    ``claims`` holds every claim of the token for callers that need more (kapflow assumes nothing
    about them; they may be personal data, so do not log them).
    """

    subject: str
    role: str
    issuer: str
    claims: Mapping[str, Any]


@dataclass(frozen=True)
class ProviderEndpoints:
    """Where a client signs someone in at the provider (from its discovery document, the issuer checked).

    ``token_auth_methods`` is the provider's ``token_endpoint_auth_methods_supported`` (the standard's
    default, ``client_secret_basic``, when it names none).
    """

    authorization: str
    token: str
    token_auth_methods: tuple[str, ...]


# --- fetching over HTTP ---------------------------------------------------------------------------


def http_fetch(url: str) -> Mapping[str, Any]:
    """GET a JSON object with a short timeout, TLS verified, following redirects only on the same origin.

    A redirect to another host could hand the key set to whoever controls that host, so it is
    refused. Every failure is ``Unauthenticated("provider_unreachable")``: a request cannot be
    verified while the provider's keys cannot be read.
    """
    try:
        with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, verify=True, follow_redirects=False) as client:
            return _get_json(client, url)
    except httpx.HTTPError as exc:
        raise _unreachable(url, type(exc).__name__) from exc


def _get_json(client: httpx.Client, url: str) -> Mapping[str, Any]:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = client.get(current, headers={"Accept": "application/json"})
        if response.is_redirect:
            target = urljoin(current, response.headers.get("location", ""))
            if _origin(target) != _origin(url):
                raise _unreachable(url, "a redirect to another host")
            current = target
            continue
        if response.status_code != 200:
            raise _unreachable(url, f"HTTP status {response.status_code}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise _unreachable(url, "a response larger than 1 MB")
        return _json_object(response.content, url)
    raise _unreachable(url, "too many redirects")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def _json_object(content: bytes, url: str) -> Mapping[str, Any]:
    try:
        document = json.loads(content)
    except ValueError as exc:
        raise _unreachable(url, "a response that is not JSON") from exc
    if not isinstance(document, dict):
        raise _unreachable(url, "a JSON response that is not an object")
    return document


def _unreachable(url: str, why: str) -> Unauthenticated:
    return Unauthenticated(
        "provider_unreachable",
        f"the identity provider could not be read at {url} ({why}); check that it is up and that "
        "the configured issuer is right, then retry",
    )


# --- the verifier ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Jws:
    """A compact JWS taken apart (nothing trusted yet)."""

    header: Mapping[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


class OidcVerifier:
    """Verifies bearer tokens of one provider; safe to share between request threads.

    ``fetch`` reads a URL as a JSON object (the default is ``http_fetch``; tests pass a fake);
    ``clock`` gives the time in seconds since the epoch, for lifetimes and the key cache.
    Nothing is fetched until the first ``verify``, so a server starts while its provider is down.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._fetch: Fetch = fetch if fetch is not None else http_fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._document: Mapping[str, Any] | None = None  # the discovery document, once read and checked
        self._keys: tuple[Key, ...] = ()
        self._fetched_at: float | None = None  # when the key set was last read successfully
        self._attempted_at: float | None = None  # when a read was last tried (success or not)

    # -- the public check --

    def verify(self, token: str) -> TokenIdentity:
        """The identity a token speaks for, or ``Unauthenticated`` saying why it is refused."""
        jws = _split(token)
        algorithm = self._algorithm(jws.header)
        key_id = _key_id(jws.header)
        if not self._signature_verifies(jws, algorithm, key_id):
            raise _refusal(key_id, self._matching_keys(key_id))
        return self._identity(_claims(jws.payload))

    # -- header and signature --

    def _algorithm(self, header: Mapping[str, Any]) -> str:
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.settings.algorithms:
            raise Unauthenticated(
                "bad_algorithm",
                "the token's signing algorithm is not allowed; the provider must sign with one of "
                + ", ".join(self.settings.algorithms),
            )
        if "crit" in header:
            raise Unauthenticated("malformed", "the token has critical header extensions kapflow does not support")
        return algorithm

    def _signature_verifies(self, jws: _Jws, algorithm: str, key_id: str | None) -> bool:
        """Try the cached keys; if the token's key is not among them (rotated in), refresh once and retry.

        A known ``kid`` whose signature fails is a forgery or a damaged token, not a rotation: no
        refresh. A token without ``kid`` (some providers omit it) cannot tell, so it may refresh.
        """
        if any(_verifies(jws, algorithm, key) for key in self._keys_for(key_id, algorithm, fresh=False)):
            return True
        if (key_id is not None and self._matching_keys(key_id)) or not self._refresh_allowed():
            return False
        return any(_verifies(jws, algorithm, key) for key in self._keys_for(key_id, algorithm, fresh=True))

    def _keys_for(self, key_id: str | None, algorithm: str, *, fresh: bool) -> list[Key]:
        """The cached keys that could have signed: same ``kid`` (when given) and a type fit for the algorithm."""
        self._ensure_keys(force=fresh)
        matching = self._matching_keys(key_id)
        if key_id is not None and matching and not any(_fits(key, algorithm) for key in matching):
            raise Unauthenticated(
                "bad_algorithm",
                "the token's algorithm does not fit the type of the key it names; the provider must sign "
                "with the algorithm of that key",
            )
        return [key for key in matching if _fits(key, algorithm)]

    def _matching_keys(self, key_id: str | None) -> list[Key]:
        keys = self._keys
        return [key for key in keys if key.kid == key_id] if key_id is not None else list(keys)

    # -- the key cache --

    def _ensure_keys(self, *, force: bool) -> None:
        """Read the key set when there is none, when it is stale, or when ``force`` (rate-limited) asks.

        A failed refresh keeps the cached keys: a provider's brief outage must not lock everyone
        out. Only with no keys at all does the failure reach the caller.
        """
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self.settings.jwks_refresh_seconds
            if not (force or stale):
                return
            if not self._may_try(now):
                if self._keys:
                    return
                raise Unauthenticated(
                    "provider_unreachable",
                    "the identity provider's keys could not be read a moment ago; retry in a few seconds",
                )
            self._attempted_at = now
            try:
                self._keys = self._read_keys()
                self._fetched_at = now
            except Unauthenticated:
                if not self._keys:
                    raise

    def _refresh_allowed(self) -> bool:
        with self._lock:
            return self._may_try(self._clock())

    def _may_try(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= MIN_REFRESH_SECONDS

    def _read_keys(self) -> tuple[Key, ...]:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        keys = _import_keys(self._fetch_json(self._jwks_uri))
        if not keys:
            raise Unauthenticated(
                "provider_unreachable",
                "the identity provider's key set holds no usable signing key; check the provider's keys",
            )
        return keys

    def endpoints(self) -> ProviderEndpoints:
        """The provider's authorization and token endpoints, for a client that signs people in through it.

        Read from the same checked discovery document as the key set (fetched once); an endpoint that is
        missing or not https (plain http only to this machine) is ``Unauthenticated("provider_mismatch")``.
        """
        document = self._discovery()
        found = {name: document.get(f"{name}_endpoint") for name in ("authorization", "token")}
        for name, url in found.items():
            if not isinstance(url, str) or _issuer_problems(url):
                raise Unauthenticated(
                    "provider_mismatch",
                    f"the identity provider's discovery document has no usable {name}_endpoint (an https URL "
                    "is needed)",
                )
        methods = document.get("token_endpoint_auth_methods_supported")
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods) or not methods:
            methods = ["client_secret_basic"]
        return ProviderEndpoints(str(found["authorization"]), str(found["token"]), tuple(methods))

    def _discovery(self) -> Mapping[str, Any]:
        """The provider's discovery document, read once; it must name the configured issuer exactly."""
        known = self._document
        if known is not None:
            return known
        issuer = self.settings.issuer
        document = self._fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if document.get("issuer") != issuer:
            raise Unauthenticated(
                "provider_mismatch",
                "the identity provider's discovery document names another issuer than the configured one; "
                "set the issuer exactly as the provider spells it (mind a trailing slash)",
            )
        self._document = MappingProxyType(dict(document))
        return self._document

    def _discover(self) -> str:
        """The provider's ``jwks_uri``, from a discovery document that names the configured issuer exactly."""
        jwks_uri = self._discovery().get("jwks_uri")
        if not isinstance(jwks_uri, str) or _issuer_problems(jwks_uri):
            raise Unauthenticated(
                "provider_mismatch",
                "the identity provider's discovery document has no usable jwks_uri (an https URL is needed)",
            )
        return jwks_uri

    def _fetch_json(self, url: str) -> Mapping[str, Any]:
        """Call the configured fetch; anything it raises means the provider could not be read."""
        try:
            document = self._fetch(url)
        except Unauthenticated:
            raise
        except Exception as exc:  # a custom fetch may fail in its own way; all of it means "unreachable"
            raise _unreachable(url, type(exc).__name__) from exc
        if not isinstance(document, Mapping):
            raise _unreachable(url, "a response that is not a JSON object")
        return document

    # -- claims --

    def _identity(self, claims: Mapping[str, Any]) -> TokenIdentity:
        self._check_issuer_and_audience(claims)
        self._check_lifetime(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise Unauthenticated("no_subject", "the token has no subject (sub); the provider must set one")
        return TokenIdentity(
            subject=subject, role=self._role(claims), issuer=self.settings.issuer, claims=MappingProxyType(dict(claims))
        )

    def _check_issuer_and_audience(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.settings.issuer:
            raise Unauthenticated(
                "wrong_issuer", "the token was issued by another provider than the configured issuer"
            )
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if self.settings.audience not in audiences:
            raise Unauthenticated(
                "wrong_audience",
                "the token was not issued for this service; request a token for the configured audience "
                "(client id)",
            )

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        now, leeway = self._clock(), self.settings.leeway_seconds
        expires = _number(claims, "exp")
        if expires is None:
            raise Unauthenticated("no_expiry", "the token has no numeric expiry (exp); the provider must set one")
        if now >= expires + leeway:
            raise Unauthenticated("expired", "the token has expired; sign in again for a new one")
        for name in ("nbf", "iat"):
            moment = _number(claims, name)
            if moment is None and name in claims:
                raise Unauthenticated("malformed", f"the token's {name} claim is not a number")
            if moment is not None and moment > now + leeway:
                raise Unauthenticated(
                    "not_yet_valid",
                    f"the token is not valid yet ({name} is in the future); check the clocks of the "
                    "provider and this server",
                )

    def _role(self, claims: Mapping[str, Any]) -> str:
        name = self.settings.role_claim
        role = claims.get(name)
        if isinstance(role, list) and len(role) > 1:
            raise Unauthenticated(
                "ambiguous_role",
                f"the token's {name!r} claim holds several roles; give each account exactly one kapflow role",
            )
        if isinstance(role, list) and len(role) == 1:
            role = role[0]
        if not isinstance(role, str) or not role.strip():
            raise Unauthenticated(
                "no_role",
                f"the token carries no role in its {name!r} claim; assign the account a kapflow role "
                "at the identity provider",
            )
        return role


# --- helpers (pure) -------------------------------------------------------------------------------


def _split(token: str) -> _Jws:
    """The compact JWS's parts, decoded; anything else (JWE, JSON serialisation, junk) is malformed."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise _malformed()
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise _malformed()
    header = _json_segment(parts[0])
    return _Jws(
        header=header,
        payload=_b64(parts[1]),
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=_b64(parts[2]),
    )


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64(segment: str) -> bytes:
    """Strict base64url without padding, as JWS requires (a lenient decoder lets a token be retouched)."""
    if not set(segment) <= _B64URL:
        raise _malformed()
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _malformed() from exc


def _json_segment(segment: str) -> Mapping[str, Any]:
    try:
        value = json.loads(_b64(segment))
    except ValueError as exc:
        raise _malformed() from exc
    if not isinstance(value, dict):
        raise _malformed()
    return value


def _claims(payload: bytes) -> Mapping[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise _malformed() from exc
    if not isinstance(claims, dict):
        raise _malformed()
    return claims


def _malformed() -> Unauthenticated:
    return Unauthenticated(
        "malformed", "the bearer token is not a signed JWT (header.payload.signature); send the provider's token"
    )


def _key_id(header: Mapping[str, Any]) -> str | None:
    key_id = header.get("kid")
    if key_id is None:
        return None
    if not isinstance(key_id, str):
        raise Unauthenticated("malformed", "the token's key id (kid) is not a string")
    return key_id


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _import_keys(document: Mapping[str, Any]) -> tuple[Key, ...]:
    """The usable public signing keys of a JWKS; keys of other types or uses are skipped, not fatal."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        return ()
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        public = {name: value for name, value in entry.items() if name not in _PRIVATE_MEMBERS}
        try:
            keys.append(JWKRegistry.import_key(public))
        except (JoseError, ValueError, TypeError, KeyError):
            continue
    return tuple(key for key in keys if key.key_type in ("RSA", "EC", "OKP"))


# Private members of RSA/EC/OKP JWKs: a verifier never needs them, so a leaked private key in a JWKS is dropped.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _fits(key: Key, algorithm: str) -> bool:
    """Whether the key's type (and curve) is the one the algorithm needs, and its own ``alg`` agrees."""
    key_type, curves = _KEY_FOR_ALGORITHM[algorithm]
    if key.key_type != key_type:
        return False
    if curves is not None and key.get("crv") not in curves:
        return False
    declared = key.get("alg")
    return declared is None or declared == algorithm


def _verifies(jws: _Jws, algorithm: str, key: Key) -> bool:
    """joserfc checks the signature; its exceptions mean "does not verify" (the algorithm was allowed already).

    The algorithm model is taken from joserfc's registry directly rather than through a registry
    instance, which would warn on every ``EdDSA`` token (a name RFC 9864 deprecates but providers use).
    """
    model = JWSRegistry.algorithms[algorithm]
    try:
        model.check_key(key)
        return bool(model.verify(jws.signing_input, jws.signature, key))
    except (JoseError, ValueError, TypeError):
        return False


def _refusal(key_id: str | None, known: list[Key]) -> Unauthenticated:
    """The reason a token failed: a key id nobody knows, or a signature no key accepts."""
    if key_id is not None and not known:
        return Unauthenticated(
            "unknown_key",
            "the token names a signing key the identity provider does not publish; get a new token, or "
            "check that the configured issuer is the provider that issued it",
        )
    return Unauthenticated(
        "bad_signature", "the token's signature does not verify; it was altered or signed by another key"
    )
