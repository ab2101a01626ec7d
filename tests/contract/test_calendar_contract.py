"""The Calendar contract: every calendar adapter passes the same tests, the CalDAV one against Radicale.

``CalendarContract`` holds the tests; each ``Test*`` class plugs one adapter
in through a ``harness`` fixture: a fresh, checked calendar, a way to count
the stored copies of an event, and a configuration the server refuses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from caldav.davclient import DAVClient
from contract.servers import HttpRecorder, RadicaleServer

from kapflow.adapters.calendar.caldav import CalDAVCalendar
from kapflow.adapters.calendar.ics import IcsCalendar
from kapflow.adapters.calendar.memory import MemoryCalendar
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Calendar, CalendarEvent

START = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)
EVALUATION_MINUTES = 60  # prescriber evaluation, intention setting, integration
KAP_SESSION_MINUTES = 135  # dosing with the clinician present, then integration


@dataclass
class Harness:
    calendar: Calendar
    count: Callable[[str], int]  # how many stored events carry this uid
    refusing: Callable[[], Calendar] | None  # None: the adapter has no server to refuse


def appointment(minutes: int = EVALUATION_MINUTES, **overrides: object) -> CalendarEvent:
    """A synthetic appointment with a uid of its own."""
    fields: dict[str, object] = {
        "uid": f"case-{uuid.uuid4().hex[:8]}-a1@kapflow",
        "summary": "Prescriber evaluation (in person)",
        "starts_at": START,
        "ends_at": START + timedelta(minutes=minutes),
        "location": "Office 2, 100 Example Street",
        "description": "kapflow case case-test, appointment a1",
        "alarms": (timedelta(hours=24),),
    }
    fields.update(overrides)
    return CalendarEvent(**fields)


class CalendarContract:
    """The tests every calendar passes. Subclasses provide the ``harness`` fixture."""

    def test_get_of_an_unknown_uid_is_none(self, harness: Harness) -> None:
        """An event never written is not there."""
        assert harness.calendar.get("never-written@kapflow") is None

    def test_upsert_creates_the_event(self, harness: Harness) -> None:
        """What was written reads back equal, once."""
        event = appointment()
        harness.calendar.upsert(event)
        assert harness.calendar.get(event.uid) == event
        assert harness.count(event.uid) == 1

    @pytest.mark.parametrize("minutes", [EVALUATION_MINUTES, KAP_SESSION_MINUTES])
    def test_the_duration_is_kept(self, harness: Harness, minutes: int) -> None:
        """A 60-minute appointment and a 135-minute KAP session keep their length."""
        event = appointment(minutes, summary="KAP session (in person)")
        harness.calendar.upsert(event)
        stored = harness.calendar.get(event.uid)
        assert stored is not None
        assert stored.ends_at - stored.starts_at == timedelta(minutes=minutes)

    def test_alarms_are_kept(self, harness: Harness) -> None:
        """Every alarm reads back, as the same offset before the start, in order."""
        event = appointment(alarms=(timedelta(hours=72), timedelta(hours=24), timedelta(minutes=30)))
        harness.calendar.upsert(event)
        stored = harness.calendar.get(event.uid)
        assert stored is not None and stored.alarms == event.alarms

    def test_an_event_without_alarms_or_location_reads_back_so(self, harness: Harness) -> None:
        """Empty fields stay empty."""
        event = appointment(alarms=(), location="", description="")
        harness.calendar.upsert(event)
        assert harness.calendar.get(event.uid) == event

    def test_upsert_with_the_same_uid_replaces(self, harness: Harness) -> None:
        """A reschedule leaves one event, at the new time, with a higher SEQUENCE."""
        event = appointment()
        harness.calendar.upsert(event)
        later = START + timedelta(days=2, hours=1)
        harness.calendar.upsert(replace(event, starts_at=later, ends_at=later + timedelta(minutes=60)))
        stored = harness.calendar.get(event.uid)
        assert stored is not None
        assert stored.starts_at == later
        assert stored.sequence > event.sequence
        assert harness.count(event.uid) == 1

    def test_a_callers_higher_sequence_is_kept(self, harness: Harness) -> None:
        """When the caller counts changes itself, its SEQUENCE is stored as given."""
        event = appointment(sequence=3)
        harness.calendar.upsert(event)
        harness.calendar.upsert(replace(event, summary="Prescriber evaluation (telehealth)", sequence=4))
        stored = harness.calendar.get(event.uid)
        assert stored is not None and stored.sequence == 4

    def test_writing_the_same_event_again_changes_nothing(self, harness: Harness) -> None:
        """A retried delivery does not bump SEQUENCE."""
        event = appointment(sequence=2)
        harness.calendar.upsert(event)
        harness.calendar.upsert(event)
        assert harness.calendar.get(event.uid) == event
        assert harness.count(event.uid) == 1

    def test_cancel_marks_the_event_cancelled(self, harness: Harness) -> None:
        """Cancelling keeps the event, STATUS:CANCELLED, with a higher SEQUENCE; twice is once."""
        event = appointment()
        harness.calendar.upsert(event)
        harness.calendar.cancel(event.uid)
        stored = harness.calendar.get(event.uid)
        assert stored is not None
        assert stored.cancelled and stored.sequence > event.sequence
        harness.calendar.cancel(event.uid)
        assert harness.calendar.get(event.uid) == stored
        assert harness.count(event.uid) == 1

    def test_an_upsert_with_cancelled_set_cancels(self, harness: Harness) -> None:
        """The caller may send the cancelled version itself."""
        event = appointment()
        harness.calendar.upsert(event)
        harness.calendar.upsert(replace(event, cancelled=True, sequence=1))
        stored = harness.calendar.get(event.uid)
        assert stored is not None and stored.cancelled and stored.sequence == 1

    def test_cancel_of_an_unknown_uid_is_ignored(self, harness: Harness) -> None:
        """Nothing to cancel, nothing happens."""
        harness.calendar.cancel("never-written@kapflow")
        assert harness.calendar.get("never-written@kapflow") is None

    def test_times_are_stored_in_the_practices_zone(self, harness: Harness) -> None:
        """A start given in the practice's zone reads back as the same instant, in that zone (clinic time)."""
        local = datetime(2026, 7, 6, 9, 30, tzinfo=ZoneInfo("America/Los_Angeles"))
        event = appointment(starts_at=local, ends_at=local + timedelta(minutes=KAP_SESSION_MINUTES))
        harness.calendar.upsert(event)
        stored = harness.calendar.get(event.uid)
        assert stored is not None
        assert stored.starts_at == local and stored.starts_at.utcoffset() == timedelta(hours=-7)
        assert stored.starts_at.hour == 9

    def test_text_outside_ascii_survives(self, harness: Harness) -> None:
        """Summaries and locations in any script read back unchanged."""
        event = appointment(summary="Séance d'intégration — suivi", location="Büro 3; Straße 5, Zürich")
        harness.calendar.upsert(event)
        assert harness.calendar.get(event.uid) == event

    @pytest.mark.parametrize(
        "broken",
        [
            {"starts_at": datetime(2026, 2, 2, 15, 0)},  # no time zone
            {"ends_at": START},  # ends when it starts
            {"ends_at": START - timedelta(minutes=5)},
        ],
    )
    def test_impossible_times_fail_permanently(self, harness: Harness, broken: dict[str, datetime]) -> None:
        """An event that cannot be stored is a permanent DeliveryFailed, and nothing is written."""
        event = appointment(**broken)
        with pytest.raises(DeliveryFailed) as caught:
            harness.calendar.upsert(event)
        assert caught.value.permanent
        assert harness.calendar.get(event.uid) is None

    def test_check_passes_on_a_working_configuration(self, harness: Harness) -> None:
        """check() is silent, and may run again."""
        harness.calendar.check()
        harness.calendar.check()

    def test_check_on_a_refusing_server_names_the_problem(self, harness: Harness) -> None:
        """check() raises AdapterConfigError when the calendar cannot be used."""
        if harness.refusing is None:
            pytest.skip("this calendar has no server that could refuse")
        with pytest.raises(AdapterConfigError) as caught:
            harness.refusing().check()
        assert caught.value.problem


