"""WebhookNotifier and verify_webhook beyond the contract: the Standard Webhooks format, statuses, replays."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from contract.servers import HttpRecorder, ReceivedRequest

from kapflow.adapters.notify.webhook import (
    WebhookNotifier,
    WebhookVerificationError,
    generate_secret,
    sign,
    verify_webhook,
)
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Message
from kapflow.testing import FakeClock

SECRET = generate_secret()
NOW = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def note(key: str | None = None) -> Message:
    return Message(
        key=key or f"timer:case-{uuid.uuid4().hex[:8]}:nudge:webhook",
        channel="webhook",
        recipient="therapist",
        subject="Integration session not booked",
        body="Case case-test has no integration session booked within 7 days.",
        case_id="case-test",
        audience="therapist",
        metadata={"reminder": "integration_nudge"},
    )


def send_one(recorder: HttpRecorder, msg: Message, clock: FakeClock | None = None) -> ReceivedRequest:
    path = f"/hooks/{uuid.uuid4().hex}"
    WebhookNotifier(recorder.base_url + path, SECRET, clock=clock or FakeClock(NOW)).send(msg)
    [request] = recorder.to(path)
    return request


def test_the_standard_webhooks_test_vector() -> None:
    """The signature matches the specification's published example, so any of its libraries can verify us."""
    key_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    verified = verify_webhook(key_secret, headers, body, now=datetime.fromtimestamp(1614265330, UTC))
    assert verified.id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert verified.payload == {"test": 2432232314}


def test_a_delivery_carries_id_timestamp_signature_and_the_message(http_recorder: HttpRecorder) -> None:
    """webhook-id is the key, the timestamp the clock's, the body the spec's type/timestamp/data envelope."""
    msg = note()
    request = send_one(http_recorder, msg)
    assert request.method == "POST"
    assert request.header("Content-Type") == "application/json"
    assert request.header("webhook-id") == msg.key
    assert request.header("webhook-timestamp") == str(int(NOW.timestamp()))
    verified = verify_webhook(SECRET, request.headers, request.body, now=NOW)
    assert verified.payload["type"] == "kapflow.message"
    assert verified.payload["timestamp"] == NOW.isoformat()
    data = verified.payload["data"]
    assert (data["key"], data["subject"], data["body"]) == (msg.key, msg.subject, msg.body)
    assert data["metadata"] == {"reminder": "integration_nudge"}


def test_a_retry_keeps_the_id_and_signs_anew(http_recorder: HttpRecorder) -> None:
    """The same message sent later has the same webhook-id (receivers deduplicate) and a fresh timestamp."""
    msg = note()
    clock = FakeClock(NOW)
    first = send_one(http_recorder, msg, clock)
    clock.advance(minutes=10)
    second = send_one(http_recorder, msg, clock)
    assert first.header("webhook-id") == second.header("webhook-id") == msg.key
    assert first.header("webhook-signature") != second.header("webhook-signature")
    verify_webhook(SECRET, second.headers, second.body, now=clock.now())


@pytest.fixture
def signed(http_recorder: HttpRecorder) -> ReceivedRequest:
    return send_one(http_recorder, note())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"type": "kapflow.message", "data": {}}'}, "bad_signature"),
        ({"secret": generate_secret()}, "bad_signature"),
        ({"now": NOW + timedelta(seconds=301)}, "timestamp_too_old"),
        ({"now": NOW - timedelta(seconds=301)}, "timestamp_too_new"),
        ({"drop": "webhook-signature"}, "missing_header"),
        ({"drop": "webhook-timestamp"}, "missing_header"),
        ({"header": ("webhook-timestamp", "soon")}, "bad_timestamp"),
        ({"header": ("webhook-id", "someone-else")}, "bad_signature"),
        ({"secret": "not-a-whsec-secret"}, "bad_secret"),
    ],
)
def test_verification_refuses(signed: ReceivedRequest, change: dict[str, object], reason: str) -> None:
    """Tampered bodies, wrong secrets, replays, clock skew and missing headers are each refused, with a code."""
    headers = {k.lower(): v for k, v in signed.headers.items()}
    if "drop" in change:
        del headers[str(change["drop"])]
    if "header" in change:
        name, value = change["header"]  # type: ignore[misc]
        headers[name] = value
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(
            str(change.get("secret", SECRET)),
            headers,
            bytes(change.get("body", signed.body)),  # type: ignore[call-overload]
            now=change.get("now", NOW),  # type: ignore[arg-type]
        )
    assert caught.value.reason == reason
    assert caught.value.as_dict()["reason"] == reason


