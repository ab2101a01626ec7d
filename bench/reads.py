"""Reading one case's 50-event history (``engine.history``) from a SQLite database of many audit rows.

The template case goes through the engine: the path's facts, the 8 fires, then questionnaire facts
up to 50 events. ``clone.clone_case`` copies it until the database holds ``history_cases`` x 50
audit rows (1M in full mode), each case's rows spread over the table. Histories of cases picked at
random are then read one at a time through a fresh engine and timed; the same query through plain
sqlite3 is timed beside it for scale.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from clone import clone_case
from measure import EVENTS_PER_HISTORY, Sizes
from paths import THERAPIST, fire_path, new_clock, prepare_case

from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build(directory: Path, cases: int) -> tuple[Path, list[str]]:
    """A database of ``cases`` cases of 50 events each; returns its path and the case ids."""
    path = directory / "history.db"
    clock = new_clock()
    store = SqlStore(f"sqlite:///{path}")
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock)
        template = prepare_case(engine, clock)
        fire_path(engine, clock, [template])
        n = 0
        while engine.case(template).event_count < EVENTS_PER_HISTORY:
            instrument = ("PHQ-9", "GAD-7")[n % 2]
            engine.record(template, "questionnaire", answered(instrument, 5 + n % 7), actor=THERAPIST)
            n += 1
    finally:
        store.close()
    ids = [f"case-bench-{i:07d}" for i in range(cases - 1)]
    clone_case(path, template, ids)
    return path, [template, *ids]


def run(sizes: Sizes, directory: Path) -> dict[str, Any]:
    """``history_ms_p50`` and the ``history`` section of results.json."""
    started = time.perf_counter()
    path, ids = build(directory, sizes.history_cases)
    build_s = time.perf_counter() - started
    sample = random.Random(4).sample(ids, min(sizes.history_samples, len(ids)))
    store = SqlStore(f"sqlite:///{path}", create=False)
    engine = Engine(store, KAP_PATHWAY)
    raw = sqlite3.connect(path)
    try:
        for case_id in sample[:5]:  # warm up: the pool's connection, compiled statements
            engine.history(case_id)
        kapflow_ms: list[float] = []
        raw_ms: list[float] = []
        for case_id in sample:
            start = time.perf_counter()
            events = engine.history(case_id)
            kapflow_ms.append((time.perf_counter() - start) * 1000)
            if len(events) != EVENTS_PER_HISTORY:
                raise RuntimeError(f"{case_id} has {len(events)} events, not {EVENTS_PER_HISTORY}")
            start = time.perf_counter()
            raw.execute("SELECT * FROM audit_events WHERE case_id = ? ORDER BY case_seq", (case_id,)).fetchall()
            raw_ms.append((time.perf_counter() - start) * 1000)
        (rows,) = raw.execute("SELECT count(*) FROM audit_events").fetchone()
    finally:
        raw.close()
        store.close()
    return {
        "p50_ms": _percentile(kapflow_ms, 0.5),
        "p95_ms": _percentile(kapflow_ms, 0.95),
        "raw_sqlite3_p50_ms": _percentile(raw_ms, 0.5),
        "audit_rows": int(rows),
        "cases": len(ids),
        "events_per_case": EVENTS_PER_HISTORY,
        "samples": len(sample),
        "database_mb": path.stat().st_size / 2**20,
        "build_s": build_s,
        "measures": "engine.history(case_id) of a 50-event case picked at random, one call at a time, on SQLite; "
        "the database was just written (operating system's page cache warm); cases are copies of one case the "
        "engine wrote, their audit rows interleaved across the table"
        + ("" if rows >= 1_000_000 else f"; {rows:,} audit rows, not 1M ({sizes.name} mode)"),
    }
