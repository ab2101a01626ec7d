"""``kapflow history`` as operations staff read it: 80 columns, every blocker's sentence, the practice's time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import FRONT_DESK, INQUIRY, PRESCRIBER
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
        engine.book_appointment(case_id, "evaluation", datetime(2026, 1, 6, 15, tzinfo=UTC), actor=FRONT_DESK)
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
    """The refusal at 14:30 UTC reads 09:30 EST in New York, and 14:30 with --utc."""
    case_id, settings = blocked_case
    assert "09:30 EST" in _history(settings, case_id)
    wide = _history(settings, case_id, columns=200)
    assert "time (America/New_York)" in wide and "2026-01-05 09:30" in wide
    utc = _history(settings, case_id, "--utc")
    assert "14:30" in utc and "09:30" not in utc