def test_verification_accepts_within_tolerance_and_any_of_several_signatures(signed: ReceivedRequest) -> None:
    """Five minutes either way pass; during key rotation one matching signature among several suffices."""
    headers = {k.lower(): v for k, v in signed.headers.items()}
    verify_webhook(SECRET, headers, signed.body, now=NOW + timedelta(seconds=300))
    verify_webhook(SECRET, headers, signed.body, now=NOW - timedelta(seconds=300))
    other = sign(b"another key of sixteen+ bytes", headers["webhook-id"], int(NOW.timestamp()), signed.body)
    headers["webhook-signature"] = f"{other} {headers['webhook-signature']}"
    verify_webhook(SECRET, headers, signed.body, now=NOW)


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (404, True), (410, True), (408, False), (429, False), (500, False), (503, False), (302, False)],
)
def test_status_codes_decide_whether_to_retry(http_recorder: HttpRecorder, status: int, permanent: bool) -> None:
    """4xx is permanent except timeout and rate limit; 5xx and redirects (never followed) are retried."""
    notifier = WebhookNotifier(f"{http_recorder.base_url}/status/{status}/hook", SECRET)
    with pytest.raises(DeliveryFailed) as caught:
        notifier.send(note())
    assert caught.value.permanent is permanent
    assert str(status) in caught.value.reason


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield int(listener.getsockname()[1])


def test_a_receiver_that_never_answers_times_out_transiently(silent_port: int) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        WebhookNotifier(f"http://127.0.0.1:{silent_port}/hook", SECRET, timeout=0.3).send(note())
    assert caught.value.permanent is False


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/T0KEN",
        "hooks.example.org/T0KEN",
        "http:///T0KEN",
        "http://127.0.0.1:99999/T0KEN",
        "http://127.0.0.1:port/T0KEN",
        "",
    ],
)
def test_check_refuses_malformed_urls_naming_only_the_scheme(url: str) -> None:
    """URLs often hold a token: the error names the scheme, never the path."""
    with pytest.raises(AdapterConfigError) as caught:
        WebhookNotifier(url, SECRET).check()
    assert "T0KEN" not in str(caught.value)


@pytest.mark.parametrize(
    "secret", ["", "whsec_", "whsec_***not base64***", "plainsecretwithoutprefix", "whsec_c2hvcnQ="]
)
def test_check_refuses_malformed_secrets_without_echoing_them(http_recorder: HttpRecorder, secret: str) -> None:
    with pytest.raises(AdapterConfigError) as caught:
        WebhookNotifier(http_recorder.base_url + "/hook", secret).check()
    assert "not base64" not in str(caught.value) and "plainsecret" not in str(caught.value)


def test_a_misconfigured_notifier_fails_transiently_at_send(http_recorder: HttpRecorder) -> None:
    """A bad secret is fixed by configuration, after which the retried message goes out."""
    with pytest.raises(DeliveryFailed) as caught:
        WebhookNotifier(http_recorder.base_url + "/hook", "whsec_bad!").send(note())
    assert caught.value.permanent is False


def test_unicode_survives_the_signature(http_recorder: HttpRecorder) -> None:
    """Non-ASCII text is sent as UTF-8 JSON and verifies."""
    msg = Message(key="k-ü", channel="webhook", recipient="", subject="Séance ✓", body="Grüße — à lundi")
    request = send_one(http_recorder, msg)
    data = verify_webhook(SECRET, request.headers, request.body, now=NOW).payload["data"]
    assert data["subject"] == "Séance ✓" and json.loads(request.body)["data"]["body"] == "Grüße — à lundi"
