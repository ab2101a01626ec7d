"""Calendar events show the clinic's time and a neutral summary: shared calendars read them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from support import FRONT_DESK, INQUIRY, who

from kapflow import build_engine
from kapflow.adapters.calendar.ics import IcsCalendar
from kapflow.app.dispatch import Dispatcher
from kapflow.config import Settings
from kapflow.testing import FakeClock


def test_an_appointment_is_written_in_the_practices_zone_with_a_neutral_summary(tmp_path: Path) -> None:
    """A New York evaluation at 15:00 UTC in March reads 11:00 EDT (TZID and VTIMEZONE), titled neutrally."""
    clock = FakeClock(datetime(2026, 3, 2, 14, tzinfo=UTC))
    settings = Settings(timezone="America/New_York")
    with build_engine(f"sqlite:///{tmp_path / 'k.db'}", clock=clock, settings=settings, calendar_sync=True) as e:
        calendar = IcsCalendar(tmp_path / "calendar", clock=clock)
        case_id = e.open_case(INQUIRY, actor=FRONT_DESK).case_id
        e.book_appointment(case_id, "evaluation", datetime(2026, 3, 10, 15, tzinfo=UTC), actor=FRONT_DESK,
                           **who(case_id))
        Dispatcher(e, {}, calendar, worker_id="w").run_until_idle()
    (ics,) = [p.read_text(encoding="utf-8") for p in (tmp_path / "calendar").rglob("*.ics")]
    lines = ics.splitlines()
    assert "DTSTART;TZID=America/New_York:20260310T110000" in lines
    assert "BEGIN:VTIMEZONE" in lines and "TZID:America/New_York" in lines
    assert "SUMMARY:Appointment at the practice" in lines
    assert "evaluation" not in ics.lower().replace("kapflow case", "")  # the kind names the treatment
    stored = calendar.get(f"{case_id}-a1@kapflow")
    assert stored is not None and stored.starts_at == datetime(2026, 3, 10, 15, tzinfo=UTC)
