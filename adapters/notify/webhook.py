"""Signed JSON webhooks, the Standard Webhooks way, with the standard library only.

The sender signs ``{webhook-id}.{webhook-timestamp}.{body}`` with HMAC-SHA256
under a shared secret written ``whsec_<base64>``; the receiver recomputes the
signature and rejects stale timestamps, so a captured request cannot be
replayed later. ``webhook-id`` is the message key: receivers deduplicate on
it. ``verify_webhook`` is the receiver's half.

``urllib.request`` rather than an HTTP client library: caldav's
urllib3-future replaces urllib3 in some installs, and the standard library is
immune to that. Redirects are refused: a POST silently turned into a GET
would look delivered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import secrets
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kapflow.errors import AdapterConfigError, DeliveryFailed, WebhookVerificationError
from kapflow.ports import Clock, Message, SystemClock

ADAPTER = "webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
EVENT_TYPE = "kapflow.message"
_RETRYABLE_4XX = frozenset({408, 429})  # timeout and rate limit: the same request may succeed later


@dataclass(frozen=True)
class VerifiedWebhook:
    """What a receiver may trust after verification: the id (message key), the send time and the payload."""

    id: str
    timestamp: int
    payload: Any


def generate_secret(nbytes: int = 32) -> str:
    """A fresh ``whsec_`` secret (the spec asks for 24 to 64 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def _secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret; ValueError (without the secret) if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("the secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("the secret after 'whsec_' must be base64") from None
    if len(key) < 16:
        raise ValueError("the secret is too short: use at least 24 random bytes (generate_secret())")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one request."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def payload(message: Message, sent_at: datetime) -> dict[str, Any]:
    """The JSON body: the spec's ``type``/``timestamp``/``data`` envelope around the message."""
    return {
        "type": EVENT_TYPE,
        "timestamp": sent_at.isoformat(),
        "data": {
            "key": message.key,
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject,
            "body": message.body,
            "case_id": message.case_id,
            "audience": message.audience,
            "metadata": dict(message.metadata),
        },
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class WebhookNotifier:
    """POSTs each message as signed JSON to one URL."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10,
        channel: str = "webhook",
        clock: Clock | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._channel = channel
        self._clock = clock or SystemClock()
        self._opener = urllib.request.build_opener(_NoRedirect)

    @property
    def channel(self) -> str:
        return self._channel

    def check(self) -> None:
        """The URL is http(s) with a host, the secret is well formed, and the host accepts TCP connections."""
        host, port = self._endpoint()
        try:
            _secret_key(self._secret)
        except ValueError as exc:
            raise AdapterConfigError(ADAPTER, str(exc)) from None
        try:
            socket.create_connection((host, port), timeout=self._timeout).close()
        except OSError as exc:
            raise AdapterConfigError(
                ADAPTER, f"cannot connect to {host}:{port} ({type(exc).__name__}); check the URL and the receiver"
            ) from None

    def send(self, message: Message) -> None:
        try:
            key = _secret_key(self._secret)
            self._endpoint()
        except (ValueError, AdapterConfigError) as exc:
            # Configuration, not the message: after the fix the retry succeeds.
            raise DeliveryFailed(self._channel, f"misconfigured: {exc}") from None
        now = self._clock.now()
        timestamp = int(now.timestamp())
        body = json.dumps(payload(message, now), separators=(",", ":"), ensure_ascii=False).encode()
        # _endpoint() above admitted http and https only.
        request = urllib.request.Request(  # noqa: S310
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "kapflow-webhook",
                "webhook-id": message.key,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(key, message.key, timestamp, body),
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
            permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
            raise DeliveryFailed(self._channel, f"receiver answered HTTP {status}", permanent=permanent) from None
        except (OSError, http.client.HTTPException) as exc:
            # URLError (refused, DNS), timeouts and broken responses: try again later.
            raise DeliveryFailed(self._channel, f"receiver unavailable ({type(exc).__name__})") from None

    def _endpoint(self) -> tuple[str, int]:
        """(host, port) of the URL; AdapterConfigError naming the scheme only (URLs can hold tokens)."""
        parts = urllib.parse.urlsplit(self._url)
        try:
            port = parts.port
        except ValueError:  # a port that is not a number, or out of range
            port, host = None, None
        else:
            host = parts.hostname if parts.scheme in ("http", "https") else None
        if not host:
            raise AdapterConfigError(
                ADAPTER, f"the URL must look like https://host[:port]/path (scheme given: {parts.scheme or 'none'})"
            )
        return host, port or (443 if parts.scheme == "https" else 80)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError("missing_header", f"the {name} header is missing")


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance: int = 300,
) -> VerifiedWebhook:
    """Check a received webhook's signature and freshness; raise ``WebhookVerificationError`` if either fails.

    ``body`` is the raw request body, before any JSON parsing. ``now`` comes
    from the receiver's clock; timestamps further than ``tolerance`` seconds
    from it, either way, are refused (replays, or a badly wrong clock).
    """
    try:
        key = _secret_key(secret)
    except ValueError as exc:
        raise WebhookVerificationError("bad_secret", str(exc)) from None
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("bad_timestamp", "webhook-timestamp is not an integer") from None
    age = int(now.timestamp()) - timestamp
    if age > tolerance:
        raise WebhookVerificationError("timestamp_too_old", f"the webhook is {age} s old (tolerance {tolerance} s)")
    if age < -tolerance:
        raise WebhookVerificationError(
            "timestamp_too_new", f"the webhook is {-age} s in the future (tolerance {tolerance} s)"
        )
    expected = sign(key, msg_id, timestamp, body)
    # The header may hold several space-separated signatures (key rotation); one match suffices.
    if not any(hmac.compare_digest(expected.encode(), c.encode()) for c in signatures.split()):
        raise WebhookVerificationError("bad_signature", "no signature in webhook-signature matches")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return VerifiedWebhook(id=msg_id, timestamp=timestamp, payload=parsed)
