"""``kapflow appointment``: booking prints the new appointment's id, and ``list`` shows a case's appointments."""

from __future__ import annotations

import json
from pathlib import Path

from support import INQUIRY
from typer.testing import CliRunner

from kapflow.cli import app

FRONT_DESK = ("--actor", "fd-1", "--role", "front_desk")


def _run(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--db", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_booking_prints_the_id_and_list_shows_every_appointment(tmp_path: Path) -> None:
    """The booking's line names its id (a1, a2); list shows both, the cancelled one as cancelled."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    code, out, err = _run(url, "open", *FRONT_DESK, "--data", json.dumps(INQUIRY), "--json")
    assert code == 0, err
    case_id = json.loads(out)["case_id"]
    code, out, err = _run(url, "appointment", "book", case_id, "evaluation", "2099-01-05T15:00:00+00:00", *FRONT_DESK,
                          "--clinician", "np-rowan")
    assert code == 0, err
    assert "recorded appointment a1" in out
    code, out, err = _run(url, "appointment", "book", case_id, "evaluation", "2099-01-07T15:00:00-05:00", *FRONT_DESK,
                          "--clinician", "np-rowan")
    assert "recorded appointment a2" in out
    assert _run(url, "appointment", "cancel", case_id, "a1", *FRONT_DESK)[0] == 0

    code, out, err = _run(url, "appointment", "list", case_id, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [(a["id"], a["kind"], a["status"], a["minutes"]) for a in listed] == [
        ("a1", "evaluation", "cancelled", 60), ("a2", "evaluation", "booked", 60),
    ]
    assert listed[1]["starts_at"].startswith("2099-01-07T20:00:00")  # shown in UTC
    code, out, _ = _run(url, "appointment", "list", case_id)
    assert "a2" in out and "cancelled" in out and "2099-01-07 20:00" in out


def test_listing_the_appointments_of_an_unknown_case_exits_4(tmp_path: Path) -> None:
    """An unknown case id is exit code 4 with one line on stderr."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert _run(url, "db", "upgrade")[0] == 0
    code, _out, err = _run(url, "appointment", "list", "case-0000000000000000")
    assert code == 4 and "unknown_case" in err


def test_list_shows_the_practices_time_and_who_holds_it(tmp_path: Path) -> None:
    """In the practice's zone and clock style, with the clinician and room; ``--utc`` on request."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    config = tmp_path / "kapflow.toml"
    config.write_text(f'database = "{url}"\ntimezone = "America/New_York"\nclock = "12h"\n', encoding="utf-8")

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, ["--config", str(config), *args])
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run("open", *FRONT_DESK, "--data", json.dumps(INQUIRY), "--json")
    assert code == 0, err
    case_id = json.loads(out)["case_id"]
    code, _out, err = run("appointment", "book", case_id, "evaluation", "2099-01-07T15:00:00-05:00", *FRONT_DESK,
                          "--clinician", "np-rowan")
    assert code == 0, err
    code, out, err = run("appointment", "list", case_id)
    assert code == 0, err
    assert "2099-01-07 3:00 PM EST" in out and "np-rowan" in out
    assert "2099-01-07 8:00 PM UTC" in run("appointment", "list", case_id, "--utc")[1]
    listed = json.loads(run("appointment", "list", case_id, "--json")[1])
    assert (listed[0]["clinician"], listed[0]["room"], listed[0]["starts_at"][:19]) == (
        "np-rowan", "", "2099-01-07T20:00:00")
