"""The first command says what it installs, and a test run summarises its skips in a line a reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_install_says_each_step(tmp_path: Path) -> None:
    """``make`` (dry run, on a fresh virtual environment folder) announces each install step before it runs."""
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-n", f"VENV={venv}", "lint"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    for step in ("creating the virtual environment", "updating pip", "installing kapflow and its pinned dependencies",
                 "installed into"):
        assert f"kapflow: {step}" in done.stdout, step


def test_skips_are_counted_once_per_reason(tmp_path: Path) -> None:
    """Three tests skipped for one reason and one for another: two summary lines, each with its count."""
    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('n', range(3))\n"
        "def test_needs_a_server(n):\n    pytest.skip('no server here')\n"
        "def test_other():\n    pytest.skip('another reason')\n"
        "def test_runs():\n    assert True\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "skip_summary", "--rootdir",
         str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(tmp_path / "test_some.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    lines = done.stdout.splitlines()
    assert "skipped 3: no server here" in lines and "skipped 1: another reason" in lines
    assert not any(line.startswith("SKIPPED [") for line in lines)  # not one line per skipped test
