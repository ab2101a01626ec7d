"""``kapflow apikey``: create shows the key once, list never shows it, revoke refuses it from then on."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.config import load_settings
from kapflow.errors import Unauthenticated


def _run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--db", f"sqlite:///{tmp_path / 'k.db'}", *args])
    return result.exit_code, result.stdout, result.stderr


def test_create_list_revoke(tmp_path: Path) -> None:
    """The key is printed once on stdout with a warning on stderr; the listing shows its id, never the secret."""
    code, out, err = _run(tmp_path, "apikey", "create", "--name", "pms", "--role", "front_desk",
                          "--delegate", "front_desk", "--delegate", "therapist")
    assert code == 0, err
    text = out.strip()
    assert text.startswith("kfk_") and out.count("\n") == 1
    assert "shown only this once" in err and text not in err
    key_id = text[4:16]

    code, out, err = _run(tmp_path, "apikey", "list", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert listed["id"] == key_id and listed["delegate_roles"] == ["front_desk", "therapist"] and listed["active"]
    assert text[17:] not in out and "key_hash" not in out
    code, table, _err = _run(tmp_path, "apikey", "list")
    assert code == 0 and key_id in table and text[17:] not in table

    settings = load_settings(None)
    with build_engine(f"sqlite:///{tmp_path / 'k.db'}", settings=settings) as built:
        assert built.authenticate_api_key(text).id == key_id

    code, out, err = _run(tmp_path, "apikey", "revoke", key_id)
    assert code == 0, err
    assert key_id in out
    with build_engine(f"sqlite:///{tmp_path / 'k.db'}", settings=settings) as built:
        try:
            built.authenticate_api_key(text)
        except Unauthenticated as refused:
            assert refused.reason == "revoked"
        else:
            raise AssertionError("a revoked key was accepted")
    code, out, _err = _run(tmp_path, "apikey", "list", "--json")
    assert json.loads(out)[0]["revoked_at"] is not None


def test_bad_input_exits_2_and_writes_no_key(tmp_path: Path) -> None:
    """An unknown role, or revoking an id nobody has, is one line on stderr and exit code 2."""
    code, out, err = _run(tmp_path, "apikey", "create", "--name", "pms", "--role", "janitor")
    assert code == 2 and out == "" and "known roles" in err and err.count("\n") == 1
    code, _out, err = _run(tmp_path, "apikey", "revoke", "ffffffffffff")
    assert code == 2 and "no API key" in err
    code, out, _err = _run(tmp_path, "apikey", "list", "--json")
    assert json.loads(out) == []
