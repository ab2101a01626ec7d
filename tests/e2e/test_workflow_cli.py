"""``kapflow workflow list/diff/migrate`` on a SQLite file, with settings naming two versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from practice_versions import KAP_V2
from support import INQUIRY, THERAPIST, open_case, prepare_dosing, to_ready
from typer.testing import CliRunner, Result

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

BOTH = '["kapflow.workflows.kap:KAP_PATHWAY", "practice_versions:KAP_V2"]'


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def cases(url: str) -> Iterator[dict[str, str]]:
    """Two cases opened before version 2: one ready for KAP, one dosing at 138/86 (above v2's limit)."""
    clock = FakeClock()
    engine = build_engine(url, KAP_PATHWAY, clock=clock)
    ready, dosing = open_case(engine), open_case(engine)
    for case_id in (ready, dosing):
        to_ready(engine, clock, case_id)
    prepare_dosing(engine, dosing, systolic=138, diastolic=86)
    engine.fire(dosing, "start_kap_session", actor=THERAPIST)
    engine.store.close()
    yield {"ready": ready, "dosing": dosing}


def kapflow(tmp_path: Path, url: str, *args: str, workflows: str = BOTH) -> Result:
    config = tmp_path / "kapflow.toml"
    config.write_text(f'database = "{url}"\nworkflows = {workflows}\n', encoding="utf-8")
    return CliRunner().invoke(app, ["--config", str(config), *args])


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    return result.stderr


def engine_on(url: str) -> Engine:
    return build_engine(url, [KAP_PATHWAY, KAP_V2], clock=FakeClock())


def test_list_shows_each_version_with_its_cases(tmp_path: Path, url: str, cases: dict[str, str]) -> None:
    """v1 holds both cases (in flight), v2 is current and holds none."""
    rows = as_json(kapflow(tmp_path, url, "workflow", "list", "--json"))
    assert [(r["version"], r["current"], r["cases"], r["in_flight"]) for r in rows] == [
        ("1", False, 2, 2), ("2", True, 0, 0)]
    text = kapflow(tmp_path, url, "workflow", "list")
    assert text.exit_code == 0 and "current (new cases)" in text.stdout


def test_list_shows_cases_on_a_version_nobody_loaded(tmp_path: Path, url: str, cases: dict[str, str]) -> None:
    """Settings naming only v2: the v1 cases are listed as NOT LOADED, not hidden."""
    result = kapflow(tmp_path, url, "workflow", "list", workflows='["practice_versions:KAP_V2"]')
    assert result.exit_code == 0 and "NOT LOADED" in result.stdout


def test_diff_compares_the_two_newest_by_default(tmp_path: Path, url: str) -> None:
    """Without options: 1 -> 2, the two limits; --json carries the same; --from/--to pick others."""
    result = kapflow(tmp_path, url, "workflow", "diff")
    assert result.exit_code == 0, result.stderr
    assert "workflow kap: version 1 -> 2" in result.stdout and "max_systolic: 140 -> 135" in result.stdout
    body = as_json(kapflow(tmp_path, url, "workflow", "diff", "--json"))
    assert body["thresholds_changed"] == [{"field": "max_diastolic", "old": 90, "new": 85},
                                          {"field": "max_systolic", "old": 140, "new": 135}]
    back = as_json(kapflow(tmp_path, url, "workflow", "diff", "--from", "2", "--to", "1", "--json"))
    assert back["thresholds_changed"][0] == {"field": "max_diastolic", "old": 85, "new": 90}


def test_diff_of_an_unknown_version_is_one_line(tmp_path: Path, url: str) -> None:
    """A version the settings do not name: exit 2, naming the loaded ones."""
    err = one_line_error(kapflow(tmp_path, url, "workflow", "diff", "--to", "7"), 2)
    assert "version '7' of 'kap' is not loaded; loaded: 1, 2" in err
    err = one_line_error(kapflow(tmp_path, url, "workflow", "diff", workflows='["practice_versions:KAP_V2"]'), 2)
    assert "give --from V" in err


def test_dry_run_lists_who_can_move_and_writes_nothing(tmp_path: Path, url: str, cases: dict[str, str]) -> None:
    """The ready case can move; the dosing case cannot (entry guard at 138/86); the database is unchanged."""
    engine = engine_on(url)
    before = [(c.id, c.workflow_version, c.event_count) for c in engine.store.iter_cases()]
    body = as_json(kapflow(tmp_path, url, "workflow", "migrate", "--to", "2", "--dry-run", "--json"))
    verdicts = {c["case_id"]: c for c in body["cases"]}
    assert body["dry_run"] is True and set(verdicts) == set(cases.values())
    assert verdicts[cases["ready"]]["ok"] is True
    assert [r["code"] for r in verdicts[cases["dosing"]]["reasons"]] == ["entry_guard_fails"]
    text = kapflow(tmp_path, url, "workflow", "migrate", "--to", "2", "--dry-run")
    assert text.exit_code == 0 and "pre_dose_blood_pressure_high" in text.stdout
    assert "dry run, nothing written: 1 case(s) can move to kap version 2, 1 cannot" in text.stdout
    assert [(c.id, c.workflow_version, c.event_count) for c in engine.store.iter_cases()] == before
    engine.store.close()


def test_migrate_moves_those_that_can_and_lists_the_rest(tmp_path: Path, url: str, cases: dict[str, str]) -> None:
    """Exit 0; the ready case is on v2 with a 'migrated' event, the dosing one stays on v1; the audit verifies."""
    result = kapflow(tmp_path, url, "workflow", "migrate", "--to", "2", "--actor", "fd-1", "--role", "front_desk")
    assert result.exit_code == 0, result.stderr
    assert f"{cases['ready']}: moved from version 1 to 2 (ready_for_kap)" in result.stdout
    assert f"{cases['dosing']}: not moved (dosing): entry_guard_fails" in result.stdout
    assert "moved 1 case(s) to kap version 2; 1 could not move" in result.stdout
    engine = engine_on(url)
    assert engine.case(cases["ready"]).workflow_version == "2"
    assert engine.case(cases["dosing"]).workflow_version == "1"
    assert engine.history(cases["ready"])[-1].kind == "migrated"
    assert engine.history(cases["dosing"])[-1].kind == "transition"  # not attempted, so no refusal either
    engine.store.close()
    assert kapflow(tmp_path, url, "audit", "verify").exit_code == 0
    again = as_json(kapflow(tmp_path, url, "workflow", "migrate", "--to", "2", "--actor", "fd-1", "--role",
                            "front_desk", "--json"))
    assert again["moved"] == [] and [c["case_id"] for c in again["not_moved"]] == [cases["dosing"]]


def test_migrate_needs_a_permitted_actor(tmp_path: Path, url: str, cases: dict[str, str]) -> None:
    """Without --actor: exit 2. As an auditor: refused (exit 3), and the case stays on v1."""
    err = one_line_error(kapflow(tmp_path, url, "workflow", "migrate", "--to", "2"), 2)
    assert "give --actor and --role" in err
    err = one_line_error(
        kapflow(tmp_path, url, "workflow", "migrate", "--to", "2", "--actor", "au-1", "--role", "auditor"), 3)
    assert "not_permitted" in err
    engine = engine_on(url)
    assert {c.workflow_version for c in engine.store.iter_cases()} == {"1"}
    engine.store.close()


@pytest.mark.parametrize(
    ("workflows", "code", "expected"),
    [
        ('["no_such_module:KAP"]', 2, "cannot import 'no_such_module'"),
        ('["practice_versions:NOT_A_WORKFLOW"]', 2, "is a str, not a kapflow Workflow"),
        ('["practice_versions:MISSING"]', 2, "is nothing, not a kapflow Workflow"),
        ('["practice_versions:KAP_V2", "practice_versions:KAP_V2"]', 2, "repeats kap version '2'"),
        ('"kapflow.workflows.kap:KAP_PATHWAY"', 2, "workflows must be a non-empty list"),
        ('["kapflow.workflows.kap"]', 2, "workflows must be a non-empty list"),
    ],
)
def test_a_wrong_workflows_setting_is_one_clear_line(
    tmp_path: Path, url: str, workflows: str, code: int, expected: str
) -> None:
    """A wrong import path, or something that is not a Workflow: one line saying which and why."""
    err = one_line_error(kapflow(tmp_path, url, "workflow", "list", workflows=workflows), code)
    assert expected in err


# ------------------------------------------------------------------ any workflow, not only KAP

KAP_AND_PSYCHOTHERAPY = '["kapflow.workflows.kap:KAP_PATHWAY", "kapflow.workflows.psychotherapy:PSYCHOTHERAPY_PATHWAY"]'


def test_diagram_draws_the_workflow_named(tmp_path: Path, url: str) -> None:
    """``diagram --workflow kap`` draws KAP's current version; --version picks another; an unknown name is exit 2."""
    one = '["kapflow.workflows.kap:KAP_PATHWAY"]'
    drawn = kapflow(tmp_path, url, "diagram", "--workflow", "kap", workflows=one)
    assert drawn.exit_code == 0, drawn.stderr
    assert "stateDiagram-v2" in drawn.stdout and f"[*] --> {KAP_PATHWAY.initial}" in drawn.stdout
    assert kapflow(tmp_path, url, "diagram", workflows=one).stdout == drawn.stdout
    assert kapflow(tmp_path, url, "diagram", "--version", "1").stdout == drawn.stdout  # v1 of kap, v2 loaded too
    assert "version '7' of 'kap' is not loaded" in one_line_error(
        kapflow(tmp_path, url, "diagram", "--version", "7"), 2)
    assert "unknown workflow 'nope'; loaded: kap" in one_line_error(
        kapflow(tmp_path, url, "diagram", "--workflow", "nope", workflows=one), 2)


def test_with_two_workflows_loaded_the_diagram_needs_a_name(tmp_path: Path, url: str) -> None:
    """KAP and psychotherapy loaded: ``diagram`` alone is exit 2 naming both; with --workflow it draws that one."""
    err = one_line_error(kapflow(tmp_path, url, "diagram", workflows=KAP_AND_PSYCHOTHERAPY), 2)
    assert "invalid_input" in err and "kap" in err and "psychotherapy" in err and "--workflow" in err
    drawn = kapflow(tmp_path, url, "diagram", "--workflow", "psychotherapy", workflows=KAP_AND_PSYCHOTHERAPY)
    assert drawn.exit_code == 0, drawn.stderr
    assert "title: psychotherapy workflow" in drawn.stdout


def test_cases_of_two_workflows_are_opened_listed_and_filtered(tmp_path: Path, url: str) -> None:
    """``open --workflow`` picks the workflow; ``cases`` names each client and takes a state of either workflow."""
    from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

    intake = {**INQUIRY, "first_name": "Other", "last_name": "Client-Two", "concerns": ["anxiety"]}
    args = ("open", "--actor", "fd-1", "--role", "front_desk", "--json")
    assert "several workflows are loaded (kap, psychotherapy): give --workflow NAME" in one_line_error(
        kapflow(tmp_path, url, *args, "--data", json.dumps(INQUIRY), workflows=KAP_AND_PSYCHOTHERAPY), 2)
    kap = as_json(kapflow(tmp_path, url, *args, "--workflow", "kap", "--data", json.dumps(INQUIRY),
                          workflows=KAP_AND_PSYCHOTHERAPY))
    psy = as_json(kapflow(tmp_path, url, *args, "--workflow", "psychotherapy", "--data", json.dumps(intake),
                          workflows=KAP_AND_PSYCHOTHERAPY))
    rows = as_json(kapflow(tmp_path, url, "cases", "--json", workflows=KAP_AND_PSYCHOTHERAPY))
    assert {(r["id"], r["workflow"], r["client"]) for r in rows} == {
        (kap["case_id"], "kap", "Sample Client-One"), (psy["case_id"], "psychotherapy", "Other Client-Two")}
    only_psychotherapy = next(s.name for s in PSYCHOTHERAPY_PATHWAY.states
                              if s.name not in {k.name for k in KAP_PATHWAY.states})
    filtered = kapflow(tmp_path, url, "cases", "--state", only_psychotherapy, "--json", workflows=KAP_AND_PSYCHOTHERAPY)
    assert as_json(filtered) == []
    assert "unknown state 'sideways'" in one_line_error(
        kapflow(tmp_path, url, "cases", "--state", "sideways", workflows=KAP_AND_PSYCHOTHERAPY), 2)
