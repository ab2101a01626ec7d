"""``kapflow case show`` shows the case's symptom measures, computed by the engine from its questionnaires."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import CLIENT, open_case
from typer.testing import CliRunner

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.testing import FakeClock
from kapflow.workflows.measures import answered


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'measures.db'}"


@pytest.fixture
def seeded(url: str) -> Iterator[Engine]:
    engine = build_engine(url, clock=FakeClock())
    yield engine
    engine.store.close()


def test_case_show_gives_baseline_latest_trajectory_response_and_remission(url: str, seeded: Engine) -> None:
    case_id = open_case(seeded)
    clock = seeded.clock
    assert isinstance(clock, FakeClock)
    for score in (16, 10, 4):
        seeded.record(case_id, "questionnaire", answered("PHQ-9", score), actor=CLIENT)
        clock.advance(days=14)
    seeded.record(case_id, "questionnaire", answered("GAD-7", 12), actor=CLIENT)

    result = CliRunner().invoke(app, ["--db", url, "case", "show", case_id, "--json"])
    assert result.exit_code == 0, result.stderr
    measures = json.loads(result.stdout)["summaries"]["measures"]
    phq = measures["PHQ-9"]
    assert (phq["baseline"]["score"], phq["latest"]["score"]) == (16, 4)
    assert [p["score"] for p in phq["trajectory"]] == [16, 10, 4]
    assert (phq["response"], phq["remission"], phq["latest"]["severity"]) == (True, True, "minimal")
    assert (measures["GAD-7"]["baseline"]["score"], measures["GAD-7"]["remission"]) == (12, None)

    shown = CliRunner().invoke(app, ["--db", url, "case", "show", case_id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.stderr
    assert "Summaries" in shown.stdout and "measures" in shown.stdout and '"remission": true' in shown.stdout
