"""Email through an SMTP server, with the standard library's ``smtplib``.

Every message gets a ``Message-ID`` derived from its key, so a resend after a
worker died mid-send is recognisable as the same message by mail clients and
by the receiving server's duplicate filters, and an ``X-Kapflow-Message-Key``
header for tools that deduplicate on the key itself.

Errors never carry the recipient, subject or body, nor the server's reply
text (servers often echo the address back): only SMTP status codes and
exception class names.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Message

ADAPTER = "smtp"
KEY_HEADER = "X-Kapflow-Message-Key"


def message_id(key: str) -> str:
    """A stable RFC 5322 Message-ID for a message key (the key itself may hold characters ids cannot)."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@kapflow>"


class SmtpNotifier:
    """Delivers ``email`` messages through one SMTP server; one connection per message."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10,
    ) -> None:
        if (username is None) != (password is None):
            raise AdapterConfigError(ADAPTER, "give both username and password, or neither")
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout

    @property
    def channel(self) -> str:
        return "email"

    def check(self) -> None:
        """Connect, greet, log in if configured, and say NOOP; nothing is sent."""
        where = f"the SMTP server at {self._host}:{self._port}"
        try:
            with self._connect() as smtp:
                code, _ = smtp.noop()
        except smtplib.SMTPAuthenticationError as exc:
            raise AdapterConfigError(
                ADAPTER, f"{where} refused the login (code {exc.smtp_code}); check username and password"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise AdapterConfigError(
                ADAPTER, f"{where} does not offer STARTTLS or AUTH as configured; check starttls and the port"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise AdapterConfigError(
                ADAPTER,
                f"cannot reach {where} ({type(exc).__name__}); check host and port and that the server is running",
            ) from None
        if code != 250:
            raise AdapterConfigError(ADAPTER, f"{where} answered NOOP with code {code}; is it an SMTP server?")

    def send(self, message: Message) -> None:
        mail = self._compose(message)
        try:
            with self._connect() as smtp:
                smtp.send_message(mail, from_addr=self._sender, to_addrs=[message.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            permanent = all(code >= 500 for code in codes)
            raise DeliveryFailed(
                self.channel, f"recipient refused (code {', '.join(map(str, codes))})", permanent=permanent
            ) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            # 5xx on MAIL FROM or DATA is a policy decision (sender not allowed,
            # message rejected): the same message will be rejected again.
            raise DeliveryFailed(
                self.channel,
                f"server rejected the message ({type(exc).__name__}, code {exc.smtp_code})",
                permanent=exc.smtp_code >= 500,
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            # A configuration problem, not the message's: once the credentials
            # are fixed the retry delivers it, so this is not permanent.
            raise DeliveryFailed(self.channel, f"login refused (code {exc.smtp_code})") from None
        except (OSError, smtplib.SMTPException) as exc:
            # Refused connections, timeouts, disconnects and 4xx replies: retry later.
            raise DeliveryFailed(self.channel, f"SMTP server unavailable ({type(exc).__name__})") from None

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            smtp.ehlo()
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self._username is not None and self._password is not None:
                smtp.login(self._username, self._password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _compose(self, message: Message) -> EmailMessage:
        return compose(message, self._sender)


def compose(message: Message, sender: str) -> EmailMessage:
    """The email for a message: its stable Message-ID and key header, marked as automated."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.recipient
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(message.key)
    mail[KEY_HEADER] = message.key
    # RFC 3834: automated mail; keeps vacation responders from answering reminders.
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.body)
    return mail
