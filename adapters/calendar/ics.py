"""A folder of .ics files, one per event, and a feed of them all a practice can subscribe to.

Files are replaced atomically (written beside, then renamed), so a web
server publishing the folder or the feed never serves half an event. One
process should own a folder: the read-modify-write of an update is locked
within the process only.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import urllib.parse
from pathlib import Path

from kapflow.adapters.calendar._ical import InvalidIcs, event_ics, feed_ics, parse_event
from kapflow.adapters.calendar._revision import CHANNEL, cancelled, normalized, revised
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import CalendarEvent, Clock, SystemClock

ADAPTER = "ics"
SUFFIX = ".ics"
_MAX_STEM = 120  # well under the usual 255-byte file name limit


def file_stem(uid: str) -> str:
    """A file name for a uid: the uid itself, %-quoted, or its hash when that would be too long."""
    quoted = urllib.parse.quote(uid, safe="@-_.")
    if quoted.startswith("."):  # no hidden files, no "." or ".."
        quoted = "%2E" + quoted[1:]
    if len(quoted) <= _MAX_STEM:
        return quoted
    return "sha256-" + hashlib.sha256(uid.encode()).hexdigest()


class IcsCalendar:
    """Keeps each event in ``folder/<uid>.ics``; ``feed()`` joins them into one calendar."""

    def __init__(self, folder: str | os.PathLike[str], *, name: str = "kapflow", clock: Clock | None = None) -> None:
        self._folder = Path(folder)
        self._name = name
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        return self._folder

    def path(self, uid: str) -> Path:
        return self._folder / (file_stem(uid) + SUFFIX)

    def check(self) -> None:
        """The folder exists (it is created if missing) and takes new files."""
        try:
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # events name clients
            with tempfile.NamedTemporaryFile(dir=self._folder, prefix=".check-", suffix=".tmp"):
                pass
        except OSError as exc:
            raise AdapterConfigError(
                ADAPTER, f"cannot write to the calendar folder {self._folder} ({type(exc).__name__})"
            ) from None

    def upsert(self, event: CalendarEvent) -> None:
        event = normalized(event)
        with self._lock:
            self._write(revised(self._read(event.uid), event))

    def cancel(self, uid: str) -> None:
        with self._lock:
            self._write(cancelled(self._read(uid)))

    def get(self, uid: str) -> CalendarEvent | None:
        with self._lock:
            return self._read(uid)

    def feed(self) -> str:
        """Every event, cancelled ones included (so subscribers remove them), as one VCALENDAR text."""
        with self._lock:
            try:
                texts = [p.read_bytes() for p in sorted(self._folder.glob("*" + SUFFIX))]
            except FileNotFoundError:
                texts = []
            except OSError as exc:
                raise DeliveryFailed(CHANNEL, f"cannot read the calendar folder ({type(exc).__name__})") from None
        try:
            return feed_ics(texts, name=self._name)
        except ValueError:
            raise DeliveryFailed(CHANNEL, "a file in the calendar folder is not valid iCalendar") from None

    def _read(self, uid: str) -> CalendarEvent | None:
        try:
            text = self.path(uid).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DeliveryFailed(CHANNEL, f"cannot read the event file ({type(exc).__name__})") from None
        try:
            return parse_event(text, uid)
        except InvalidIcs as exc:
            raise DeliveryFailed(CHANNEL, f"the stored event file is unreadable: {exc}", permanent=True) from None

    def _write(self, event: CalendarEvent | None) -> None:
        if event is None:
            return
        target = self.path(event.uid)
        text = event_ics(event, stamp=self._clock.now())
        try:
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # events name clients
            fd, tmp = tempfile.mkstemp(dir=self._folder, prefix=".write-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                Path(tmp).replace(target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryFailed(CHANNEL, f"cannot write the event file ({type(exc).__name__})") from None
