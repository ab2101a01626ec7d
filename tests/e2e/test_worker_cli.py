"""The worker's command line: start-up checks of the practice's settings, and one pass over what is due."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import FRONT_DESK, INQUIRY, who
from typer.testing import CliRunner

from kapflow.bootstrap import build_dispatcher, build_engine
from kapflow.cli import app
from kapflow.config import load_settings
from kapflow.testing import FakeClock


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp_path: Path, config: str, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "kapflow.toml"
    path.write_text(f'database = "sqlite:///{tmp_path / "k.db"}"\n' + config, encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(path), *args])
    return result.exit_code, result.stdout, result.stderr


def test_unreachable_smtp_host_stops_the_worker_at_start_up(tmp_path: Path) -> None:
    """An SMTP server nobody listens on: one line naming the adapter and what to check, no traceback."""
    code, _out, err = _run(
        tmp_path, f'[email]\nhost = "127.0.0.1"\nport = {_closed_port()}\nsender = "care@practice.example"\n',
        "worker", "--once",
    )
    assert code == 1
    assert err.startswith("kapflow: adapter_config_error: smtp: cannot reach the SMTP server")
    assert "Traceback" not in err and err.count("\n") == 1


def test_malformed_apprise_url_stops_the_worker_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A channel URL apprise cannot read is refused before anything runs (URLs come from the environment)."""
    monkeypatch.setenv("KAPFLOW_TEST_SMS_URLS", "nonsense://")
    code, _out, err = _run(tmp_path, '[channels.sms]\nurls_env = "KAPFLOW_TEST_SMS_URLS"\n', "worker", "--once")
    assert code == 1 and "adapter_config_error: apprise" in err


def test_every_settings_problem_is_listed_at_once(tmp_path: Path) -> None:
    """A settings file with several mistakes names each of them, and the worker does not start."""
    code, _out, err = _run(
        tmp_path,
        '[email]\nport = 99999\n[calendar]\nusername = "x"\n[worker]\ninterval_seconds = -1\n'
        '[webhook]\nurl = "https://hooks.example/k"\nsecret_env = "KAPFLOW_TEST_UNSET_SECRET"\n',
        "worker", "--once",
    )
    assert code == 2
    for problem in ("email.host is required", "email.port must be", "calendar needs exactly one of",
                    "worker.interval_seconds must be", "KAPFLOW_TEST_UNSET_SECRET"):
        assert problem in err


def test_worker_once_delivers_due_reminders_into_a_maildir(tmp_path: Path) -> None:
    """``worker --once`` turns due timers into messages and delivers them, then exits 0."""
    mail = tmp_path / "mail"
    config = f'[maildir]\nfolder = "{mail}"\n[contacts.front_desk]\nemail = "desk@practice.example"\n'

    code, out, err = _run(tmp_path, config, "open", "--actor", "fd-1", "--role", "front_desk",
                          "--data", json.dumps(INQUIRY), "--json")
    assert code == 0, err
    case_id = json.loads(out)["case_id"]
    code, out, err = _run(tmp_path, config, "appointment", "book", case_id, "evaluation",
                          "2099-01-05T15:00:00+00:00", "--actor", "fd-1", "--role", "front_desk",
                          "--clinician", "np-rowan")
    assert code == 0, err
    code, out, err = _run(tmp_path, config, "fire", case_id, "book_evaluation", "--actor", "fd-1",
                          "--role", "front_desk")
    assert code == 0, err
    code, out, err = _run(tmp_path, config, "worker", "--once")
    assert code == 0, err
    assert "handled" in out
    delivered = [path.read_bytes() for path in (mail / "new").iterdir()]
    # the booking's confirmation and the fee reminder at booking; the rest are far ahead
    subjects = sorted(line for body in delivered for line in body.splitlines() if line.startswith(b"Subject: "))
    assert subjects == [b"Subject: Appointment booked", b"Subject: Payment reminder"]
    code, out, _err = _run(tmp_path, config, "outbox", "--case", case_id, "--json")
    assert [row["status"] for row in json.loads(out)] == ["sent", "sent"]


@pytest.fixture
def new_york_queue(tmp_path: Path) -> Path:
    """A practice in New York on a 12-hour clock: an evaluation for Monday 9 March 2026, 10:00 AM EDT, booked
    at 9:30 AM EST on Thursday 5 March, and one pass of the worker then (its messages are in the outbox)."""
    path = tmp_path / "kapflow.toml"
    path.write_text(
        f'database = "sqlite:///{tmp_path / "q.db"}"\ntimezone = "America/New_York"\nclock = "12h"\n'
        f'[maildir]\nfolder = "{tmp_path / "mail"}"\n[contacts.front_desk]\nemail = "desk@practice.example"\n',
        encoding="utf-8",
    )
    settings = load_settings(path)
    clock = FakeClock(datetime(2026, 3, 5, 14, 30, tzinfo=UTC))
    with build_engine(settings.database, clock=clock, settings=settings) as engine:
        case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
        engine.book_appointment(case_id, "evaluation", datetime(2026, 3, 9, 14, tzinfo=UTC), actor=FRONT_DESK,
                                **who(case_id))
        engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
        dispatcher = build_dispatcher(engine, settings)
        dispatcher.check()  # makes the Maildir
        dispatcher.run_until_idle()
    return path


def _listing(path: Path, *args: str, columns: int) -> str:
    result = CliRunner().invoke(app, ["--config", str(path), *args], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    return result.stdout


@pytest.mark.parametrize("columns", [80, 200])
def test_timers_and_outbox_show_the_practices_time_in_its_clock_style(new_york_queue: Path, columns: int) -> None:
    """Times read 9:30 AM EST before the clocks change on 8 March and EDT after; --utc gives UTC; --json stays UTC."""
    timers = _listing(new_york_queue, "timers", columns=columns)
    assert "9:30 AM EST" in timers and "AM EDT" in timers and "(UTC)" not in timers
    outbox = _listing(new_york_queue, "outbox", columns=columns)
    assert "9:30 AM EST" in outbox and "(UTC)" not in outbox
    for listing in ("timers", "outbox"):
        utc = _listing(new_york_queue, listing, "--utc", columns=columns)
        assert "2:30 PM UTC" in utc and "EST" not in utc and "EDT" not in utc
    rows = json.loads(_listing(new_york_queue, "outbox", "--json", columns=200))
    assert rows and {row["created_at"] for row in rows} == {"2026-03-05T14:30:00.000000+00:00"}
