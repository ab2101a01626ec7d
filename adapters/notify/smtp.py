"""Email through an SMTP server, with the standard library's ``smtplib``.

Every message gets a ``Message-ID`` derived from its key, so a resend after a
worker died mid-send is recognisable as the same message by mail clients and
by the receiving server's duplicate filters, and an ``X-Kapflow-Message-Key``
header for tools that deduplicate on the key itself.

Mail is encrypted by default: STARTTLS, or implicit TLS on port 465, with the
server's certificate verified. Cleartext (``starttls=False``) is only for a relay
on this machine, and only when allowed explicitly (``allow_cleartext_loopback``);
a login never travels in clear otherwise.

Errors never carry the recipient, subject or body, nor the server's reply
text (servers often echo the address back): only SMTP status codes and
exception class names.
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import smtplib
import ssl
import threading
import time
from datetime import datetime
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Clock, Message, SystemClock

ADAPTER = "smtp"
KEY_HEADER = "X-Kapflow-Message-Key"
IMPLICIT_TLS_PORT = 465
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
KEPT_HEADERS = 512
"""Parsed headers kept for the next messages (each message's own Date, Message-ID and key header pass through)."""
IDLE_PROBE_S = 5.0
"""A connection kept idle longer than this is asked NOOP before it carries a message."""


class _LoginFailed(Exception):
    """The server would not log us in (a 535, or a hang-up in the middle of AUTH)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code

    def describe(self) -> str:
        return "authentication failed" + (f" (code {self.code})" if self.code is not None else "")


def message_id(key: str) -> str:
    """A stable RFC 5322 Message-ID for a message key (the key itself may hold characters ids cannot)."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@kapflow>"


class SmtpNotifier:
    """Delivers ``email`` messages through one SMTP server, over a connection kept between messages.

    Each thread that sends has a session of its own, so the worker may send ``concurrency`` at once.
    """

    concurrency = 2

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        implicit_tls: bool | None = None,
        allow_cleartext_loopback: bool = False,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10,
        clock: Clock | None = None,
    ) -> None:
        """``implicit_tls`` defaults to ``port == 465``; ``tls_context`` to the system's trusted CAs.

        ``clock`` dates the mail (its ``Date`` header): the engine's, so a simulated practice's mail
        carries its simulated time.
        """
        self._clock = clock or SystemClock()
        if (username is None) != (password is None):
            raise AdapterConfigError(ADAPTER, "give both username and password, or neither")
        self._implicit = port == IMPLICIT_TLS_PORT if implicit_tls is None else implicit_tls
        self._cleartext = not self._implicit and not starttls
        if self._cleartext and not (allow_cleartext_loopback and host.lower() in LOOPBACK_HOSTS):
            raise AdapterConfigError(
                ADAPTER,
                "cleartext SMTP is only for a relay on this machine (127.0.0.1, ::1 or localhost) with "
                "allow_cleartext_loopback; use STARTTLS (starttls = true) or implicit TLS (port 465)",
            )
        self._tls_context = tls_context
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._timeout = timeout
        # A session per sending thread (the worker sends ``concurrency`` messages at once), kept between messages.
        self._mine = threading.local()
        self._lock = threading.Lock()  # guards the set of every thread's session, for ``close``
        self._sessions: set[smtplib.SMTP] = set()

    @property
    def channel(self) -> str:
        return "email"

    def check(self) -> None:
        """Connect, greet, log in if configured, and say NOOP; nothing is sent."""
        where = f"the SMTP server at {self._host}:{self._port}"
        try:
            with self._connect() as smtp:
                code, _ = smtp.noop()
        except _LoginFailed as exc:
            raise AdapterConfigError(
                ADAPTER, f"{where} refused the login: {exc.describe()}; check username and password_env"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise AdapterConfigError(
                ADAPTER, f"{where} does not offer STARTTLS or AUTH as configured; check starttls and the port"
            ) from None
        except ssl.SSLError as exc:
            raise AdapterConfigError(
                ADAPTER, f"TLS with {where} failed ({type(exc).__name__}); check its certificate, and that "
                "port 465 is implicit TLS and other ports STARTTLS",
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
            smtp = self._connection()
            try:
                smtp.send_message(mail, from_addr=self._sender, to_addrs=[message.recipient])
            except BaseException:
                self._drop()  # whatever state the session is in, the next message starts a new one
                raise
            self._mine.last_used = time.monotonic()
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
        except _LoginFailed as exc:
            # A configuration problem, not the message's: once the credentials
            # are fixed the retry delivers it, so this is not permanent.
            raise DeliveryFailed(self.channel, f"login refused: {exc.describe()}") from None
        except ssl.SSLError as exc:
            raise DeliveryFailed(self.channel, f"TLS with the SMTP server failed ({type(exc).__name__})") from None
        except (OSError, smtplib.SMTPException) as exc:
            # Refused connections, timeouts, disconnects and 4xx replies: retry later.
            raise DeliveryFailed(self.channel, f"SMTP server unavailable ({type(exc).__name__})") from None

    def close(self) -> None:
        """Say QUIT on the connection kept between messages, if any (the worker's shutdown)."""
        with self._lock:
            sessions, self._sessions = self._sessions, set()
        for kept in sessions:
            try:
                kept.quit()
            except (OSError, smtplib.SMTPException):
                kept.close()

    def __del__(self) -> None:
        # A notifier dropped without ``close`` (an embedder's, a test's) closes its sockets, without QUIT.
        for kept in getattr(self, "_sessions", ()):
            kept.close()

    def _connection(self) -> smtplib.SMTP:
        """The connection kept from the last message, or a new one (connected, greeted, logged in).

        One connection carries a burst of messages: a new one per message (TCP, EHLO, STARTTLS, AUTH)
        would cost more than the message. One kept idle longer than ``IDLE_PROBE_S`` is asked NOOP
        first, as servers close idle sessions: a message never starts on a session that is gone.
        """
        kept: smtplib.SMTP | None = getattr(self._mine, "kept", None)
        if kept is not None and time.monotonic() - self._mine.last_used > IDLE_PROBE_S:
            try:
                alive = kept.noop()[0] == 250
            except (OSError, smtplib.SMTPException):
                alive = False
            if not alive:
                self._drop()
                kept = None
        if kept is None:
            kept = self._connect()
            self._mine.kept = kept
            with self._lock:
                self._sessions.add(kept)
        return kept

    def _drop(self) -> None:
        kept: smtplib.SMTP | None = getattr(self._mine, "kept", None)
        self._mine.kept = None
        if kept is not None:
            with self._lock:
                self._sessions.discard(kept)
            kept.close()

    def _connect(self) -> smtplib.SMTP:
        smtp = (
            smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=self._context())
            if self._implicit else smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        )
        try:
            smtp.ehlo()
            if not self._implicit and not self._cleartext:
                smtp.starttls(context=self._context())  # SMTPNotSupportedError if the server cannot: never in clear
                smtp.ehlo()
            if self._username is not None and self._password is not None:
                self._login(smtp, self._username, self._password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _context(self) -> ssl.SSLContext:
        """The TLS context, made once: loading the system's trusted authorities took 30 ms, as long as a
        hundred messages (contexts are safe to share between threads)."""
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    def _login(self, smtp: smtplib.SMTP, username: str, password: str) -> None:
        if not isinstance(smtp.sock, ssl.SSLSocket) and not self._cleartext:
            raise smtplib.SMTPNotSupportedError("no TLS")  # unreachable by construction; never log in in clear
        try:
            smtp.login(username, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise _LoginFailed(exc.smtp_code) from None
        except smtplib.SMTPResponseException as exc:  # e.g. 454 or 504 to AUTH: the login did not happen
            raise _LoginFailed(exc.smtp_code) from None
        except smtplib.SMTPServerDisconnected:  # servers hang up on repeated bad logins
            raise _LoginFailed(None) from None

    def _compose(self, message: Message) -> EmailMessage:
        return compose(message, self._sender, self._clock.now())


class _KeptHeaders(HeaderRegistry):
    """The standard header registry, keeping each header's class and the headers it parsed last.

    The registry builds a new class (``type``) every time a header is set, which was a fifth of composing
    a reminder, and parsing the header's value (an address, the content type) was most of the rest: a
    header is an immutable string whose parse depends on its name and value alone, and most of a reminder's
    (the sender, the practice's desk, the content headers) are the same in every message.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}
        self._parsed = functools.lru_cache(maxsize=KEPT_HEADERS)(super().__call__)

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: Any) -> Any:
        if type(value) is not str:  # an Address or a header object: built by the caller, not parsed here
            return super().__call__(name, value)
        return self._parsed(name, value)


_UNFOLDED = email.policy.default.clone(max_line_length=998, header_factory=_KeptHeaders())
"""Header lines up to RFC 5322's hard limit: a long key folded onto a second line would read back with
a leading space (Python's parser keeps it), and a receiver's duplicate filter would not match it."""


def compose(message: Message, sender: str, at: datetime) -> EmailMessage:
    """The email for a message sent ``at``: its stable Message-ID and key header, marked as automated."""
    mail = EmailMessage(policy=_UNFOLDED)
    mail["From"] = sender
    mail["To"] = message.recipient
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(at.timestamp(), usegmt=True)
    mail["Message-ID"] = message_id(message.key)
    mail[KEY_HEADER] = message.key
    # RFC 3834: automated mail; keeps vacation responders from answering reminders.
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.body)
    return mail
