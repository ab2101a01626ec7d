"""Peak memory of a process that fires N cases, for two sizes, each in a fresh subprocess.

Each case is opened through the engine and fired once (``hold``, from ``inquiry``): two commands,
two commits. The database is a SQLite file on ``/dev/shm`` when there is one (memory-backed, so
the run is quick; its pages are the kernel's, not the process's). The figure is the growth of the
peak from the smaller size to the larger, scaled to 100k cases:
``(rss_large - rss_small) / (large - small) * 100_000``. Run as a script it is the subprocess.

The peak is the subprocess's ``VmHWM`` (``/proc/self/status``) where there is one, else
``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux a child's ``ru_maxrss`` starts from its parent's
resident set at ``fork`` and keeps it through ``exec``, so a benchmark process that had grown to
160 MB saw every child report 160 MB, whatever the child did. ``VmHWM`` belongs to the new
process image. Both are recorded.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_SHM = Path("/dev/shm")


def fire_cases(db: Path, cases: int) -> int:
    """The subprocess's work; returns its peak resident set in KiB."""
    from paths import FRONT_DESK, INTAKE, new_clock

    from kapflow.app.engine import Engine
    from kapflow.store.sql import SqlStore
    from kapflow.workflows.kap import KAP_PATHWAY

    store = SqlStore(f"sqlite:///{db}")
    engine = Engine(store, KAP_PATHWAY, clock=new_clock())
    try:
        for _ in range(cases):
            case_id = engine.open_case(INTAKE, actor=FRONT_DESK).case_id
            engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "client asked for a pause"})
    finally:
        store.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def high_water_kb() -> int | None:
    """This process image's peak resident set (VmHWM) in KiB, where /proc has it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def measure_size(cases: int, timeout: float) -> tuple[int, int]:
    """Peak RSS in KiB of a fresh interpreter firing ``cases`` cases: (the figure used, ru_maxrss)."""
    parent = _SHM if _SHM.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="kapflow-rss-", dir=parent) as tmp:
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--cases", str(cases), "--db", str(Path(tmp) / "rss.db")],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"rss subprocess failed ({out.returncode}): {out.stderr[-2000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    peak = report["vmhwm_kb"] if report["vmhwm_kb"] is not None else report["maxrss_kb"]
    return int(peak), int(report["maxrss_kb"])


def run(small: int, large: int, mode: str, timeout: float = 1800.0) -> dict[str, Any]:
    """``rss_mb_per_100k_cases`` and the ``rss`` section of results.json."""
    rss_small, maxrss_small = measure_size(small, timeout)
    rss_large, maxrss_large = measure_size(large, timeout)
    growth_mb = (rss_large - rss_small) / 1024
    per_100k = max(growth_mb, 0.0) / (large - small) * 100_000
    note = "" if large >= 100_000 else f"; {mode} mode: extrapolated from {small:,} and {large:,} cases"
    return {
        "mb_per_100k_cases": per_100k,
        "small_cases": small,
        "large_cases": large,
        "peak_small_mb": rss_small / 1024,
        "peak_large_mb": rss_large / 1024,
        "growth_mb": growth_mb,
        "peak_from": "VmHWM" if _has_vmhwm() else "ru_maxrss",
        "ru_maxrss_small_mb": maxrss_small / 1024,
        "ru_maxrss_large_mb": maxrss_large / 1024,
        "database_on": "tmpfs (/dev/shm)" if _SHM.is_dir() else "the temporary directory",
        "measures": "growth of a fresh process's peak RSS (VmHWM; see peak_from) from the small to the large "
        "number of cases, each opened and fired once through the engine, scaled to 100k cases (a negative "
        "growth counts as 0)" + note,
    }


def _has_vmhwm() -> bool:
    return high_water_kb() is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    maxrss = fire_cases(args.db, args.cases)
    print(json.dumps({"cases": args.cases, "maxrss_kb": maxrss, "vmhwm_kb": high_water_kb()}))


if __name__ == "__main__":
    main()
