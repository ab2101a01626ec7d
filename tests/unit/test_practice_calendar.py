"""The practice's calendar: local days, closed days, and times as staff and clients read them (issue 14, 3-4)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kapflow.bootstrap import practice_calendar
from kapflow.config import ClosedDaysSettings, Settings, load_settings
from kapflow.domain.calendar import PracticeCalendar
from kapflow.errors import ConfigError
from kapflow.public_holidays import closed_days

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")


def _local(tz: ZoneInfo, y: int, mo: int, d: int, h: int, mi: int = 0, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz, fold=fold).astimezone(UTC)


# --- how a time reads ------------------------------------------------------------------------------


def test_the_repeated_hour_of_the_autumn_change_reads_with_its_abbreviation() -> None:
    """On 1 November 2026, 01:30 happens twice in New York: EDT first, then EST."""
    cal = PracticeCalendar(NEW_YORK)
    first, second = _local(NEW_YORK, 2026, 11, 1, 1, 30), _local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)
    assert second - first == timedelta(hours=1)
    assert (cal.time_text(first), cal.time_text(second)) == ("2026-11-01 01:30 EDT", "2026-11-01 01:30 EST")


@pytest.mark.parametrize(
    ("tz", "clock", "local", "text"),
    [
        (NEW_YORK, "24h", (2026, 3, 9, 14, 5), "Monday 9 March 2026 at 14:05 EDT"),
        (NEW_YORK, "12h", (2026, 3, 9, 14, 5), "Monday 9 March 2026 at 2:05 PM EDT"),
        (NEW_YORK, "12h", (2026, 3, 9, 0, 30), "Monday 9 March 2026 at 12:30 AM EDT"),
        (NEW_YORK, "12h", (2026, 3, 9, 12, 0), "Monday 9 March 2026 at 12:00 PM EDT"),
        (SYDNEY, "24h", (2026, 4, 6, 10, 0), "Monday 6 April 2026 at 10:00 AEST"),
        (KOLKATA, "12h", (2026, 6, 1, 9, 15), "Monday 1 June 2026 at 9:15 AM IST"),
    ],
)
def test_a_client_reads_the_time_in_the_practices_clock_style(
    tz: ZoneInfo, clock: str, local: tuple[int, ...], text: str
) -> None:
    cal = PracticeCalendar(tz, clock="12h" if clock == "12h" else "24h")
    assert cal.long_text(_local(tz, *local)) == text


def test_without_a_zone_times_read_as_utc() -> None:
    assert PracticeCalendar().time_text(datetime(2026, 3, 9, 15, 0, tzinfo=UTC)) == "2026-03-09 15:00 UTC"


# --- days on the local calendar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "start", "days", "end"),
    [
        (NEW_YORK, (2026, 3, 2, 10, 0), 7, (2026, 3, 9, 10, 0)),  # over the spring change: 167 hours
        (NEW_YORK, (2026, 10, 26, 10, 0), 7, (2026, 11, 2, 10, 0)),  # over the autumn change: 169 hours
        (SYDNEY, (2026, 10, 1, 9, 0), 7, (2026, 10, 8, 9, 0)),
        (KOLKATA, (2026, 3, 1, 23, 30), 1, (2026, 3, 2, 23, 30)),
        (NEW_YORK, (2026, 11, 30, 9, 0), -14, (2026, 11, 16, 9, 0)),
    ],
)
def test_whole_days_are_local_days_at_the_same_wall_clock_time(
    tz: ZoneInfo, start: tuple[int, ...], days: int, end: tuple[int, ...]
) -> None:
    cal = PracticeCalendar(tz)
    assert cal.later(_local(tz, *start), timedelta(days=days)) == _local(tz, *end)


def test_hours_are_elapsed_time_even_across_a_change() -> None:
    """A delay that is not whole days is elapsed: 36 hours after Saturday 22:00 EST is Monday 11:00 EDT."""
    cal = PracticeCalendar(NEW_YORK)
    assert cal.later(_local(NEW_YORK, 2026, 3, 7, 22), timedelta(hours=36)) == _local(NEW_YORK, 2026, 3, 9, 11)


# --- business days and closed days --------------------------------------------------------------------


def test_business_days_skip_the_practices_public_holidays_and_its_own_closed_days() -> None:
    """Thanksgiving (Thursday 26 November 2026) and the practice's own closed Friday are not business days."""
    closed = closed_days(ClosedDaysSettings("US", frozenset({date(2026, 11, 27)})))
    cal = PracticeCalendar(NEW_YORK, closed)
    wednesday = _local(NEW_YORK, 2026, 11, 25, 15)
    assert cal.add_business_days(wednesday, 2) == _local(NEW_YORK, 2026, 12, 1, 15)  # Mon 30 Nov, then Tue 1 Dec
    assert not cal.is_business_day(date(2026, 11, 26)) and not cal.is_business_day(date(2026, 11, 27))


def test_a_public_holiday_the_practice_works_is_a_business_day() -> None:
    """Independence Day falls on a Saturday in 2026: observed on Friday 3 July, unless the practice opens."""
    observed = date(2026, 7, 3)
    assert closed_days(ClosedDaysSettings("US"))(observed)
    assert not closed_days(ClosedDaysSettings("US", open=frozenset({observed})))(observed)


def test_a_regions_holidays_are_its_own() -> None:
    """Australia Day is closed in New South Wales; the King's Birthday dates differ between states."""
    nsw = closed_days(ClosedDaysSettings("AU-NSW"))
    assert nsw(date(2026, 1, 26))
    assert nsw(date(2026, 6, 8)) and not closed_days(ClosedDaysSettings("AU-WA"))(date(2026, 6, 8))


def test_an_unknown_country_is_a_clear_settings_error() -> None:
    with pytest.raises(ConfigError, match="no public holidays are known for 'XX'"):
        closed_days(ClosedDaysSettings("XX"))


# --- the settings --------------------------------------------------------------------------------------


def _settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "kapflow.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, {})


def test_the_settings_build_the_practices_calendar(tmp_path: Path) -> None:
    settings = _settings(tmp_path, (
        'timezone = "America/New_York"\nclock = "12h"\n'
        '[closed_days]\npublic_holidays = "US-NY"\ndates = ["2026-12-24", 2026-12-31]\nopen = ["2026-11-11"]\n'
    ))
    cal = practice_calendar(settings)
    assert cal.clock == "12h" and cal.zone_name == "America/New_York"
    assert [cal.is_business_day(date(2026, 12, d)) for d in (23, 24, 25, 31)] == [True, False, False, False]
    assert cal.is_business_day(date(2026, 11, 11))  # Veterans Day, which this practice works


def test_without_closed_days_business_days_are_weekdays(tmp_path: Path) -> None:
    cal = practice_calendar(_settings(tmp_path, 'timezone = "America/New_York"\n'))
    assert cal.clock == "24h" and cal.is_business_day(date(2026, 12, 25))


def test_bad_calendar_settings_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        _settings(tmp_path, (
            'clock = "am/pm"\n[closed_days]\npublic_holidays = "usa"\ndates = ["24 Dec"]\nholiday = "US"\n'
        ))
    problems = raised.value.problems
    assert any(p.startswith('clock must be "24h"') for p in problems)
    assert any("closed_days.public_holidays must be a country code" in p for p in problems)
    assert any("closed_days.dates must be a list of dates" in p and "'24 Dec'" in p for p in problems)
    assert any("unknown setting closed_days.holiday" in p for p in problems)
