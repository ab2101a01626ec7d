"""``kapflow demo``: the example practice runs, tells each client's story and verifies its audit history."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kapflow.demo
from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.demo import DEMO_START, DEMO_WORKFLOWS, demo_engine, run_demo
from kapflow.present import client_name

KAPFLOW = Path(sys.executable).parent / "kapflow"  # the console script of the environment running the tests

KEY_MOMENTS = {
    "Sample Client-One": [
        "start_evaluation refused: evaluation_fee_unpaid: $250 evaluation fee is due before the evaluation",
    ],
    "Sample Client-Two": [
        "screening recorded a hard exclusion",
        "find_suitable refused: hard_exclusion: a hard exclusion is recorded (uncontrolled hypertension)",
        "find_ineligible (hard exclusion at screening: uncontrolled hypertension; referred to primary care): "
        "evaluating -> ineligible",
    ],
    "Sample Client-Three": [
        "KAP session 1: ready_for_kap -> dosing",
        "KAP session 1 discharge after 60 minutes refused: observation_incomplete",
        "KAP session 1 discharge after 120 minutes: dosing -> integration_psychotherapy",
        "KAP session 2 integration psychotherapy: integration_psychotherapy -> ready_for_kap",
        "KAP session 3 refused: session_frequency_exceeded",
        "KAP session 3 discharge after 120 minutes: dosing -> integration_psychotherapy",
        "complete_integration_session: integration_session -> ready_for_kap",
        "complete_treatment: ready_for_kap -> completed",
    ],
    "Sample Client-Four": [
        "hold: evaluation_booked -> on_hold",
        "resume: on_hold -> evaluation_booked",
        "start_evaluation: evaluation_booked -> evaluating",
    ],
    "Sample Client-Five": [
        "complete_intake: intake_assessment -> active_treatment",
        "session 4 (53 minutes): in_session -> active_treatment",
        "session 5 refused: questionnaires_due",
        "planned discharge: active_treatment -> discharged",
    ],
}
FINAL_STATES = {
    "Sample Client-One": "inquiry",  # the worker released the unpaid booking
    "Sample Client-Two": "ineligible",
    "Sample Client-Three": "completed",
    "Sample Client-Four": "evaluating",
    "Sample Client-Five": "discharged",  # the psychotherapy workflow's client
}


@dataclass(frozen=True)
class Shown:
    """One run of ``kapflow demo``, shared by the tests that only read what it printed and left behind."""

    folder: Path
    url: str
    out: str


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Shown:
    folder = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{folder / 'demo.db'}"
    result = CliRunner().invoke(app, ["--db", url, "demo"])
    assert result.exit_code == 0, result.stderr
    return Shown(folder, url, result.stdout)


def test_the_demo_tells_each_clients_story_and_verifies_the_audit(shown: Shown) -> None:
    """Every client's key moments and timeline are printed, then the audit history verifies."""
    tmp_path, url, out = shown.folder, shown.url, shown.out
    for client, moments in KEY_MOMENTS.items():
        assert client in out
        for moment in moments:
            assert moment in out, moment
    for header in ("time", "actor / role", "event", "trigger / fact", "from -> to", "blockers"):
        assert header in out
    # The demo practice keeps UTC on a 24-hour clock: every time says so itself, no header does.
    assert "(a fake clock starting 2026-01-05 09:00 UTC;" in out and "(UTC)" not in out
    assert "audit verified: 5 cases, " in out and ", ok" in out

    settings = tmp_path / "demo.db-settings.toml"  # the demo writes it: its cases are on both pathways
    assert f"--config {settings} cases" in out
    listed = CliRunner().invoke(app, ["--db", url, "--config", str(settings), "cases", "--json"])
    assert {row["client"]: row["state"] for row in json.loads(listed.stdout)} == FINAL_STATES


def test_the_demo_refuses_a_database_that_already_holds_cases(shown: Shown, tmp_path: Path) -> None:
    """Run twice on one database, the demo stops (exit 2) rather than mix into existing cases; --force runs it."""
    for file in shown.folder.glob("demo.db*"):  # a copy of the shared demo's database (and its WAL, if any)
        if file.is_file():
            shutil.copy2(file, tmp_path / file.name)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    again = CliRunner().invoke(app, ["--db", url, "demo"])
    assert again.exit_code == 2
    assert "already holds 5 cases" in again.stderr
    assert "Traceback" not in again.stderr
    assert CliRunner().invoke(app, ["--db", url, "demo", "--force"]).exit_code == 0
    assert len(json.loads(CliRunner().invoke(app, ["--db", url, "cases", "--json"]).stdout)) == 10


