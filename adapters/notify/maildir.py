"""Email into a local Maildir folder: for a practice's own mail pickup, for trials, and for the demo.

Each message is written to ``tmp/`` and renamed into ``new/`` under a name
derived from its key, so a message is in the folder at most once however
often it is delivered (a rename is atomic, and a second delivery finds it).
Any mail client that reads Maildir (mutt, Thunderbird with a plug-in,
Python's ``mailbox``) can open the folder. Folders kapflow creates are 0700 and
messages 0600: they hold names and appointments.
"""

from __future__ import annotations

import hashlib
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from kapflow.adapters.notify.smtp import compose
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Clock, Message, SystemClock

ADAPTER = "maildir"


class MaildirNotifier:
    """Delivers ``email`` messages as files in a Maildir (``new/``, ``cur/``, ``tmp/``)."""

    def __init__(
        self, folder: str | os.PathLike[str], *, sender: str = "kapflow@localhost", clock: Clock | None = None
    ) -> None:
        self._folder = Path(folder)
        self._sender = sender
        self._clock = clock or SystemClock()  # dates each message: the engine's clock, simulated or not

    @property
    def channel(self) -> str:
        return "email"

    @property
    def folder(self) -> Path:
        return self._folder

    def check(self) -> None:
        """Create the folder's ``new``, ``cur`` and ``tmp`` if missing, and check it can be written."""
        try:
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in ("new", "cur", "tmp"):
                (self._folder / sub).mkdir(mode=0o700, exist_ok=True)
            probe = self._folder / "tmp" / ".kapflow-check"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise AdapterConfigError(
                ADAPTER, f"cannot write to the Maildir folder ({type(exc).__name__}); check the path and permissions"
            ) from None

    def send(self, message: Message) -> None:
        name = hashlib.sha256(message.key.encode()).hexdigest()[:40] + ".kapflow"
        new, cur = self._folder / "new" / name, self._folder / "cur"
        try:
            if new.exists() or any(cur.glob(name + "*")):
                return  # delivered before: the folder holds each message once
            tmp = self._folder / "tmp" / name
            # Messages hold names and appointments: readable by the practice's account only.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(compose(message, self._sender, self._clock.now())))
            tmp.replace(new)
        except OSError as exc:
            raise DeliveryFailed(self.channel, f"cannot write to the Maildir ({type(exc).__name__})") from None

    def messages(self) -> list[EmailMessage]:
        """Every message in the folder, oldest first (by file time)."""
        files = [p for sub in ("new", "cur") for p in (self._folder / sub).glob("*") if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        found = []
        for path in files:
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(mail, EmailMessage)
            found.append(mail)
        return found
