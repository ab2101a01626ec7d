"""The Notifier contract: every notifier adapter passes the same tests against a real receiving server.

``NotifierContract`` holds the tests; each ``Test*`` class below plugs one
adapter in through a ``harness`` fixture that builds the adapter (working,
misconfigured, failing) and reads back what the server received.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from contract.servers import TEMPFAIL_DOMAIN, HttpRecorder, SmtpServer, free_port

from kapflow.adapters.notify.apprise import AppriseNotifier
from kapflow.adapters.notify.maildir import MaildirNotifier
from kapflow.adapters.notify.memory import MemoryNotifier
from kapflow.adapters.notify.smtp import KEY_HEADER, SmtpNotifier
from kapflow.adapters.notify.webhook import WebhookNotifier, generate_secret, verify_webhook
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Message, Notifier

SENDER = "reminders@practice.example"


@dataclass(frozen=True)
class Delivery:
    """One message as the receiving server saw it; ``key`` is None where the channel cannot carry it."""

    key: str | None
    recipient: str | None
    subject: str
    body: str


@dataclass
class Harness:
    """How a contract test reaches one adapter and its server."""

    good: Callable[[], Notifier]
    misconfigured: Callable[[], Notifier]
    failing: Callable[[], Notifier]
    deliveries: Callable[[Message], list[Delivery]]
    recipient: str
    carries_key: bool = True
    carries_recipient: bool = True


def message(harness: Harness, channel: str, **overrides: str) -> Message:
    """A synthetic reminder with a key of its own (no real person, no clinical detail)."""
    fields = {
        "key": f"timer:case-{uuid.uuid4().hex[:8]}:appointment_reminder_24h:{channel}",
        "channel": channel,
        "recipient": harness.recipient,
        "subject": "Your appointment tomorrow",
        "body": "Hello Alex, this is a reminder of your appointment on Monday 2 February 2026 at 15:00.",
        "case_id": "case-test",
        "audience": "client",
    }
    fields.update(overrides)
    return Message(**fields)


class NotifierContract:
    """The tests every notifier passes. Subclasses provide the ``harness`` fixture."""

    def test_check_passes_on_a_working_configuration(self, harness: Harness) -> None:
        """check() is silent when the server is there and the configuration right."""
        harness.good().check()

    def test_check_names_a_bad_configuration(self, harness: Harness) -> None:
        """check() raises AdapterConfigError, with a sentence, on an unusable configuration."""
        with pytest.raises(AdapterConfigError) as caught:
            harness.misconfigured().check()
        assert caught.value.adapter and caught.value.problem

    def test_a_sent_message_arrives_once_with_its_key(self, harness: Harness) -> None:
        """One send, one delivery, carrying the key the receiver deduplicates on."""
        notifier = harness.good()
        msg = message(harness, notifier.channel)
        notifier.send(msg)
        [delivery] = harness.deliveries(msg)
        if harness.carries_key:
            assert delivery.key == msg.key
        if harness.carries_recipient:
            assert delivery.recipient == msg.recipient
        assert delivery.body.strip() == msg.body

    def test_the_subject_is_the_callers_and_nothing_more(self, harness: Harness) -> None:
        """The adapter adds nothing to the subject (no case id, name or address)."""
        notifier = harness.good()
        msg = message(harness, notifier.channel, subject="Reminder ✓ — Monday")
        notifier.send(msg)
        [delivery] = harness.deliveries(msg)
        assert delivery.subject in (msg.subject, "")

    def test_messages_with_different_keys_arrive_separately(self, harness: Harness) -> None:
        """Two messages, two deliveries, each once."""
        notifier = harness.good()
        first, second = message(harness, notifier.channel), message(harness, notifier.channel, body="Second note.")
        notifier.send(first)
        notifier.send(second)
        assert len(harness.deliveries(first)) == 1
        assert len(harness.deliveries(second)) == 1

    def test_a_transient_failure_raises_a_retryable_delivery_failed(self, harness: Harness) -> None:
        """An outage is DeliveryFailed(permanent=False), and its text carries no message content."""
        notifier = harness.failing()
        msg = message(harness, notifier.channel, body="Private body text 7f3a")
        with pytest.raises(DeliveryFailed) as caught:
            notifier.send(msg)
        assert caught.value.permanent is False
        assert caught.value.channel == notifier.channel
        text = str(caught.value) + repr(caught.value.as_dict())
        assert "7f3a" not in text and msg.subject not in text
        assert msg.recipient not in text
        # A chained library exception would print its own text (addresses, replies) in tracebacks.
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None or caught.value.__suppress_context__
        assert harness.deliveries(msg) == []

    def test_a_failing_notifier_does_not_affect_another(self, harness: Harness) -> None:
        """A notifier that fails leaves a working one working, before and after."""
        failing, good = harness.failing(), harness.good()
        before, after = message(harness, good.channel), message(harness, good.channel)
        good.send(before)
        with pytest.raises(DeliveryFailed):
            failing.send(message(harness, good.channel))
        good.send(after)
        assert len(harness.deliveries(before)) == 1
        assert len(harness.deliveries(after)) == 1


# --- SMTP ---------------------------------------------------------------------------------------


def _mail_deliveries(server: SmtpServer, msg: Message, *, by_key: bool = True) -> list[Delivery]:
    mails = server.with_key(msg.key) if by_key else [m for m in server.mails if m.body.strip() == msg.body]
    return [Delivery(m.key, ",".join(m.rcpt_tos), m.subject, m.body) for m in mails]


def _tls_notifier(server: SmtpServer) -> SmtpNotifier:
    """STARTTLS as by default, trusting the test server's self-signed certificate."""
    return SmtpNotifier(server.host, server.port, SENDER, tls_context=server.client_context, timeout=30)