def test_run_demo_returns_the_same_story_on_every_run(tmp_path: Path) -> None:
    """The scenario is data on a fake clock: two runs give the same moments, states and event counts."""
    runs = []
    for name in ("one.db", "two.db"):
        engine, clock = demo_engine(f"sqlite:///{tmp_path / name}")
        try:
            runs.append(run_demo(engine, clock))
        finally:
            engine.store.close()
    first, second = runs
    assert first.start == DEMO_START
    assert first.audit.ok and second.audit.ok
    assert [(s.client, s.state, s.moments, len(s.history)) for s in first.stories] == [
        (s.client, s.state, s.moments, len(s.history)) for s in second.stories
    ]
    plan = next(s for s in first.stories if s.client == "Sample Client-Three")
    dosings = [ev.at for ev in plan.history if ev.trigger == "start_kap_session" and ev.kind == "transition"]
    assert len(dosings) == 3
    # At most 2 sessions in any 7 days: every third session starts 7 days or more after the first.
    assert all((later - earlier).days >= 7 for earlier, later in zip(dosings, dosings[2:], strict=False))


def test_the_demo_module_does_not_import_the_tests() -> None:
    """kapflow.demo ships in the package, so it must not lean on tests/support.py."""
    tree = ast.parse(Path(kapflow.demo.__file__).read_text(encoding="utf-8"))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {name.split(".")[0] for name in imported} & {"support", "tests", "conftest", "strategies"}


def test_the_installed_console_script_runs_the_demo(tmp_path: Path) -> None:
    """The real ``kapflow`` executable runs the demo on a SQLite file in its working directory."""
    env = {k: v for k, v in os.environ.items() if k != "KAPFLOW_DB"}
    done = subprocess.run(
        [str(KAPFLOW), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "audit verified" in done.stdout and ", ok" in done.stdout
    assert KEY_MOMENTS["Sample Client-One"][0] in done.stdout
    assert done.stderr == ""  # nothing logged, so no client's name can leak into logs
    assert (tmp_path / "kapflow.db").is_file()

    verified = subprocess.run(
        [str(KAPFLOW), "--db", f"sqlite:///{tmp_path / 'kapflow.db'}", "audit", "verify", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


def test_the_demo_leaves_no_stale_evaluation_booked(shown: Shown) -> None:
    """The released evaluation is cancelled, and the client held and resumed has one booked evaluation."""
    engine = build_engine(shown.url, DEMO_WORKFLOWS, create_database=False)
    try:
        by_client = {client_name(found, engine.workflow_of(found)): found.id for found in engine.iter_cases()}
        released = engine.appointments(by_client["Sample Client-One"])
        assert [(a.kind, a.status) for a in released] == [("evaluation", "cancelled")]
        held = engine.appointments(by_client["Sample Client-Four"])
        assert [a.status for a in held if a.kind == "evaluation"] == ["cancelled", "booked"]
    finally:
        engine.close()


def test_the_demos_mail_and_calendar_carry_its_simulated_time(shown: Shown) -> None:
    """Each delivered message's Date and each .ics DTSTAMP fall in the demo's months, not on today's date."""
    import email
    import email.policy
    import email.utils

    tmp_path = shown.folder
    end = DEMO_START + timedelta(days=180)  # the demo's story lasts a few months from its start
    mails = [p for sub in ("new", "cur") for p in (tmp_path / "demo.db-mail" / sub).iterdir()]
    assert mails
    for path in mails:
        sent = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert DEMO_START <= email.utils.parsedate_to_datetime(str(sent["Date"])) < end, sent["Date"]
    stamped = [datetime.strptime(line.removeprefix("DTSTAMP:"), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
               for line in stamps_of(tmp_path / "demo.db-mail" / "calendar")]
    assert stamped and all(DEMO_START <= at < end for at in stamped), stamped[:3]


def stamps_of(folder: Path) -> list[str]:
    return [line for ics in folder.rglob("*.ics")
            for line in ics.read_text(encoding="utf-8").splitlines() if line.startswith("DTSTAMP")]
