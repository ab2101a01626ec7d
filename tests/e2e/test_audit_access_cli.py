"""``kapflow audit access``: who read a case, through which service, which view and when, as an auditor asks it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from support import FRONT_DESK, INQUIRY
from typer.testing import CliRunner

from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.domain.case import Actor
from kapflow.testing import FakeClock

runner = CliRunner()
LATE_NOVEMBER = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 22:00 on November 30 in New York
EARLY_DECEMBER = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # 01:00 on December 1 in New York


def _setup(tmp_path: Path) -> tuple[list[str], str]:
    db = f"sqlite:///{tmp_path / 'kapflow.db'}"
    config = tmp_path / "kapflow.toml"
    config.write_text(f'database = "{db}"\ntimezone = "America/New_York"\n', encoding="utf-8")
    clock = FakeClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    engine = build_engine(db, clock=clock)
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    clock.set(LATE_NOVEMBER)
    engine.record_access(FRONT_DESK, case_id, "case")
    clock.set(EARLY_DECEMBER)
    engine.record_access(Actor("th-jordan-consulting-clinician", "therapist", via="practice-management-sync"),
                         case_id, "history")
    engine.record_access(FRONT_DESK, "case-other", "facts")
    engine.close()
    return ["--config", str(config)], case_id


def test_who_looked_at_this_case_this_month_in_the_practice_s_zone(tmp_path: Path) -> None:
    base, case_id = _setup(tmp_path)
    done = runner.invoke(app, [*base, "audit", "access", "--case", case_id, "--since", "2026-12-01"],
                         env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    assert "2026-12-01" in done.output and "01:00 EST" in done.output and "history" in done.output  # date over time
    assert "th-jordan-consulting" in done.output and "practice-management-" in done.output  # long names fold
    assert "fd-avery" not in done.output  # 22:00 on November 30 in the practice's zone
    assert max(len(line) for line in done.output.splitlines()) <= 80
    utc = runner.invoke(app, [*base, "audit", "access", "--case", case_id, "--since", "2026-12-01", "--utc"])
    assert utc.exit_code == 0 and "fd-avery" in utc.output and "2026-12-01 03:00 UTC" in utc.output


def test_json_and_the_actor_s_reads(tmp_path: Path) -> None:
    base, case_id = _setup(tmp_path)
    done = runner.invoke(app, [*base, "audit", "access", "--case", case_id, "--until", "2026-11-30", "--json"])
    assert done.exit_code == 0, done.output
    (only,) = json.loads(done.output)
    assert only == {"id": 1, "at": "2026-12-01T03:00:00+00:00", "actor": "fd-avery", "role": "front_desk",
                    "via": None, "case_id": case_id, "view": "case"}
    mine = runner.invoke(app, [*base, "audit", "access", "--actor", "fd-avery", "--json"])
    assert [(r["case_id"], r["view"]) for r in json.loads(mine.output)] == [(case_id, "case"), ("case-other", "facts")]
    table = runner.invoke(app, [*base, "audit", "access", "--actor", "fd-avery"])
    assert table.exit_code == 0 and "case-other" in table.output


def test_a_query_needs_a_case_or_an_actor_and_readable_times(tmp_path: Path) -> None:
    base, case_id = _setup(tmp_path)
    neither = runner.invoke(app, [*base, "audit", "access"])
    assert neither.exit_code == 2 and "--case" in neither.output
    bad = runner.invoke(app, [*base, "audit", "access", "--case", case_id, "--since", "December"])
    assert bad.exit_code == 2 and "neither a date" in bad.output
    none = runner.invoke(app, [*base, "audit", "access", "--case", "case-unread"])
    assert none.exit_code == 0 and "no read of a case matches" in none.output and "when" not in none.output
