"""The audit log on SQLite: sequencing and a checkpoint, verification, and one case's inclusion proofs.

The database is the history benchmark's (``reads.build``): ``history_cases`` copies of a 50-event
case the engine wrote (1M audit rows in full mode), their rows interleaved across the table, none
placed in the log yet. Timed on it:

- ``checkpoint_events_per_s``: ``engine.sequence_audit_log()`` then one signed checkpoint, over the
  whole backlog (every audit row and queued message: all wait for a position), per row placed.
- ``checkpoint_100k_s``: the same for new rows on top of that log (copies of the case added after
  the first checkpoint): the issue's target is 100k new events in at most 10 s. Fewer than 100k
  new rows (quick, tiny) are scaled to 100k, and the section says so.
- ``verify_s_per_million_events``: ``engine.verify_log`` against the checkpoint file, per million rows.
- ``proof_ms``: ``engine.export_case`` of one case (its 50 events, each with its inclusion proof
  against the newest checkpoint), the median over a few cases picked at random. ``proof_tree_ms``:
  the proofs alone, from the stored subtrees in one read (``merkle.inclusion_ranges``,
  ``ranges_nodes``, ``range_root``), as ``export_case`` builds them.

The copies' hash chains are not recomputed (``clone``): the log's leaves are computed from the
rows as they are, so the log verifies all the same.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from clone import clone_case
from measure import EVENTS_PER_HISTORY, Sizes
from reads import build

from kapflow.app.engine import Engine
from kapflow.audit.checkpoint_file import note_opener, publish, read_lines
from kapflow.audit.merkle import inclusion_ranges, range_root, ranges_nodes, verify_inclusion
from kapflow.audit.signing import Ed25519Signer, generate_key, load_verifiers
from kapflow.domain.audit_log import CheckpointRecord
from kapflow.store.sql import SqlStore
from kapflow.workflows.kap import KAP_PATHWAY

ORIGIN = "bench.example.org/kapflow"
HUNDRED_K = 100_000
PROOF_CASES = 5


def _unplaced(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return sum(int(conn.execute(f"SELECT count(*) FROM {t} WHERE log_position IS NULL").fetchone()[0])
                   for t in ("audit_events", "outbox", "delivery_attempts"))
    finally:
        conn.close()


def _add_cases(path: Path, template: str, ids: list[str]) -> None:
    """More copies of the template, waiting for a position (the template's own position is not copied)."""
    conn = sqlite3.connect(path)
    try:
        last = {t: int(conn.execute(f"SELECT coalesce(max({k}), 0) FROM {t}").fetchone()[0])
                for t, k in (("audit_events", "seq"), ("outbox", "id"))}
    finally:
        conn.close()
    clone_case(path, template, ids)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE audit_events SET log_position = NULL WHERE seq > ?", (last["audit_events"],))
        conn.execute("UPDATE outbox SET log_position = NULL WHERE id > ?", (last["outbox"],))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _checkpoint(engine: Engine, signer: Ed25519Signer, checkpoints: Path) -> tuple[float, int, CheckpointRecord]:
    """Sequence what waits and sign a checkpoint (published to the file); seconds, rows placed, checkpoint."""
    sign = engine.checkpointer(signer, origin=ORIGIN, publish=lambda records: publish(checkpoints, records))
    start = time.perf_counter()
    placed = engine.sequence_audit_log().placed
    record = sign()
    seconds = time.perf_counter() - start
    if record is None:
        raise RuntimeError("the checkpoint was not signed")
    return seconds, placed, record


def _proof_ms(engine: Engine, case_id: str, record: CheckpointRecord) -> tuple[float, int]:
    """Every inclusion proof of one case's events against ``record``: milliseconds, and how many."""
    log = engine.store.log()
    start = time.perf_counter()
    positions = sorted(log.case_positions(case_id).values())
    ranges = {p: inclusion_ranges(p, record.size) for p in positions}
    nodes = log.nodes(set().union(*(ranges_nodes(r) for r in ranges.values())) | {(0, p) for p in positions})
    proofs = {p: [range_root(a, b, nodes) for a, b in r] for p, r in ranges.items()}
    elapsed = (time.perf_counter() - start) * 1000
    for p, proof in proofs.items():  # untimed: the proofs are right
        if not verify_inclusion(nodes[(0, p)], p, record.size, proof, record.root):
            raise RuntimeError(f"the inclusion proof of position {p} does not verify")
    return elapsed, len(proofs)


def _export_ms(engine: Engine, case_id: str, record: CheckpointRecord) -> tuple[float, int]:
    """``engine.export_case``: milliseconds, and how many of its events carry a proof."""
    start = time.perf_counter()
    export = engine.export_case(case_id)
    elapsed = (time.perf_counter() - start) * 1000
    if export.checkpoint.size != record.size:
        raise RuntimeError(f"{case_id} was exported against a checkpoint of {export.checkpoint.size}")
    return elapsed, sum(1 for ev in export.events if ev.inclusion_proof is not None)


def run(sizes: Sizes, directory: Path) -> dict[str, Any]:
    """The ``audit`` section of results.json."""
    started = time.perf_counter()
    folder = directory / "audit"
    folder.mkdir()
    path, ids = build(folder, sizes.history_cases)
    # A quarter of the log again (100k rows in full mode): fewer would time the checkpoint's fixed cost more.
    new_cases = max(1, min(HUNDRED_K // EVENTS_PER_HISTORY, sizes.history_cases // 4))
    build_s = time.perf_counter() - started
    private, public = generate_key("bench-practice")
    signer = Ed25519Signer.from_text(private)
    checkpoints = folder / "checkpoints.jsonl"
    store = SqlStore(f"sqlite:///{path}", create=False)
    try:
        engine = Engine(store, KAP_PATHWAY)
        waiting = _unplaced(path)
        first_s, placed, _first = _checkpoint(engine, signer, checkpoints)
        if placed != waiting:
            raise RuntimeError(f"the sequencer placed {placed} rows of {waiting}")

        _add_cases(path, ids[0], [f"case-bench-new-{i:07d}" for i in range(new_cases)])
        waiting_new = _unplaced(path)
        new_s, placed_new, newest = _checkpoint(engine, signer, checkpoints)
        if placed_new != waiting_new:
            raise RuntimeError(f"the sequencer placed {placed_new} new rows of {waiting_new}")

        opener = note_opener(load_verifiers(public))
        start = time.perf_counter()
        report = engine.verify_log(read_lines(checkpoints), opener)
        verify_s = time.perf_counter() - start
        if report.status != "ok" or report.size != newest.size:
            raise RuntimeError(f"the log did not verify: {report.as_dict()}")

        sample = random.Random(5).sample(ids, min(PROOF_CASES, len(ids)))
        _proof_ms(engine, sample[0], newest)  # warm up: the pool's connection, compiled statements
        _export_ms(engine, sample[0], newest)
        exported = [_export_ms(engine, case_id, newest) for case_id in sample]
        timed = [_proof_ms(engine, case_id, newest) for case_id in sample]
    finally:
        store.close()
    size = newest.size
    proof_counts = {n for _ms, n in timed} | {n for _ms, n in exported}
    if proof_counts != {EVENTS_PER_HISTORY}:
        raise RuntimeError(f"a case's events carried {sorted(proof_counts)} proofs, not {EVENTS_PER_HISTORY}")
    return {
        "checkpoint_events_per_s": placed / first_s,
        "checkpoint_s": first_s,
        "checkpoint_100k_s": new_s * HUNDRED_K / placed_new,
        "checkpoint_new_rows": placed_new,
        "checkpoint_new_s": new_s,
        "verify_s_per_million_events": verify_s * 1_000_000 / size,
        "verify_s": verify_s,
        "proof_ms": statistics.median(ms for ms, _n in exported),
        "proof_tree_ms": statistics.median(ms for ms, _n in timed),
        "proofs_per_case": EVENTS_PER_HISTORY,
        "proof_cases": len(timed),
        "log_size": size,
                "build_s": build_s,
        "measures": "SQLite; engine.sequence_audit_log() and one signed checkpoint over a backlog of "
        f"{placed:,} rows (every audit event and queued message of {len(ids):,} cases of {EVENTS_PER_HISTORY} "
        f"events), then over {placed_new:,} new rows on top of it"
        + ("" if placed_new >= HUNDRED_K else " (checkpoint_100k_s scaled from them)")
        + f"; engine.verify_log over the {size:,} positions against the checkpoint file; proof_ms: "
        "engine.export_case of one case (each event with its inclusion proof against the newest checkpoint), "
        f"proof_tree_ms: the proofs alone from one read of stored subtrees; the median of {len(timed)} cases"
        + ("" if placed >= 1_000_000 else f"; {placed:,} rows, not 1M ({sizes.name} mode)"),
    }
