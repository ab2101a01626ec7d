"""SmtpNotifier beyond the contract: TLS, stable Message-ID, permanent refusals, login, what errors leave out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from contract.servers import NOUSER_DOMAIN, HttpRecorder, SmtpServer, SmtpTls

from kapflow.adapters.notify.smtp import KEPT_HEADERS, SmtpNotifier, message_id
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


def notifier(server: SmtpServer, **options: Any) -> SmtpNotifier:
    """A notifier for ``server`` trusting its self-signed certificate (TLS as by default otherwise)."""
    return SmtpNotifier(server.host, server.port, SENDER, tls_context=server.client_context, **options)


def started(auth: tuple[str, str] | None = None, tls: SmtpTls = "starttls") -> Iterator[SmtpServer]:
    server = SmtpServer(auth=auth, tls=tls)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[SmtpServer]:
    """Login required, offered only after STARTTLS."""
    yield from started(LOGIN)


@pytest.fixture(scope="module")
def plain_server() -> Iterator[SmtpServer]:
    """No TLS at all, login offered in clear: a loopback relay."""
    yield from started(LOGIN, tls="none")


@pytest.fixture(scope="module")
def implicit_server() -> Iterator[SmtpServer]:
    """TLS from the first byte (as on port 465), login required."""
    yield from started(LOGIN, tls="implicit")


def test_mail_goes_over_starttls_by_default(smtp_server: SmtpServer) -> None:
    """No TLS option given: the notifier upgrades with STARTTLS and verifies the certificate."""
    msg = reminder()
    notifier(smtp_server).send(msg)
    [mail] = smtp_server.with_key(msg.key)
    assert mail.encrypted


def test_a_login_goes_over_starttls_and_a_wrong_password_says_authentication_failed(
    auth_server: SmtpServer,
) -> None:
    """The right password delivers over TLS; a wrong one is "authentication failed", never "cannot reach"."""
    msg = reminder()
    notifier(auth_server, username=LOGIN[0], password=LOGIN[1]).send(msg)
    assert [m.encrypted for m in auth_server.with_key(msg.key)] == [True]
    wrong = notifier(auth_server, username=LOGIN[0], password="wrong-synthetic")
    with pytest.raises(AdapterConfigError) as checked:
        wrong.check()
    assert "authentication failed" in str(checked.value) and "cannot reach" not in str(checked.value)
    with pytest.raises(DeliveryFailed) as sent:
        wrong.send(reminder())
    assert "authentication failed" in sent.value.reason and "wrong-synthetic" not in str(sent.value)


def test_implicit_tls_delivers_and_logs_in(implicit_server: SmtpServer) -> None:
    """Implicit TLS (the default on port 465; asked for here on a free port)."""
    msg = reminder()
    sender = notifier(implicit_server, username=LOGIN[0], password=LOGIN[1], implicit_tls=True)
    sender.check()
    sender.send(msg)
    assert [m.encrypted for m in implicit_server.with_key(msg.key)] == [True]


def test_a_server_without_starttls_is_not_used_in_clear(plain_server: SmtpServer) -> None:
    """By default a server that cannot do STARTTLS is refused: nothing, and no password, goes in clear."""
    msg = reminder()
    sender = notifier(plain_server, username=LOGIN[0], password=LOGIN[1])
    with pytest.raises(AdapterConfigError, match="STARTTLS"):
        sender.check()
    with pytest.raises(DeliveryFailed):
        sender.send(msg)
    assert plain_server.with_key(msg.key) == []


def test_an_untrusted_certificate_is_refused(smtp_server: SmtpServer) -> None:
    """The system's trust store does not know the test server's self-signed certificate: no mail."""
    with pytest.raises(AdapterConfigError, match="TLS"):
        SmtpNotifier(smtp_server.host, smtp_server.port, SENDER, timeout=30).check()


def test_cleartext_is_only_for_an_explicitly_allowed_loopback_relay(plain_server: SmtpServer) -> None:
    """starttls=False is refused unless allowed, and then only for 127.0.0.1, ::1 or localhost."""
    with pytest.raises(AdapterConfigError, match="allow_cleartext_loopback"):
        SmtpNotifier(plain_server.host, plain_server.port, SENDER, starttls=False, username=LOGIN[0],
                     password=LOGIN[1])
    for host in ("smtp.practice.example", "192.0.2.10"):
        with pytest.raises(AdapterConfigError, match="this machine"):
            SmtpNotifier(host, 25, SENDER, starttls=False, allow_cleartext_loopback=True)
    msg = reminder()
    relay = notifier(plain_server, starttls=False, allow_cleartext_loopback=True, username=LOGIN[0],
                     password=LOGIN[1])
    relay.check()
    relay.send(msg)
    assert [m.encrypted for m in plain_server.with_key(msg.key)] == [False]


def test_the_message_id_is_derived_from_the_key(smtp_server: SmtpServer) -> None:
    """Two sends of one key carry one Message-ID, so mail clients show a resend once."""
    sender = notifier(smtp_server)
    msg = reminder()
    sender.send(msg)
    sender.send(msg)
    mails = smtp_server.with_key(msg.key)
    assert len(mails) == 2
    assert {str(m.message["Message-ID"]) for m in mails} == {message_id(msg.key)}
    assert message_id(msg.key) != message_id(msg.key + "x")
    assert message_id(msg.key).endswith("@kapflow>") and len(message_id(msg.key)) == len("<@kapflow>") + 32


def test_a_long_key_reads_back_unchanged(smtp_server: SmtpServer) -> None:
    """A key longer than a folded header line (a notice of appointment a12, sequence 3) arrives whole: the
    receiving side's duplicate filter matches it, with no leading space from a fold."""
    msg = reminder(key=f"case-{uuid.uuid4().hex[:16]}:a12:s3:appointment_cancelled_notice:email")
    notifier(smtp_server).send(msg)
    [mail] = smtp_server.with_key(msg.key)
    assert mail.key == msg.key and len(msg.key) > 78 - len("X-Kapflow-Message-Key: ")