# --- CalDAV (Radicale) --------------------------------------------------------------------------

USER, PASSWORD = "practice", "synthetic-password"


class TestCalDAVCalendar(CalendarContract):
    @pytest.fixture
    def harness(self, radicale: RadicaleServer, http_recorder: HttpRecorder) -> Harness:
        name = f"kap-{uuid.uuid4().hex[:8]}"
        calendar = CalDAVCalendar(radicale.url, USER, PASSWORD, name, timeout=30)
        calendar.check()

        def count(uid: str) -> int:
            with DAVClient(url=radicale.url, username=USER, password=PASSWORD, enable_rfc6764=False) as client:
                events = client.calendar(url=f"{radicale.url}{USER}/{name}/").get_events()
                return sum(1 for e in events if e.id == uid)

        return Harness(
            calendar=calendar,
            count=count,
            refusing=lambda: CalDAVCalendar(http_recorder.base_url + "/status/403/", USER, PASSWORD, name, timeout=30),
        )


# --- .ics folder ---------------------------------------------------------------------------------


class TestIcsCalendar(CalendarContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        calendar = IcsCalendar(tmp_path / "calendar")
        calendar.check()
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the folder should be")

        def count(uid: str) -> int:
            return calendar.feed().count(f"UID:{uid}")

        return Harness(calendar=calendar, count=count, refusing=lambda: IcsCalendar(blocker / "calendar"))


# --- memory -------------------------------------------------------------------------------------


class TestMemoryCalendar(CalendarContract):
    @pytest.fixture
    def harness(self) -> Harness:
        calendar = MemoryCalendar()
        return Harness(
            calendar=calendar,
            count=lambda uid: sum(1 for e in calendar.events() if e.uid == uid),
            refusing=None,
        )
