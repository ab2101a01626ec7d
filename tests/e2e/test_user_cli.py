"""``kapflow user``: add (password from the environment or a hidden prompt, TOTP URI shown once), list,
disable, passwd and totp; the accounts then sign in (or not) through the engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from typer.testing import CliRunner

from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.config import load_settings
from kapflow.errors import Unauthenticated
from kapflow.testing import FakeClock

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
         columns: int = 80) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--db", f"sqlite:///{tmp_path / 'k.db'}", *args], input=stdin,
                                env={"COLUMNS": str(columns), **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def _sign_in(tmp_path: Path, name: str, password: str, code: str | None = None) -> str:
    with build_engine(f"sqlite:///{tmp_path / 'k.db'}", settings=load_settings(None), clock=FakeClock(NOW)) as built:
        return built.sign_in(name, password, code, source="127.0.0.1")[1].actor


def test_add_from_the_environment_list_disable(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "user", "add", "jordan.lee", "--role", "therapist", "--password-env", "PW",
                          env={"PW": PASSWORD})
    assert code == 0, err
    assert out == "" and "added in role therapist" in err and PASSWORD not in out + err
    assert _sign_in(tmp_path, "jordan.lee", PASSWORD) == "jordan.lee"

    code, out, err = _run(tmp_path, "user", "list", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert (listed["name"], listed["role"], listed["totp"]) == ("jordan.lee", "therapist", False) and listed["active"]
    assert "hash" not in out and "argon2" not in out
    code, table, err = _run(tmp_path, "user", "list")
    assert code == 0, err
    assert "jordan.lee" in table and all(len(line) <= 80 for line in table.splitlines())

    code, out, err = _run(tmp_path, "user", "disable", "jordan.lee")
    assert code == 0 and "disabled console user jordan.lee" in out, err
    with pytest.raises(Unauthenticated) as refused:
        _sign_in(tmp_path, "jordan.lee", PASSWORD)
    assert refused.value.reason == "disabled"
    code, out, _err = _run(tmp_path, "user", "list", "--json")
    assert json.loads(out)[0]["disabled_at"] is not None


def test_add_with_totp_prints_the_uri_once_and_totp_replaces_it(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "user", "add", "pat", "--role", "prescriber", "--totp", "--password-env", "PW",
                          env={"PW": PASSWORD})
    assert code == 0, err
    uri = out.strip()
    assert uri.startswith("otpauth://totp/kapflow:pat?") and out.count("\n") == 1 and "only this once" in err
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    assert _sign_in(tmp_path, "pat", PASSWORD, pyotp.TOTP(secret).at(NOW)) == "pat"
    with pytest.raises(Unauthenticated) as refused:
        _sign_in(tmp_path, "pat", PASSWORD)
    assert refused.value.reason == "totp_required"

    code, out, err = _run(tmp_path, "user", "totp", "pat")
    assert code == 0, err
    fresh = parse_qs(urlparse(out.strip()).query)["secret"][0]
    assert fresh != secret
    assert _sign_in(tmp_path, "pat", PASSWORD, pyotp.TOTP(fresh).at(NOW)) == "pat"


def test_the_password_prompt_is_hidden_and_confirmed(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "user", "add", "avery", "--role", "front_desk",
                          stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, err
    assert PASSWORD not in out + err
    assert _sign_in(tmp_path, "avery", PASSWORD) == "avery"
    code, _out, err = _run(tmp_path, "user", "passwd", "avery", stdin="another long phrase\nanother long phrase\n")
    assert code == 0, err
    assert _sign_in(tmp_path, "avery", "another long phrase") == "avery"


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "user", "add", "jordan", "--role", "janitor", "--password-env", "PW",
                          env={"PW": PASSWORD})
    assert code == 2 and out == "" and "known roles" in err and err.count("\n") == 1
    code, _out, err = _run(tmp_path, "user", "add", "jordan", "--role", "therapist", "--password-env", "PW",
                           env={"PW": "short"})
    assert code == 2 and "at least 12" in err
    code, _out, err = _run(tmp_path, "user", "add", "jordan", "--role", "therapist", "--password-env", "UNSET_VAR")
    assert code == 2 and "UNSET_VAR" in err
    code, _out, err = _run(tmp_path, "user", "disable", "nobody")
    assert code == 2 and "no console user" in err
    code, out, _err = _run(tmp_path, "user", "list", "--json")
    assert json.loads(out) == []


def test_the_help_fits_80_columns(tmp_path: Path) -> None:
    for args in (("user", "--help"), ("user", "add", "--help"), ("user", "passwd", "--help")):
        code, out, err = _run(tmp_path, *args)
        assert code == 0, err
        assert all(len(line) <= 80 for line in out.splitlines()), out
