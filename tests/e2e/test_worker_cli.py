"""The worker's command line: start-up checks of the practice's settings, and one pass over what is due."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from support import INQUIRY
from typer.testing import CliRunner

from kapflow.cli import app


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
                          "2099-01-05T15:00:00+00:00", "--actor", "fd-1", "--role", "front_desk")
    assert code == 0, err
    code, out, err = _run(tmp_path, config, "fire", case_id, "book_evaluation", "--actor", "fd-1",
                          "--role", "front_desk")
    assert code == 0, err
    code, out, err = _run(tmp_path, config, "worker", "--once")
    assert code == 0, err
    assert "handled" in out
    delivered = list((mail / "new").iterdir())
    assert len(delivered) == 1  # the fee reminder at booking; the rest are far ahead
    assert b"Subject: Payment reminder" in delivered[0].read_bytes()
    code, out, _err = _run(tmp_path, config, "outbox", "--case", case_id, "--json")
    assert [row["status"] for row in json.loads(out)] == ["sent"]