def test_headers_name_sender_recipient_and_automation(smtp_server: SmtpServer) -> None:
    """From, To and Auto-Submitted are set; the envelope sender is the configured one."""
    msg = reminder()
    notifier(smtp_server).send(msg)
    [mail] = smtp_server.with_key(msg.key)
    assert mail.mail_from == SENDER
    assert str(mail.message["From"]) == SENDER
    assert str(mail.message["To"]) == msg.recipient
    assert str(mail.message["Auto-Submitted"]) == "auto-generated"


def test_headers_parsed_for_one_message_are_each_messages_own(smtp_server: SmtpServer) -> None:
    """The adapter keeps the headers it parsed for the next messages: a header with the value of another header
    (a message to the sender's own address) still reads back under its own name, and each message keeps its own
    key and Message-ID however many went before."""
    sender = notifier(smtp_server)
    to_self = reminder(recipient=SENDER)
    others = [reminder(recipient=f"client{n}@example.org") for n in range(KEPT_HEADERS + 20)]
    for message in [to_self, *others]:
        sender.send(message)
    [mail] = smtp_server.with_key(to_self.key)
    assert mail.message.get_all("From") == [SENDER] and mail.message.get_all("To") == [SENDER]
    for message in (others[0], others[-1]):
        [mail] = smtp_server.with_key(message.key)
        assert str(mail.message["To"]) == message.recipient
        assert str(mail.message["Message-ID"]) == message_id(message.key)


def test_a_refused_recipient_fails_permanently_without_naming_it(smtp_server: SmtpServer) -> None:
    """550 for the recipient: retrying cannot help, and the address stays out of the error."""
    msg = reminder(recipient=f"nobody@{NOUSER_DOMAIN}")
    with pytest.raises(DeliveryFailed) as caught:
        notifier(smtp_server).send(msg)
    assert caught.value.permanent is True
    assert "550" in caught.value.reason
    assert "nobody" not in str(caught.value)


def test_login_with_the_right_password(auth_server: SmtpServer) -> None:
    """check() and send() log in when credentials are configured."""
    sender = notifier(auth_server, username=LOGIN[0], password=LOGIN[1])
    sender.check()
    msg = reminder()
    sender.send(msg)
    assert len(auth_server.with_key(msg.key)) == 1


