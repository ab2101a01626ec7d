"""kapflow's benchmarks: ``python bench/run.py [--quick]`` writes bench/results.json and prints a table.

Run it as a script (``make bench`` / ``make bench-quick``): its modules import each other by name.
Targets print PASS or FAIL; the exit status is 0 either way (a benchmark is not a test).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import api
import audit
import console
import durable
import growth
import memory
import reads
import reminders
import rss
import timers
from measure import PROFILES, Sizes, cores, filesystem_of
from pg import postgres_url

RESULTS = Path(__file__).with_name("results.json")

# (key in results.json, comparison, target). Every other figure is printed for context, without a target.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("sqlite.ratio", ">=", 0.5),
    ("postgres.ratio", ">=", 0.6),
    ("sqlite.fire_growth_400", "<=", 1.15),
    ("postgres.fire_growth_400", "<=", 1.15),
    ("postgres.workers_scaling", ">=", 1.5),
    ("spiff.ratio_reload", ">=", 2),
    ("memory.vs_per_fire_machine", ">=", 20),
    ("history_ms_p50", "<=", 1),
    ("timer_claim_per_s", ">=", 2000),
    ("reminders.delivered_per_s", ">=", 500),
    ("rss_mb_per_100k_cases", "<=", 20),
    ("console.case_page_ms_p50", "<=", 50),
    ("console.case_list_ms_p50", "<=", 50),
    ("console.name_search_ms_p50", "<=", 50),
    ("api.ratio", ">=", 0.8),
    ("api.read_case_ms_p50", "<=", 5),
    ("api.pg_workers_scaling", ">=", 1.5),
    ("scale.history_ms_p50", "<=", 1),
    ("scale.case_list_ms_p50", "<=", 50),
    ("scale.verify_case_ms_p50", "<=", 10),
    ("audit.checkpoint_100k_s", "<=", 10),
)

# Figures printed in the table besides the targets.
SHOWN = (
    "sqlite.fire_per_s", "sqlite.raw_per_s", "sqlite.replay_per_s", "sqlite.ratio_ceiling", "sqlite.fire_cold_per_s",
    "sqlite.ratio_cold",
    "sqlite.fresh_fire_per_s", "sqlite.aged_fire_per_s", "sqlite.aged_case_row_chars",
    "postgres.fire_per_s", "postgres.raw_per_s", "postgres.fresh_fire_per_s", "postgres.aged_fire_per_s",
    "postgres.workers_1_per_s", "postgres.workers_4_per_s", "postgres.workers_scaling_bound",
    "postgres.cpu_scaling_2_processes",
    "spiff.durable_per_s", "spiff.durable_reload_per_s", "spiff.ratio", "spiff.ratio_reload_ceiling",
    "memory.vs_bare", "memory.vs_spiff", "memory.kapflow", "memory.transitions_bare",
    "memory.transitions_per_fire_machine",
    "memory.transitions_per_fire_machine_no_auto", "memory.transitions_per_fire_machine_path_only",
    "memory.vs_per_fire_machine_path_only", "memory.python_statemachine", "memory.spiff",
    "history.p95_ms", "history.raw_sqlite3_p50_ms", "timers.delivery_per_s",
    "reminders.smtplib_one_connection_per_s", "reminders.smtplib_connection_per_message_per_s",
    "audit.checkpoint_events_per_s", "audit.checkpoint_100k_s", "audit.verify_s_per_million_events",
    "audit.proof_ms", "audit.proof_tree_ms",
    "api.fire_per_s", "api.noop_per_s", "api.sqlite_fire_per_s", "api.ratio", "api.read_case_ms_p50",
    "api.pg_workers_1_per_s", "api.pg_workers_2_per_s", "api.pg_workers_scaling",
    "api.pg_workers_scaling_bound", "api.pg_cpu_scaling_2_processes", "api.pg_server_busy_1_worker",
    "api.pg_cores_busy_2_workers", "api.pg_busiest_worker_share",
    "scale.cases", "scale.audit_events", "scale.db_bytes_per_case",
)


def lookup(results: dict[str, Any], key: str) -> float | None:
    node: Any = results
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, op, target in TARGETS:
        value = lookup(results, key)
        if value is None:
            out.append({"figure": key, "target": f"{op} {target:g}", "value": None, "result": "SKIP"})
            continue
        ok = value >= target if op == ">=" else value <= target
        out.append({"figure": key, "target": f"{op} {target:g}", "value": value, "result": "PASS" if ok else "FAIL"})
    return out


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"kapflow benchmarks, {results['mode']} mode, {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        f"load average {m['loadavg_start']} -> {m['loadavg_end']}, {results['elapsed_s']:.0f} s",
        "",
        f"{'figure':<52} {'value':>12}  {'target':>9}  result",
        f"{'-' * 52} {'-' * 12}  {'-' * 9}  ------",
    ]
    for v in results["targets"]:
        shown = "-" if v["value"] is None else _fmt(v["value"])
        lines.append(f"{v['figure']:<52} {shown:>12}  {v['target']:>9}  {v['result']}")
    lines.append("")
    for key in SHOWN:
        value = lookup(results, key)
        if value is not None:
            lines.append(f"{key:<52} {_fmt(value):>12}")
    if "skipped" in results.get("postgres", {}):
        lines.append(f"postgres: {results['postgres']['skipped']}")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    """Ratios with three decimals (0.498 is not 0.50), rates as whole numbers."""
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"


def _section(results: dict[str, Any], name: str, work: Callable[[], Any]) -> Any:
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    # Each section as in a process of its own: what the sections before left is collected, and what stays (the
    # modules, the results) is not scanned again by the collector's full passes, which otherwise land on
    # whichever operation happens to trigger one (quick size: sqlite.fire_growth_400 measured 1.73 in the
    # bench's process after the durable section, 1.36 to 1.39 in a process of its own, 1.03 run again after).
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    try:
        value = work()
    finally:
        gc.unfreeze()
    results.setdefault("section_s", {})[name] = round(time.perf_counter() - start, 1)
    return value


def run(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": sizes.name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": cores(),
            "cpu": _cpu(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": _load(),
            "workdir_filesystem": filesystem_of(workdir),
        },
        "sizes": sizes.__dict__,
    }
    sqlite, spiff = _section(results, "sqlite+spiff", lambda: durable.run(sizes, workdir))
    results["sqlite"], results["spiff"] = sqlite, spiff
    sqlite.update(_section(results, "sqlite growth", lambda: growth.run(sizes, f"sqlite:///{workdir / 'growth.db'}")))
    url = postgres_url()
    if url:
        import durable_pg  # psycopg only when a server is there
        import scale

        results["postgres"] = _section(results, "postgres", lambda: durable_pg.run(sizes, url))
        results["postgres"].update(_section(results, "postgres growth", lambda: durable_pg.growth(sizes, url)))
        results["scale"] = _section(results, "postgres scale", lambda: scale.run(sizes, url))
    else:
        results["postgres"] = {"skipped": "no PostgreSQL URL: set KAPFLOW_BENCH_POSTGRES_URL (or "
                               "KAPFLOW_TEST_POSTGRES_URL)"}
    results["api"] = _section(results, "api", lambda: api.run(sizes, workdir, url))
    results["memory"] = _section(results, "memory", lambda: memory.run(sizes))
    history = _section(results, "history", lambda: reads.run(sizes, workdir))
    results["history_ms_p50"], results["history"] = history["p50_ms"], history
    results["audit"] = _section(results, "audit", lambda: audit.run(sizes, workdir))
    results["console"] = _section(results, "console", lambda: console.run(sizes, workdir))
    timer = _section(results, "timers", lambda: timers.run(sizes, workdir))
    results["timer_claim_per_s"], results["timers"] = timer["claim_per_s"], timer
    results["reminders"] = _section(results, "reminders", lambda: reminders.run(sizes, workdir))
    mem = _section(results, "rss", lambda: rss.run(sizes.rss_small, sizes.rss_large, sizes.name))
    results["rss_mb_per_100k_cases"], results["rss"] = mem["mb_per_100k_cases"], mem
    results["machine"]["loadavg_end"] = _load()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["targets"] = verdicts(results)
    return results


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _terminated(_signum: int, _frame: Any) -> None:
    raise SystemExit(143)  # unwind: temporary files and the PostgreSQL schema are cleaned up on the way out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sizes: under a minute on 2 cores")
    mode.add_argument("--tiny", action="store_true", help="seconds; for the smoke test (numbers mean nothing)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write the JSON (default {RESULTS})")
    parser.add_argument("--workdir", type=Path, default=None, help="where the databases go (default: a new "
                        "temporary directory, removed afterwards; it must be on a real disk for durable numbers)")
    args = parser.parse_args(argv)
    sizes = PROFILES["tiny" if args.tiny else "quick" if args.quick else "full"]
    signal.signal(signal.SIGTERM, _terminated)
    with tempfile.TemporaryDirectory(prefix="kapflow-bench-", dir=args.workdir) as tmp:
        results = run(sizes, Path(tmp))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
