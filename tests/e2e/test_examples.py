"""Every example runs as a user would run it, and says what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "practice_management.py": ["evaluation_fee_unpaid", "state now: evaluating", "audit chain ok: True"],
    "practice_policy.py": [
        "(workflow v1): dosing started", "(workflow v2): held", "above 135/85", "max_systolic: 140 -> 135",
        "(ready_for_kap, v1): can move", "(dosing, v1): cannot move: entry_guard_fails", "migrated to v2",
    ],
}


def _run(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )


def test_every_example_is_covered() -> None:
    """Each script in examples/ has expectations here, so none can rot unseen."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_on_sqlite(script: str, tmp_path: Path) -> None:
    """The example exits 0 on a SQLite file and prints its key lines."""
    result = _run(script, tmp_path, f"sqlite:///{tmp_path / 'example.db'}")
    assert result.returncode == 0, result.stderr
    for line in EXPECTED[script]:
        assert line in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_on_postgres(script: str, tmp_path: Path, postgres_schema_url: str) -> None:
    """The same example runs unchanged against PostgreSQL."""
    result = _run(script, tmp_path, postgres_schema_url)
    assert result.returncode == 0, result.stderr
    for line in EXPECTED[script]:
        assert line in result.stdout
