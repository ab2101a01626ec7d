"""The whole benchmark runs at tiny sizes and writes every figure, so bench/ cannot rot unseen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"

FIGURES = (
    "sqlite.fire_per_s", "sqlite.raw_per_s", "sqlite.ratio", "sqlite.fire_cold_per_s", "sqlite.ratio_cold",
    "sqlite.fire_growth_400", "sqlite.fresh_fire_per_s", "sqlite.aged_fire_per_s", "sqlite.replay_per_s",
    "sqlite.ratio_ceiling", "spiff.ratio_reload_ceiling",
    "spiff.durable_per_s", "spiff.ratio", "spiff.ratio_reload", "reminders.delivered_per_s",
    "memory.kapflow", "memory.transitions_bare", "memory.transitions_per_fire_machine",
    "memory.python_statemachine", "memory.spiff",
    "memory.vs_bare", "memory.vs_per_fire_machine", "memory.vs_spiff",
    "history_ms_p50", "timer_claim_per_s",
    "api.fire_per_s", "api.noop_per_s", "api.sqlite_fire_per_s", "api.ratio", "api.read_case_ms_p50",
)
POSTGRES_FIGURES = (
    "postgres.fire_per_s", "postgres.raw_per_s", "postgres.ratio", "postgres.workers_scaling",
    "postgres.cpu_scaling_2_processes", "api.pg_workers_scaling", "postgres.fire_growth_400",
    "scale.history_ms_p50", "scale.case_list_ms_p50", "scale.verify_case_ms_p50", "scale.db_bytes_per_case",
    "api.pg_workers_scaling_bound", "api.pg_cpu_scaling_2_processes", "api.pg_busiest_worker_share",
)
TARGETS = 21
ON_POSTGRES = ("postgres.", "api.pg_", "scale.")  # targets measured only with a PostgreSQL server


def _figure(results: dict[str, Any], key: str) -> object:
    node: Any = results
    for part in key.split("."):
        node = node[part]
    return node


def _postgres_url() -> str:
    return os.environ.get("KAPFLOW_BENCH_POSTGRES_URL") or os.environ.get("KAPFLOW_TEST_POSTGRES_URL") or ""


def test_tiny_benchmark_writes_every_figure(tmp_path: Path) -> None:
    """bench/run.py --tiny exits 0, prints the table, and results.json has a positive number for each figure."""
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--tiny", "--out", str(out), "--workdir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    expected = FIGURES + (POSTGRES_FIGURES if _postgres_url() else ())
    for key in expected:
        value = _figure(results, key)
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{key} is {value!r}"
        assert value > 0, f"{key} is {value}"
    # Growth of peak memory can be nil: at least not negative.
    rss = results["rss_mb_per_100k_cases"]
    assert isinstance(rss, int | float) and rss >= 0
    if not _postgres_url():
        assert "skipped" in results["postgres"]
    verdicts = results["targets"]
    assert len(verdicts) == TARGETS
    assert all(v["result"] in ("PASS", "FAIL") for v in verdicts if not v["figure"].startswith(ON_POSTGRES))
    assert results["mode"] == "tiny" and results["machine"]["cores"] >= 1
    for v in verdicts:
        assert v["figure"] in done.stdout
    assert list(tmp_path.glob("kapflow-bench-*")) == [], "the benchmark left its temporary directory behind"