class TestSmtpNotifier(NotifierContract):
    @pytest.fixture
    def harness(self, smtp_server: SmtpServer) -> Harness:
        return Harness(
            good=lambda: _tls_notifier(smtp_server),
            misconfigured=lambda: SmtpNotifier("127.0.0.1", free_port(), SENDER, timeout=30),
            failing=lambda: SmtpNotifier("127.0.0.1", free_port(), SENDER, timeout=30),
            deliveries=lambda msg: _mail_deliveries(smtp_server, msg),
            recipient="alex.client@example.org",
        )


class TestSmtpNotifierTemporaryRejection(NotifierContract):
    """The same contract where the failure is the server's 451 for the recipient, not a dead port."""

    @pytest.fixture
    def harness(self, smtp_server: SmtpServer) -> Harness:
        def failing() -> Notifier:
            return _RecipientOverride(
                _tls_notifier(smtp_server), f"alex@{TEMPFAIL_DOMAIN}"
            )

        return Harness(
            good=lambda: _tls_notifier(smtp_server),
            misconfigured=lambda: SmtpNotifier("nonexistent.invalid", 25, SENDER, timeout=30),
            failing=failing,
            deliveries=lambda msg: _mail_deliveries(smtp_server, msg),
            recipient="alex.client@example.org",
        )


class _RecipientOverride:
    """Sends through ``inner`` to a fixed recipient: how the harness makes a server answer 451."""

    def __init__(self, inner: Notifier, recipient: str) -> None:
        self._inner = inner
        self._recipient = recipient

    @property
    def channel(self) -> str:
        return self._inner.channel

    def check(self) -> None:
        self._inner.check()

    def send(self, message: Message) -> None:
        self._inner.send(replace(message, recipient=self._recipient))


# --- Webhook ------------------------------------------------------------------------------------

SECRET = generate_secret()


def _webhook_deliveries(recorder: HttpRecorder, path: str, msg: Message) -> list[Delivery]:
    found = []
    for request in recorder.to(path):
        verified = verify_webhook(SECRET, request.headers, request.body, now=datetime.now(UTC))
        data = verified.payload["data"]
        if verified.id == msg.key:
            found.append(Delivery(verified.id, data["recipient"], data["subject"], data["body"]))
    return found


