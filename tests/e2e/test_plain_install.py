"""A wheel built from the repository, installed without extras in a fresh virtual environment, runs the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a build needs from the checkout; everything else (the venv, build/, site/, caches) stays behind.
SOURCES = ("kapflow", "workflows", "adapters", "pyproject.toml", "README.md", "constraints.txt")
NOT_SOURCES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.db", "*.db-*")


def run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, say which step failed and show its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "KAPFLOW_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    try:
        done = subprocess.run(
            [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(map(str, args[:4]))} ... did not finish within its deadline of {timeout:.0f} s")
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_icalendar_is_a_core_dependency_and_pinned() -> None:
    """icalendar (the default ICS calendar's library) is a core dependency; caldav and apprise stay extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert "icalendar" in core
    extras = project["optional-dependencies"]
    assert not any(d.startswith("icalendar") for d in extras["calendar"])
    assert any(d.startswith("caldav") for d in extras["calendar"])
    assert any(d.startswith("apprise") for d in extras["notify"])
    assert "icalendar==" in (ROOT / "constraints.txt").read_text()


@pytest.mark.slow
def test_a_plain_wheel_install_runs_help_and_the_demo(tmp_path: Path) -> None:
    """Build the wheel, pip-install it with the constraints and no extras into a new venv, run --help and demo."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=NOT_SOURCES)
        else:
            shutil.copy2(path, source / name)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, "."],
        source, timeout=300)
    (wheel,) = wheels.glob("kapflow-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, timeout=120)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt", wheel], tmp_path, timeout=600)
    installed = run([python, "-m", "pip", "list", "--format=freeze"], tmp_path, timeout=60).stdout.lower()
    assert "icalendar==" in installed
    assert "caldav==" not in installed and "apprise==" not in installed  # no extras came along

    kapflow = venv / "bin" / "kapflow"
    assert "demo" in run([kapflow, "--help"], tmp_path, timeout=60).stdout
    demo = run([kapflow, "--db", f"sqlite:///{tmp_path / 'demo.db'}", "demo"], tmp_path, timeout=300)
    assert "Sample Client-One" in demo.stdout
    assert "Traceback" not in demo.stdout + demo.stderr
