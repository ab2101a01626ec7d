"""An adapter whose optional dependency is not installed fails with an error naming the extra to install."""

from __future__ import annotations

import sys

import pytest

from kapflow.bootstrap import build_calendar, build_notifiers
from kapflow.config import CalendarSettings, Settings
from kapflow.errors import AdapterConfigError, KapflowError
from kapflow.store.sql import SqlStore


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make importing ``modules`` raise ModuleNotFoundError, as when the package is not installed."""
    for name in list(sys.modules):
        if name.startswith(("kapflow.adapters.", "kapflow.store.batched_cursor")):
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_channels_without_apprise_name_the_notify_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apprise channels configured but apprise missing: AdapterConfigError naming kapflow[notify]."""
    hide(monkeypatch, "apprise")
    with pytest.raises(AdapterConfigError) as info:
        build_notifiers(Settings(channels={"sms": ("json://127.0.0.1:9/",)}))
    assert "kapflow[notify]" in info.value.message and "apprise" in info.value.message


def test_caldav_without_caldav_names_the_calendar_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CalDAV calendar configured but caldav missing: AdapterConfigError naming kapflow[calendar]."""
    hide(monkeypatch, "caldav", "caldav.davclient")
    with pytest.raises(AdapterConfigError) as info:
        build_calendar(Settings(calendar=CalendarSettings(caldav_url="http://127.0.0.1:9/")))
    assert "kapflow[calendar]" in info.value.message


def test_ics_calendar_needs_no_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """The default .ics calendar builds without caldav or apprise (icalendar is a core dependency)."""
    hide(monkeypatch, "caldav", "apprise")
    assert build_calendar(Settings(calendar=CalendarSettings(ics_folder=str(tmp_path)))) is not None


def test_postgres_without_psycopg_names_the_postgres_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL URL without psycopg installed: a kapflow error naming kapflow[postgres]."""
    hide(monkeypatch, "psycopg")
    with pytest.raises(KapflowError) as info:
        SqlStore("postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert "kapflow[postgres]" in info.value.message
