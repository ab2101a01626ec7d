"""The practice's calendar: its time zone, its working days and the way it writes a time.

Rules that count days count the practice's dates and wall-clock days, not 24-hour spans of UTC:
a week after Monday 10:00 is the next Monday at 10:00 on its clocks, DST or not. The one rule
for every delay a workflow declares (``PracticeCalendar.later``): a whole number of days is
counted on the local calendar, at the same wall-clock time; hours and minutes are elapsed time
(24 hours before an appointment is 24 hours, even on the night the clocks change).

Business days are the practice's weekdays that it does not close (``closed``: public holidays,
its own closed days). Staff and clients read times in the practice's zone with its abbreviation
(on 1 November 2026 in New York, 01:30 happens twice: ``01:30 EDT``, then ``01:30 EST``), in the
clock style the practice sets (``24h`` or ``12h``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal

ClockStyle = Literal["24h", "12h"]
CLOCK_STYLES: tuple[ClockStyle, ...] = ("24h", "12h")
_DAY = timedelta(days=1)


def _never_closed(day: date) -> bool:
    return False


@dataclass(frozen=True, eq=False)
class PracticeCalendar:
    """The practice's zone, the days it is closed beyond weekends, and its clock style."""

    zone: tzinfo = UTC
    closed: Callable[[date], bool] = field(default=_never_closed)
    clock: ClockStyle = "24h"

    @property
    def zone_name(self) -> str:
        """The zone's IANA name (``America/New_York``), or ``UTC``."""
        return "UTC" if self.zone is UTC else str(getattr(self.zone, "key", self.zone))

    # --- dates and wall-clock arithmetic

    def local_date(self, moment: datetime) -> date:
        """The practice's calendar date at ``moment``."""
        return moment.astimezone(self.zone).date()

    def at_wall_time(self, wall: datetime) -> datetime:
        """The UTC instant of the naive local time ``wall``.

        A time the clocks skip (02:30 on a spring-forward night) is read with the offset before the
        change, so it lands as long after midnight as it says (03:30 the new time); a time they
        repeat (01:30 on a fall-back night) is its first occurrence.
        """
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def days_later(self, moment: datetime, days: int) -> datetime:
        """``days`` calendar days after ``moment`` (before, when negative) at the same wall-clock time."""
        wall = moment.astimezone(self.zone).replace(tzinfo=None)
        return self.at_wall_time(wall + timedelta(days=days))

    def start_of_day(self, day: date) -> datetime:
        """The UTC instant the practice's calendar date ``day`` begins."""
        return self.at_wall_time(datetime(day.year, day.month, day.day))

    def later(self, moment: datetime, delay: timedelta) -> datetime:
        """``moment`` plus ``delay``: whole days on the local calendar, anything else as elapsed time."""
        if delay % _DAY:
            return moment + delay
        return self.days_later(moment, delay.days)

    # --- business days

    def is_business_day(self, day: date) -> bool:
        """A weekday the practice is open (Saturday, Sunday and its closed days are not)."""
        return day.weekday() < 5 and not self.closed(day)

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """``start`` plus ``days`` business days, at the same local time (a UTC instant).

        Weekends and closed days are skipped as they fall in the practice's zone, and the result
        keeps ``start``'s wall-clock time, across a DST change as well (a Friday 21:00 EST start
        lands on Tuesday 21:00 EDT).
        """
        wall = start.astimezone(self.zone).replace(tzinfo=None)
        left = days
        while left > 0:
            wall += _DAY
            if self.is_business_day(wall.date()):
                left -= 1
        return self.at_wall_time(wall)

    # --- times as people read them

    def clock_text(self, moment: datetime) -> str:
        """The local time of day in the practice's clock style, with the zone's abbreviation: ``10:00 EDT``."""
        local = moment.astimezone(self.zone)
        if self.clock == "12h":
            hour = local.hour % 12 or 12
            shown = f"{hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"
        else:
            shown = f"{local:%H:%M}"
        return f"{shown} {local.tzname() or ''}".rstrip()

    def time_text(self, moment: datetime) -> str:
        """``moment`` for staff: ``2026-03-09 10:00 EDT`` (or ``2026-03-09 10:00 AM EDT``)."""
        return f"{moment.astimezone(self.zone):%Y-%m-%d} {self.clock_text(moment)}"

    def long_text(self, moment: datetime) -> str:
        """``moment`` for a client's message: ``Monday 9 March 2026 at 10:00 EDT``."""
        local = moment.astimezone(self.zone)
        return f"{local:%A} {local.day} {local:%B %Y} at {self.clock_text(moment)}"


UTC_CALENDAR = PracticeCalendar()
"""The calendar of a practice that names no zone: UTC, weekdays, a 24-hour clock."""
