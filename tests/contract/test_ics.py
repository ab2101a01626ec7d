"""IcsCalendar beyond the contract: the files, the feed, and what a calendar client reads from them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from kapflow.adapters.calendar.ics import IcsCalendar, file_stem
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import CalendarEvent
from kapflow.testing import FakeClock

START = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)
STAMP = datetime(2026, 1, 20, 8, 0, tzinfo=UTC)


def session(uid: str = "case-1-a2@kapflow", minutes: int = 135) -> CalendarEvent:
    return CalendarEvent(
        uid=uid,
        summary="KAP session (in person)",
        starts_at=START,
        ends_at=START + timedelta(minutes=minutes),
        location="Office 2",
        alarms=(timedelta(hours=24),),
    )


@pytest.fixture
def calendar(tmp_path: Path) -> IcsCalendar:
    return IcsCalendar(tmp_path / "cal", name="Practice appointments", clock=FakeClock(STAMP))


def test_one_file_per_event_as_rfc_5545(calendar: IcsCalendar) -> None:
    """The file holds one VEVENT: UTC times, SEQUENCE, STATUS, an alarm a day before, the clock's DTSTAMP."""
    calendar.upsert(session())
    [path] = calendar.folder.glob("*.ics")
    assert path == calendar.path("case-1-a2@kapflow") and path.name == "case-1-a2@kapflow.ics"
    text = path.read_bytes().decode()
    assert text.startswith("BEGIN:VCALENDAR\r\n")
    for line in (
        "DTSTART:20260202T150000Z",
        "DTEND:20260202T171500Z",
        "DTSTAMP:20260120T080000Z",
        "SEQUENCE:0",
        "STATUS:CONFIRMED",
        "TRIGGER:-P1D",
        "ACTION:DISPLAY",
        "PRODID:-//kapflow//kapflow calendar//EN",
    ):
        assert line + "\r\n" in text
    assert "KAP session" not in text.split("BEGIN:VALARM")[1], "the alarm must not repeat the summary"


def test_the_feed_holds_every_event_cancelled_ones_included(calendar: IcsCalendar) -> None:
    """One VCALENDAR, named, with each event once; a cancelled one says CANCELLED so subscribers drop it."""
    calendar.upsert(session("case-1-a1@kapflow", 60))
    calendar.upsert(session("case-1-a2@kapflow", 135))
    calendar.cancel("case-1-a1@kapflow")
    feed = calendar.feed()
    parsed = icalendar.Calendar.from_ical(feed)
    assert str(parsed["X-WR-CALNAME"]) == "Practice appointments"
    events = {str(e["UID"]): e for e in parsed.walk("VEVENT")}
    assert set(events) == {"case-1-a1@kapflow", "case-1-a2@kapflow"}
    assert str(events["case-1-a1@kapflow"]["STATUS"]) == "CANCELLED"
    assert str(events["case-1-a2@kapflow"]["STATUS"]) == "CONFIRMED"
    assert feed.count("BEGIN:VCALENDAR") == 1


def test_the_feed_of_an_empty_or_missing_folder_is_an_empty_calendar(tmp_path: Path) -> None:
    feed = IcsCalendar(tmp_path / "never-created").feed()
    assert icalendar.Calendar.from_ical(feed).walk("VEVENT") == []


@pytest.mark.parametrize("uid", ["../../escape@kapflow", "a/b\\c:d@kapflow", ".hidden", "x" * 400])
def test_any_uid_stays_inside_the_folder(calendar: IcsCalendar, uid: str) -> None:
    """Slashes, dots and very long uids make safe file names in the folder, and read back."""
    calendar.upsert(session(uid))
    path = calendar.path(uid)
    assert path.parent == calendar.folder and not path.name.startswith(".")
    assert len(path.name) < 200
    stored = calendar.get(uid)
    assert stored is not None and stored.uid == uid


def test_file_names_differ_for_different_uids() -> None:
    assert file_stem("a/b") != file_stem("a_b") and file_stem("x" * 400) != file_stem("x" * 401)


def test_check_creates_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "calendar"
    IcsCalendar(folder).check()
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_check_refuses_a_folder_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(AdapterConfigError, match="cannot write"):
        IcsCalendar(tmp_path / "file" / "calendar").check()


def test_a_corrupt_file_is_a_permanent_failure(calendar: IcsCalendar) -> None:
    """A file edited by hand into nonsense is reported, not silently replaced."""
    calendar.upsert(session())
    calendar.path(session().uid).write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    with pytest.raises(DeliveryFailed) as caught:
        calendar.get(session().uid)
    assert caught.value.permanent


def test_an_update_rewrites_the_file_in_place(calendar: IcsCalendar) -> None:
    """A reschedule leaves one file, no temporary files behind."""
    event = session()
    calendar.upsert(event)
    calendar.upsert(replace(event, starts_at=START + timedelta(days=1), ends_at=START + timedelta(days=1, hours=2)))
    assert [p.name for p in calendar.folder.iterdir()] == ["case-1-a2@kapflow.ics"]
    assert "SEQUENCE:1\r\n" in calendar.path(event.uid).read_bytes().decode()