class TestWebhookNotifier(NotifierContract):
    @pytest.fixture
    def harness(self, http_recorder: HttpRecorder) -> Harness:
        path = f"/hooks/{uuid.uuid4().hex}"
        return Harness(
            good=lambda: WebhookNotifier(http_recorder.base_url + path, SECRET, timeout=30),
            misconfigured=lambda: WebhookNotifier(f"http://127.0.0.1:{free_port()}{path}", SECRET, timeout=30),
            failing=lambda: WebhookNotifier(http_recorder.base_url + "/status/503" + path, SECRET, timeout=30),
            deliveries=lambda msg: _webhook_deliveries(http_recorder, path, msg),
            recipient="+15555550100",
        )


# --- apprise ------------------------------------------------------------------------------------


def _apprise_json_deliveries(recorder: HttpRecorder, path: str, msg: Message) -> list[Delivery]:
    found = []
    for request in recorder.to(path):
        if request.header("X-Kapflow-Message-Key") == msg.key:
            body = json.loads(request.body)
            found.append(Delivery(msg.key, None, body["title"], body["message"]))
    return found


class TestAppriseNotifierJson(NotifierContract):
    """apprise to a local HTTP server (``json://``), standing in for an SMS or chat gateway."""

    @pytest.fixture
    def harness(self, http_recorder: HttpRecorder) -> Harness:
        path = f"/sms/{uuid.uuid4().hex}"
        base = f"json://127.0.0.1:{http_recorder.port}"
        return Harness(
            good=lambda: AppriseNotifier("sms", base + path, timeout=30),
            misconfigured=lambda: AppriseNotifier("sms", "json://"),
            failing=lambda: AppriseNotifier("sms", f"{base}/status/503{path}", timeout=30),
            deliveries=lambda msg: _apprise_json_deliveries(http_recorder, path, msg),
            recipient="+15555550100",
            carries_recipient=False,
        )


class TestAppriseNotifierEmail(NotifierContract):
    """apprise to aiosmtpd (``mailto://``, plain SMTP), the recipient taken from the message."""

    @pytest.fixture
    def harness(self, smtp_server: SmtpServer) -> Harness:
        url = f"mailto://127.0.0.1:{smtp_server.port}?from={SENDER}&to={{recipient}}&mode=insecure"
        return Harness(
            good=lambda: AppriseNotifier("email", url, timeout=30),
            misconfigured=lambda: AppriseNotifier("email", "mailto://"),
            failing=lambda: AppriseNotifier("email", url.replace(str(smtp_server.port), str(free_port())), timeout=30),
            deliveries=lambda msg: _mail_deliveries(smtp_server, msg),
            recipient="alex.client@example.org",
        )


# --- memory -------------------------------------------------------------------------------------


class TestMemoryNotifier(NotifierContract):
    @pytest.fixture
    def harness(self) -> Harness:
        good = MemoryNotifier("sms")

        def failing() -> Notifier:
            notifier = MemoryNotifier("sms")
            notifier.fail_next(10)
            return notifier

        def misconfigured() -> Notifier:
            pytest.skip("a MemoryNotifier has no configuration to get wrong")

        return Harness(
            good=lambda: good,
            misconfigured=misconfigured,
            failing=failing,
            deliveries=lambda msg: [Delivery(m.key, m.recipient, m.subject, m.body) for m in good.sent if m == msg],
            recipient="+15555550100",
        )


# --- Maildir ------------------------------------------------------------------------------------


class TestMaildirNotifier(NotifierContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        good = MaildirNotifier(tmp_path / "mail")
        good.check()
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the Maildir should be")

        def deliveries(msg: Message) -> list[Delivery]:
            return [
                Delivery(str(m[KEY_HEADER]), str(m["To"]), str(m["Subject"]), str(m.get_content()))
                for m in good.messages()
                if m[KEY_HEADER] == msg.key
            ]

        return Harness(
            good=lambda: good,
            misconfigured=lambda: MaildirNotifier(blocker / "mail"),
            failing=lambda: MaildirNotifier(blocker / "mail"),
            deliveries=deliveries,
            recipient="alex.client@example.org",
        )

    def test_a_repeated_delivery_is_kept_once(self, harness: Harness) -> None:
        """Delivering the same key twice (a worker retried after a crash) leaves one message in the folder."""
        notifier = harness.good()
        msg = message(harness, notifier.channel)
        notifier.send(msg)
        notifier.send(msg)
        assert len(harness.deliveries(msg)) == 1
