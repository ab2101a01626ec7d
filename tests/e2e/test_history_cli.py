"""``kapflow history`` as operations staff read it: 80 columns, every blocker's sentence, the practice's time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import FRONT_DESK, INQUIRY, PRESCRIBER, who
from typer.testing import CliRunner

from kapflow import build_engine
from kapflow.cli import app
from kapflow.config import Settings
from kapflow.errors import TransitionBlocked
from kapflow.testing import FakeClock


@pytest.fixture
def blocked_case(tmp_path: Path) -> tuple[str, Path]:
    """A case whose evaluation start was refused (fee unpaid) at 14:30 UTC, 09:30 in New York (EST)."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    clock = FakeClock(datetime(2026, 1, 5, 14, 30, tzinfo=UTC))
    with build_engine(url, clock=clock, settings=Settings(timezone="America/New_York")) as engine:
        case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
        engine.book_appointment(case_id, "evaluation", datetime(2026, 1, 6, 15, tzinfo=UTC), actor=FRONT_DESK,
                                **who(case_id))
        engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
        with pytest.raises(TransitionBlocked):
            engine.fire(case_id, "start_evaluation", actor=PRESCRIBER)
    settings = tmp_path / "kapflow.toml"
    settings.write_text(f'database = "{url}"\ntimezone = "America/New_York"\n', encoding="utf-8")
    return case_id, settings


def _history(settings: Path, case_id: str, *extra: str, columns: int = 80) -> str:
    result = CliRunner().invoke(app, ["--config", str(settings), "history", case_id, *extra],
                                env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_history_fits_80_columns_and_gives_every_blockers_sentence(blocked_case: tuple[str, Path]) -> None:
    """No line is wider than 80, roles are not split, and the refusal says why in words."""
    case_id, settings = blocked_case
    out = _history(settings, case_id)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "front_desk" in out and "prescriber" in out
    flat = " ".join(out.split())
    assert "evaluation_fee_unpaid: $250 evaluation fee is due before the evaluation" in flat


def test_history_shows_the_practices_time_unless_utc_is_asked(blocked_case: tuple[str, Path]) -> None:
    """The refusal at 14:30 UTC reads 09:30 EST in New York (each time with its abbreviation), 14:30 UTC with --utc."""
    case_id, settings = blocked_case
    narrow = _history(settings, case_id)
    assert "09:30 EST" in narrow and "(UTC)" not in narrow
    wide = _history(settings, case_id, columns=200)
    assert "2026-01-05 09:30 EST" in wide and "(UTC)" not in wide
    assert wide.count("09:30 EST") == 4  # every row carries its zone
    utc = _history(settings, case_id, "--utc", columns=200)
    assert "2026-01-05 14:30 UTC" in utc and "09:30" not in utc and "EST" not in utc


def test_history_uses_the_practices_clock_style(blocked_case: tuple[str, Path]) -> None:
    """``clock = "12h"``: 9:30 AM EST, at 80 columns and wide; --utc keeps the style (2:30 PM UTC)."""
    case_id, settings = blocked_case
    settings.write_text(settings.read_text(encoding="utf-8") + 'clock = "12h"\n', encoding="utf-8")
    narrow = _history(settings, case_id)
    assert "9:30 AM EST" in narrow and "09:30" not in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "2026-01-05 9:30 AM EST" in _history(settings, case_id, columns=200)
    utc = _history(settings, case_id, "--utc")
    assert "2:30 PM UTC" in utc and "EST" not in utc


@pytest.fixture
def fall_back_case(tmp_path: Path) -> tuple[str, Path]:
    """A case opened at 01:30 EDT on 1 November 2026 (05:30 UTC) and paid at 01:30 EST, an hour later (06:30 UTC)."""
    url = f"sqlite:///{tmp_path / 'fold.db'}"
    clock = FakeClock(datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    with build_engine(url, clock=clock, settings=Settings(timezone="America/New_York", clock="12h")) as engine:
        case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
        clock.advance(hours=1)
        engine.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    settings = tmp_path / "kapflow.toml"
    settings.write_text(f'database = "{url}"\ntimezone = "America/New_York"\nclock = "12h"\n', encoding="utf-8")
    return case_id, settings


@pytest.mark.parametrize("columns", [80, 200])
def test_the_repeated_hour_of_the_fall_back_night_shows_both_abbreviations(
    fall_back_case: tuple[str, Path], columns: int,
) -> None:
    """01:30 happens twice on 1 November in New York: the history tells them apart by EDT and EST."""
    case_id, settings = fall_back_case
    out = _history(settings, case_id, columns=columns)
    assert "1:30 AM EDT" in out and "1:30 AM EST" in out
    assert out.index("1:30 AM EDT") < out.index("1:30 AM EST")
    utc = _history(settings, case_id, "--utc", columns=columns)
    assert "5:30 AM UTC" in utc and "6:30 AM UTC" in utc and "EDT" not in utc


def test_case_show_tells_the_two_1_30s_apart(fall_back_case: tuple[str, Path]) -> None:
    """The case opened at the first 01:30 and was last changed at the second."""
    case_id, settings = fall_back_case
    result = CliRunner().invoke(app, ["--config", str(settings), "case", "show", case_id], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    assert "opened 2026-11-01 1:30 AM EDT" in result.stdout and "updated 2026-11-01 1:30 AM EST" in result.stdout


def test_history_json_stays_iso_8601_utc(fall_back_case: tuple[str, Path]) -> None:
    """--json is for machines: the instants in UTC, whatever the practice's zone or clock style."""
    case_id, settings = fall_back_case
    events = json.loads(_history(settings, case_id, "--json"))
    assert [ev["at"][:19] for ev in events] == ["2026-11-01T05:30:00", "2026-11-01T06:30:00"]
    assert all(ev["at"].endswith("+00:00") for ev in events)
