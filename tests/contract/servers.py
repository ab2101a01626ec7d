"""Real servers the adapter contract tests talk to, each on a free port of 127.0.0.1.

- ``SmtpServer``: aiosmtpd in a thread, recording every message; recipients at
  ``tempfail.example`` get 451 and at ``nouser.example`` 550. It offers STARTTLS
  (or implicit TLS, or neither) with a self-signed certificate made by ``openssl``;
  ``client_context`` trusts it.
- ``HttpRecorder``: ``http.server`` in a thread, recording every request; a
  path starting ``/status/NNN`` is answered with status NNN, anything else 200.
- ``RadicaleServer``: Radicale 3.9 in a subprocess, anonymous, on a temporary folder.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
TEMPFAIL_DOMAIN = "tempfail.example"
NOUSER_DOMAIN = "nouser.example"


def free_port() -> int:
    """A port nothing listens on right now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once ``port`` accepts connections; fail after ``timeout`` seconds or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # bounded by the deadline: a server coming up
    raise TimeoutError(f"nothing listened on {HOST}:{port} within {timeout} s")


# --- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    encrypted: bool = False  # the session ran over TLS (STARTTLS or implicit)
    peer: str = ""  # the client's address and port: one per connection

    @property
    def key(self) -> str | None:
        value = self.message.get("X-Kapflow-Message-Key")
        return None if value is None else str(value)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return "" if part is None else str(part.get_content())


class _RecordingHandler:
    def __init__(self, *, require_auth: bool = False) -> None:
        self.lock = threading.Lock()
        self.mails: list[ReceivedMail] = []
        self.require_auth = require_auth

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # Refusing here rather than with aiosmtpd's auth_required, which warns
        # (and so fails under filterwarnings=error) when TLS is not required.
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain == TEMPFAIL_DOMAIN:
            return "451 4.3.0 Mailbox temporarily unavailable"
        if domain == NOUSER_DOMAIN:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        encrypted = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        with self.lock:
            self.mails.append(ReceivedMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed, encrypted,
                                           str(session.peer)))
        return "250 Message accepted for delivery"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, made with the ``openssl`` command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


SmtpTls = Literal["starttls", "implicit", "none"]


class SmtpServer:
    """aiosmtpd on a free port; ``mails`` lists what it accepted.

    ``tls``: STARTTLS offered (the default; AUTH only after it), implicit TLS, or none at all.
    """

    def __init__(self, *, auth: tuple[str, str] | None = None, tls: SmtpTls = "starttls") -> None:
        self.host = HOST
        self.port = free_port()
        self.tls = tls
        self._folder = tempfile.TemporaryDirectory(prefix="kapflow-smtp-")
        self._handler = _RecordingHandler(require_auth=auth is not None)
        kwargs: dict[str, Any] = {}
        self.client_context = ssl.create_default_context()
        server_context: ssl.SSLContext | None = None
        if tls != "none":
            cert, key = self_signed_certificate(Path(self._folder.name))
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(cert, key)
            self.client_context = ssl.create_default_context(cafile=str(cert))
        if auth is not None:
            user, password = auth

            def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
                from aiosmtpd.smtp import AuthResult, LoginPassword

                ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                    user.encode(),
                    password.encode(),
                )
                return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

            # AUTH only after STARTTLS; without TLS (a loopback relay) or with implicit TLS (aiosmtpd
            # only counts STARTTLS as TLS) it is offered as it is.
            kwargs = {"authenticator": check, "auth_require_tls": tls == "starttls"}
        if tls == "starttls":
            kwargs["tls_context"] = server_context
        elif tls == "implicit":
            kwargs["ssl_context"] = server_context
        self._controller = Controller(self._handler, hostname=self.host, port=self.port, **kwargs)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
        self._folder.cleanup()

    @property
    def mails(self) -> list[ReceivedMail]:
        with self._handler.lock:
            return list(self._handler.mails)

    def with_key(self, key: str) -> list[ReceivedMail]:
        return [m for m in self.mails if m.key == key]


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[ReceivedRequest] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    log: _Log  # set on the subclass HttpRecorder makes
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.log.lock:
            self.log.requests.append(ReceivedRequest(self.command, self.path, dict(self.headers.items()), body))
        status = 200
        parts = self.path.split("/")
        if len(parts) > 2 and parts[1] == "status" and parts[2].isdigit():
            status = int(parts[2])
        reply = b"{}" if status < 400 else b'{"error": "refused by the test server"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_OPTIONS = do_MKCALENDAR = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class HttpRecorder:
    """A threaded HTTP server on a free port recording requests; ``/status/NNN...`` answers NNN."""

    def __init__(self) -> None:
        self._log = _Log()
        handler = type("RecordingHandler", (_Handler,), {"log": self._log})
        self._server = http.server.ThreadingHTTPServer((HOST, 0), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.base_url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._log.lock:
            return list(self._log.requests)

    def to(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path.split("?")[0] == path]


# --- Radicale (CalDAV) ------------------------------------------------------------------------


class RadicaleServer:
    """Radicale in a subprocess; anonymous (any user name and password), storage in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        self._folder = folder
        self._log = folder / "radicale.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "radicale",
            "--config", "",
            "--server-hosts", f"{HOST}:{self.port}",
            "--auth-type", "none",
            # Radicale waits a second after a 401 (the client's first, anonymous
            # request) and after a 5xx; no use against brute force on loopback.
            "--auth-delay", "0",
            "--server-delay-on-error", "0",
            "--storage-filesystem-folder", str(self._folder / "collections"),
            "--logging-level", "warning",
        ]  # fmt: skip
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, process=self._process)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
