"""SmtpNotifier beyond the contract: stable Message-ID, permanent refusals, login, what errors leave out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from contract.servers import NOUSER_DOMAIN, HttpRecorder, SmtpServer

from kapflow.adapters.notify.smtp import SmtpNotifier, message_id
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Message

SENDER = "reminders@practice.example"
LOGIN = ("practice", "synthetic-password")


def reminder(recipient: str = "alex.client@example.org", key: str | None = None) -> Message:
    return Message(
        key=key or f"timer:case-{uuid.uuid4().hex[:8]}:reminder_72h:email",
        channel="email",
        recipient=recipient,
        subject="Your appointment on Monday",
        body="Hello Alex, see you on Monday at 15:00.",
    )


@pytest.fixture(scope="module")
def auth_server() -> Iterator[SmtpServer]:
    server = SmtpServer(auth=LOGIN)
    server.start()
    yield server
    server.stop()


def test_the_message_id_is_derived_from_the_key(smtp_server: SmtpServer) -> None:
    """Two sends of one key carry one Message-ID, so mail clients show a resend once."""
    notifier = SmtpNotifier(smtp_server.host, smtp_server.port, SENDER)
    msg = reminder()
    notifier.send(msg)
    notifier.send(msg)
    mails = smtp_server.with_key(msg.key)
    assert len(mails) == 2
    assert {str(m.message["Message-ID"]) for m in mails} == {message_id(msg.key)}
    assert message_id(msg.key) != message_id(msg.key + "x")
    assert message_id(msg.key).endswith("@kapflow>") and len(message_id(msg.key)) == len("<@kapflow>") + 32


def test_headers_name_sender_recipient_and_automation(smtp_server: SmtpServer) -> None:
    """From, To and Auto-Submitted are set; the envelope sender is the configured one."""
    msg = reminder()
    SmtpNotifier(smtp_server.host, smtp_server.port, SENDER).send(msg)
    [mail] = smtp_server.with_key(msg.key)
    assert mail.mail_from == SENDER
    assert str(mail.message["From"]) == SENDER
    assert str(mail.message["To"]) == msg.recipient
    assert str(mail.message["Auto-Submitted"]) == "auto-generated"


def test_a_refused_recipient_fails_permanently_without_naming_it(smtp_server: SmtpServer) -> None:
    """550 for the recipient: retrying cannot help, and the address stays out of the error."""
    msg = reminder(recipient=f"nobody@{NOUSER_DOMAIN}")
    with pytest.raises(DeliveryFailed) as caught:
        SmtpNotifier(smtp_server.host, smtp_server.port, SENDER).send(msg)
    assert caught.value.permanent is True
    assert "550" in caught.value.reason
    assert "nobody" not in str(caught.value)


def test_login_with_the_right_password(auth_server: SmtpServer) -> None:
    """check() and send() log in when credentials are configured."""
    notifier = SmtpNotifier(auth_server.host, auth_server.port, SENDER, username=LOGIN[0], password=LOGIN[1])
    notifier.check()
    msg = reminder()
    notifier.send(msg)
    assert len(auth_server.with_key(msg.key)) == 1


def test_a_wrong_password_is_a_config_error_at_check_and_retryable_at_send(auth_server: SmtpServer) -> None:
    """Bad credentials: check() says so; a send fails transiently, to succeed once they are fixed."""
    notifier = SmtpNotifier(auth_server.host, auth_server.port, SENDER, username=LOGIN[0], password="wrong")
    with pytest.raises(AdapterConfigError, match="login"):
        notifier.check()
    with pytest.raises(DeliveryFailed) as caught:
        notifier.send(reminder())
    assert caught.value.permanent is False
    assert "wrong" not in str(caught.value)


def test_a_server_requiring_login_refuses_anonymous_mail(auth_server: SmtpServer) -> None:
    """Without credentials the server refuses the message; nothing arrives."""
    msg = reminder()
    with pytest.raises(DeliveryFailed):
        SmtpNotifier(auth_server.host, auth_server.port, SENDER).send(msg)
    assert auth_server.with_key(msg.key) == []


def test_username_without_password_is_refused_at_construction() -> None:
    with pytest.raises(AdapterConfigError, match="both"):
        SmtpNotifier("127.0.0.1", 25, SENDER, username="practice")


def test_check_against_something_that_is_not_smtp(http_recorder: HttpRecorder) -> None:
    """An HTTP server on the configured port is not mistaken for a mail server."""
    with pytest.raises(AdapterConfigError, match="SMTP server"):
        SmtpNotifier("127.0.0.1", http_recorder.port, SENDER, timeout=0.5).check()  # it waits for a greeting
