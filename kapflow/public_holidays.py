"""The practice's closed days: a country's public holidays (the ``holidays`` package) and its own.

The one module that imports ``holidays``. The domain sees only a predicate (``PracticeCalendar.closed``):
whether the practice is closed on a date, beyond weekends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import holidays

from kapflow.config import ClosedDaysSettings
from kapflow.errors import ConfigError


def closed_days(settings: ClosedDaysSettings, source: str = "settings") -> Callable[[date], bool]:
    """Whether the practice is closed on a date: its own closed days, and the public holidays of its
    region unless it works them. An unknown country or region is a ``ConfigError``."""
    public = _public_holidays(settings.public_holidays, source)
    own, worked = settings.dates, settings.open

    def closed(day: date) -> bool:
        return day not in worked and (day in own or (public is not None and day in public))

    return closed


def _public_holidays(region: str | None, source: str) -> holidays.HolidayBase | None:
    if region is None:
        return None
    country, _, subdivision = region.partition("-")
    try:
        return holidays.country_holidays(country, subdiv=subdivision or None)
    except NotImplementedError:
        raise ConfigError(source, [
            f"closed_days.public_holidays: no public holidays are known for {region!r}; use a country code "
            f"such as \"US\", with a region the holidays package knows (\"US-NY\", \"AU-NSW\")"
        ]) from None