def test_a_wrong_password_is_a_config_error_at_check_and_retryable_at_send(auth_server: SmtpServer) -> None:
    """Bad credentials: check() says so; a send fails transiently, to succeed once they are fixed."""
    sender = notifier(auth_server, username=LOGIN[0], password="wrong")
    with pytest.raises(AdapterConfigError, match="login"):
        sender.check()
    with pytest.raises(DeliveryFailed) as caught:
        sender.send(reminder())
    assert caught.value.permanent is False
    assert "wrong" not in str(caught.value)


def test_a_server_requiring_login_refuses_anonymous_mail(auth_server: SmtpServer) -> None:
    """Without credentials the server refuses the message; nothing arrives."""
    msg = reminder()
    with pytest.raises(DeliveryFailed):
        notifier(auth_server).send(msg)
    assert auth_server.with_key(msg.key) == []


def test_username_without_password_is_refused_at_construction() -> None:
    with pytest.raises(AdapterConfigError, match="both"):
        SmtpNotifier("127.0.0.1", 25, SENDER, username="practice")


def test_check_against_something_that_is_not_smtp(http_recorder: HttpRecorder) -> None:
    """An HTTP server on the configured port is not mistaken for a mail server."""
    with pytest.raises(AdapterConfigError, match="SMTP server"):
        SmtpNotifier("127.0.0.1", http_recorder.port, SENDER, timeout=0.5).check()  # it waits for a greeting


def test_a_burst_of_messages_travels_on_one_connection(smtp_server: SmtpServer) -> None:
    """A connection per message would cost more than the message (TCP, EHLO, STARTTLS): one carries them all."""
    sender = notifier(smtp_server)
    keys = [f"timer:case-burst-{n}:reminder_72h:email" for n in range(3)]
    for key in keys:
        sender.send(reminder(key=key))
    sender.close()
    peers = {mail.peer for key in keys for mail in smtp_server.with_key(key)}
    assert len(peers) == 1 and all(len(smtp_server.with_key(key)) == 1 for key in keys)


def test_a_kept_connection_that_died_is_replaced_before_a_message(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session the server (or the network) closed while idle is found by NOOP; the message goes on a new one."""
    import kapflow.adapters.notify.smtp as smtp_module

    sender = notifier(smtp_server)
    sender.send(reminder(key="timer:case-idle-1:reminder_72h:email"))
    kept = sender._mine.kept
    assert kept is not None and kept.sock is not None
    kept.sock.shutdown(2)  # the session is gone, as after the server's idle timeout
    monkeypatch.setattr(smtp_module, "IDLE_PROBE_S", -1.0)  # every reuse is probed first
    sender.send(reminder(key="timer:case-idle-2:reminder_72h:email"))
    sender.close()
    first, second = (smtp_server.with_key(f"timer:case-idle-{n}:reminder_72h:email") for n in (1, 2))
    assert len(first) == 1 and len(second) == 1 and first[0].peer != second[0].peer


def test_the_tls_context_is_made_once_and_never_for_a_cleartext_relay(
    smtp_server: SmtpServer, plain_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the system's trusted authorities took 30 ms, as long as a hundred messages: a notifier makes its
    context once for every connection it opens, and a loopback relay in clear needs none."""
    import ssl

    made: list[int] = []

    def counted(*_args: Any, **_kwargs: Any) -> ssl.SSLContext:
        made.append(1)
        return smtp_server.client_context  # trusts the test server's self-signed certificate

    monkeypatch.setattr(ssl, "create_default_context", counted)
    sender = SmtpNotifier(smtp_server.host, smtp_server.port, SENDER)
    sender.send(reminder(key="timer:case-ctx-1:reminder_72h:email"))
    sender._drop()  # the next message opens a new connection
    sender.send(reminder(key="timer:case-ctx-2:reminder_72h:email"))
    sender.close()
    assert made == [1] and all(len(smtp_server.with_key(f"timer:case-ctx-{n}:reminder_72h:email")) == 1
                               for n in (1, 2))
    relay = SmtpNotifier(plain_server.host, plain_server.port, SENDER, username=LOGIN[0], password=LOGIN[1],
                         starttls=False, allow_cleartext_loopback=True)
    relay.send(reminder(key="timer:case-ctx-3:reminder_72h:email"))
    relay.close()
    assert made == [1]
