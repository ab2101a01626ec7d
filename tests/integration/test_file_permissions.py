"""Files kapflow creates that hold protected health information are private (0600, folders 0700) under umask 022."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import open_case

from kapflow import Engine
from kapflow.adapters.calendar.ics import IcsCalendar
from kapflow.adapters.notify.maildir import MaildirNotifier
from kapflow.ports import CalendarEvent, Message
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The usual umask (022), under which files are created 0644 unless their creator says otherwise."""
    saved = os.umask(0o022)
    yield
    os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_and_its_wal_and_shm_are_private(tmp_path: Path, clock: FakeClock) -> None:
    """The database, its -wal and its -shm are 0600 from their creation."""
    db = tmp_path / "kapflow.db"
    store = SqlStore(f"sqlite:///{db}")
    try:
        open_case(Engine(store, KAP_PATHWAY, clock=clock))
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()
        assert {p.name: mode(p) for p in (db, wal, shm)} == {p.name: 0o600 for p in (db, wal, shm)}
    finally:
        store.close()
    assert os.umask(0o022) == 0o022  # the process's umask is left as it was


def test_maildir_folders_and_messages_are_private(tmp_path: Path) -> None:
    """The Maildir and its new/cur/tmp are 0700, each message 0600."""
    folder = tmp_path / "mail"
    notifier = MaildirNotifier(folder)
    notifier.check()
    notifier.send(Message(key="k-1", channel="email", recipient="sample.client@example.org",
                          subject="Your appointment", body="Hello Sample"))
    assert {p.name: mode(p) for p in (folder, *(folder / s for s in ("new", "cur", "tmp")))} == {
        "mail": 0o700, "new": 0o700, "cur": 0o700, "tmp": 0o700}
    [message] = list((folder / "new").iterdir())
    assert mode(message) == 0o600


def test_the_ics_calendar_folder_and_its_events_are_private(tmp_path: Path) -> None:
    """The calendar folder is 0700 and each event file 0600, whether check() or a write creates it."""
    for created_by_check in (True, False):
        folder = tmp_path / f"calendar-{created_by_check}"
        calendar = IcsCalendar(folder)
        if created_by_check:
            calendar.check()
        start = datetime(2026, 3, 2, 15, tzinfo=UTC)
        calendar.upsert(CalendarEvent(uid="appt-1", summary="Evaluation", starts_at=start,
                                      ends_at=start + timedelta(hours=1)))
        assert mode(folder) == 0o700
        assert mode(calendar.path("appt-1")) == 0o600
