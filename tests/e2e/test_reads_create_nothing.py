"""Reads never create a database, read-only commands need no channel secret, and errors name the real cause."""

from __future__ import annotations

import json
from pathlib import Path

from support import INQUIRY
from typer.testing import CliRunner

from kapflow.cli import app

SETTINGS = """
[email]
host = "smtp.practice.example"
sender = "care@practice.example"
username = "kapflow"
password_env = "KAPFLOW_TEST_NEVER_SET"
"""


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_reading_a_database_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    """A mistyped --db for cases, history or db current: a clear error, and no file left behind."""
    typo = tmp_path / "typo.db"
    for args in (["cases"], ["history", "case-0000000000000000"], ["audit", "verify"], ["timers"],
                 ["db", "current"]):
        code, _out, err = _run("--db", f"sqlite:///{typo}", *args)
        assert code == 1, (args, err)
        assert f"no database at {typo}" in err and "kapflow db upgrade" in err
        assert not typo.exists() and not list(tmp_path.iterdir())


def test_the_first_write_or_db_upgrade_creates_it(tmp_path: Path) -> None:
    """Opening a case creates the database; then reads work on it."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    code, _out, err = _run("--db", url, "open", "--actor", "fd-1", "--role", "front_desk", "--data",
                           json.dumps(INQUIRY))
    assert code == 0, err
    assert _run("--db", url, "cases")[0] == 0


def test_read_only_commands_need_no_channel_secret(tmp_path: Path) -> None:
    """With an SMTP password variable unset, cases and history work; the worker still insists on it."""
    settings = tmp_path / "kapflow.toml"
    settings.write_text(f'database = "sqlite:///{tmp_path / "k.db"}"\n' + SETTINGS, encoding="utf-8")
    code, out, err = _run("--config", str(settings), "open", "--actor", "fd-1", "--role", "front_desk", "--data",
                          json.dumps(INQUIRY), "--json")
    assert code == 0, err
    case_id = json.loads(out)["case_id"]
    assert _run("--config", str(settings), "cases")[0] == 0
    assert _run("--config", str(settings), "history", case_id)[0] == 0
    code, _out, err = _run("--config", str(settings), "worker", "--once")
    assert code == 2 and "KAPFLOW_TEST_NEVER_SET" in err


def test_errors_name_the_real_cause(tmp_path: Path) -> None:
    """A missing folder, a database kapflow does not run on, a server that refuses: each said as such."""
    missing = tmp_path / "no-such-folder" / "k.db"
    code, _out, err = _run("--db", f"sqlite:///{missing}", "open", "--actor", "fd-1", "--role", "front_desk",
                           "--data", json.dumps(INQUIRY))
    assert code == 1 and f"the folder {missing.parent} for the SQLite database does not exist" in err
    code, _out, err = _run("--db", "mysql://kapflow@127.0.0.1/k", "cases")
    assert code == 1 and "kapflow does not run on 'mysql' databases" in err
    code, _out, err = _run("--db", "postgresql+psycopg://postgres@127.0.0.1:1/k", "cases")
    assert code == 1 and "cannot connect to the database server at 127.0.0.1:1" in err
    assert "Traceback" not in err
