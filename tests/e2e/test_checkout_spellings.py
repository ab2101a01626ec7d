"""From the repository root, every usual spelling imports kapflow with its workflows and adapters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # The root first on sys.path, as `python -m ...` and IDEs put it; no PYTHONPATH of the test run.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=False, env=env)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("-c", "import kapflow.workflows.kap, kapflow.adapters.notify"), id="python -c import"),
        pytest.param(("-m", "kapflow", "--help"), id="python -m kapflow"),
        pytest.param(("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_payload.py"),
                     id="python -m pytest"),
    ],
)
def test_spelling_works_from_the_root(args: tuple[str, ...]) -> None:
    """The spelling exits 0 and no ModuleNotFoundError appears."""
    result = _run(*args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ModuleNotFoundError" not in result.stderr


def test_an_example_runs_from_the_root(tmp_path: Path) -> None:
    """``python examples/NAME.py`` from the root runs (its folder, not the root, is first on sys.path)."""
    result = _run("examples/practice_management.py", f"sqlite:///{tmp_path / 'example.db'}")
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_source_tree_maps_the_same_modules_as_the_installed_package() -> None:
    """From the root, kapflow.workflows is the repository's workflows/ folder (no second copy is imported)."""
    code = "import kapflow.workflows.kap as k, kapflow; print(k.__file__); print(kapflow.__file__)"
    lines = _run("-c", code).stdout.split()
    assert Path(lines[0]).resolve() == ROOT / "workflows" / "kap" / "__init__.py"
    assert Path(lines[1]).resolve() == ROOT / "kapflow" / "__init__.py"
