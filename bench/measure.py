"""What every family shares: the size profiles, timing helpers, and the SQLite settings kapflow uses.

Sizes come in three profiles: ``full`` (``make bench``), ``quick`` (``make bench-quick``, under a
minute on 2 cores) and ``tiny`` (the smoke test: seconds, numbers meaningless, only the shape counts).
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    name: str
    repetitions: int  # of each side-by-side measurement; the median is reported
    durable_cases: int  # cases per repetition in the durable families (8 fires each)
    # Cases per worker process in the PostgreSQL scaling measurement. Full size: 1,600 fires a worker,
    # about a second alone; at 480 a worker (a third of a second) one run of one worker ranged
    # from 960 to 1,590 fires/s on a shared machine, and the scaling ratio with it.
    worker_cases: int
    memory_cases: int  # cases per repetition in the in-memory families (8 steps each)
    per_fire_cases: int  # fewer for the Machine-per-fire family: it is slow by design
    history_cases: int  # cases of 50 events in the history database
    history_samples: int  # histories read, at random
    timers_pending: int
    timers_acted: int  # how many of the pending timers are claimed and acted on while timed
    rss_small: int  # cases fired in the smaller RSS subprocess
    rss_large: int
    spin_rounds: int  # loop rounds of each process in the machine's CPU-scaling measurement
    # Cases of each age per repetition in the growth family (8 fires each): as many as the durable families
    # at full size, so a year-old case is measured with as many others in flight.
    growth_cases: int = 25
    growth_repetitions: int = 3
    # Of the PostgreSQL worker-scaling measurement: each spawns five worker processes, the slowest family.
    scaling_repetitions: int = 3
    scale_cases: int = 10_000  # cases of about 20 events in the PostgreSQL scale database


FULL = Sizes("full", 5, 100, 200, 1500, 150, 20_000, 400, 100_000, 2_000, 1_000, 100_000, 3_000_000, 100, 5, 5,
             1_000_000)
QUICK = Sizes("quick", 3, 15, 12, 100, 20, 500, 100, 30_000, 300, 1_000, 3_000, 1_000_000, 25, 1, 1, 2_000)
TINY = Sizes("tiny", 2, 3, 3, 10, 3, 40, 10, 300, 20, 20, 80, 10_000, 3, 2, 1, 200)
PROFILES = {s.name: s for s in (FULL, QUICK, TINY)}
EVENTS_PER_HISTORY = 50


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def rotate(items: list[T], by: int) -> list[T]:
    """``items`` starting at ``by``: each repetition runs the families in a different order."""
    k = by % len(items) if items else 0
    return items[k:] + items[:k]


def kapflow_sqlite(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with kapflow's own settings: WAL, synchronous=FULL, explicit BEGIN."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def filesystem_of(path: Path) -> str:
    """The file system a directory is on (durability numbers mean little on tmpfs)."""
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.splitlines()[-1].split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


Op = Callable[[int, int], None]
"""One step of one case: ``op(step_index, case_index)``."""


@dataclass(frozen=True)
class Rate:
    per_s: float  # steps per second of wall-clock time
    cpu_ms: float  # this process's CPU time per step, in milliseconds


def interleaved(ops: dict[str, Op], steps: int, cases: int, before_step: Callable[[int], None]) -> dict[str, Rate]:
    """Steps per second of each contender, measured side by side.

    For every (step, case) slot each contender takes its turn, and only its own calls are timed:
    contenders see the same disk, the same load and the same neighbours, to the millisecond.
    ``before_step`` runs (untimed) before each step.

    The order is shuffled for every slot (seeded: the same in every run). Rotating it kept each
    contender's predecessor fixed, and a contender always running right after one that fills the
    processor's caches with its own objects (SpiffWorkflow deserializing its workflow) paid for it:
    kapflow with its parsed-projection cache measured 8% slower than without it in every repetition
    of a rotated run, and 2% to 10% faster, with 5% less CPU per fire, in shuffled runs.
    """
    spent = dict.fromkeys(ops, 0.0)
    cpu = dict.fromkeys(ops, 0.0)
    names = list(ops)
    order = random.Random(0)
    wall, proc = time.perf_counter, time.process_time
    for s in range(steps):
        before_step(s)
        for c in range(cases):
            order.shuffle(names)
            for name in names:
                op = ops[name]
                start, start_cpu = wall(), proc()
                op(s, c)
                spent[name] += wall() - start
                cpu[name] += proc() - start_cpu
    n = steps * cases
    return {name: Rate(rate(n, spent[name]), cpu[name] * 1000 / n) for name in names}
