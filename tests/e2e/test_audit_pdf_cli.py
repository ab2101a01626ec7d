"""``kapflow audit export --format pdf``: a case's history as a PDF for a records request, written 0600, to
stdout only when it is not a terminal. Every name and value is synthetic."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support import FRONT_DESK, INQUIRY
from typer.testing import CliRunner

from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.cli import audit as audit_cli

runner = CliRunner()


def _practice(tmp_path: Path) -> tuple[list[str], str]:
    """A practice in New York with a signing key, one case and a signed checkpoint; then one more case."""
    key, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    made = runner.invoke(app, ["audit", "keygen", "--name", "practice-example", "--private", str(key),
                               "--public", str(public)])
    assert made.exit_code == 0, made.output
    config = tmp_path / "kapflow.toml"
    config.write_text(f'timezone = "America/New_York"\n[audit]\norigin = "practice.example/audit"\n'
                      f'signing_key_file = "{key}"\ncheckpoint_file = "{tmp_path / "checkpoints.jsonl"}"\n')
    db = f"sqlite:///{tmp_path / 'kapflow.db'}"
    base = ["--db", db, "--config", str(config)]
    engine = build_engine(db)
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    engine.close()
    signed = runner.invoke(app, [*base, "audit", "checkpoint"])
    assert signed.exit_code == 0, signed.output
    return base, case_id


def _text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed; .ci/run installs it")
    done = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(done.stdout.split())


def test_export_writes_a_private_pdf_of_the_case(tmp_path: Path) -> None:
    base, case_id = _practice(tmp_path)
    out = tmp_path / "history.pdf"
    out.write_text("an older file, readable by all")
    out.chmod(0o644)
    done = runner.invoke(app, [*base, "audit", "export", "--case", case_id, "--format", "pdf", "--output", str(out),
                               "--paper", "a4"])
    assert done.exit_code == 0, done.output
    assert done.output == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds the client's data
    assert out.read_bytes().startswith(b"%PDF-")
    text = _text(out)
    assert f"Audit history of case {case_id}" in text and "America/New_York" in text
    assert "signed checkpoint of 1 log entries" in text and "position 0 covered" in text
    assert "opened" in text and "front_desk" in text and "page 1 of 1" in text
    assert ("EST" in text) or ("EDT" in text)  # times in the practice's zone


def test_a_pdf_goes_to_stdout_only_when_it_is_not_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    base, case_id = _practice(tmp_path)
    piped = runner.invoke(app, [*base, "audit", "export", "--case", case_id, "--format", "pdf"])
    assert piped.exit_code == 0, piped.output
    assert piped.stdout_bytes.startswith(b"%PDF-") and piped.stdout_bytes.rstrip().endswith(b"%%EOF")
    monkeypatch.setattr(audit_cli, "_is_terminal", lambda: True)
    refused = runner.invoke(app, [*base, "audit", "export", "--case", case_id, "--format", "pdf"])
    assert refused.exit_code == 2
    assert "not for a terminal" in refused.output and "--output" in refused.output
    text = runner.invoke(app, [*base, "audit", "export", "--case", case_id, "--format", "csv"])
    assert text.exit_code == 0 and text.output.startswith("#checkpoint")  # text forms still print to a terminal
