"""Durable fires on PostgreSQL: kapflow's ``engine.fire`` against plain psycopg, and worker processes.

Both sides run in a schema of their own (``pg.bench_schema``, dropped afterwards) with the server's
``synchronous_commit`` (on, recorded), interleaved operation by operation as on SQLite. The raw
side writes, through one psycopg connection, the same case row (UPDATE, compare-and-swap on the
event count), audit row and projection entry (INSERTs) that kapflow wrote for a template case, one commit each.

``workers_scaling``: fires per second with 4 worker processes (spawned, each with its own engine and
its own cases, all firing the path at once after a barrier) divided by the same with 1 process.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from durable import KapflowSide, insert_cases, raw_operations
from measure import Op, Sizes, interleaved, median
from paths import PATH, fire_path, new_clock, prepare_case
from pg import Schema, bench_schema

from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.workflows.kap import KAP_PATHWAY

_WORKER_TIMEOUT = 600.0


class PostgresFamily(KapflowSide):
    """kapflow through its engine; raw through one plain psycopg connection; both in the bench schema."""

    def __init__(self, schema: Schema) -> None:
        super().__init__(schema.url)
        self.conn = psycopg.connect(schema.dsn, options=schema.options, autocommit=False)
        self.synchronous_commit = str(self.conn.execute("SHOW synchronous_commit").fetchone()[0])  # type: ignore[index]
        self.conn.commit()
        self._batch = 0

    def close(self) -> None:
        self.conn.close()
        self.store.close()

    def raw(self, k: int) -> Op:
        self._batch += 1
        ids = [f"bench-raw-{self._batch}-{i}" for i in range(k)]
        conn = self.conn
        with conn.cursor() as cur:
            insert_cases(cur, self.captured.case_row, ids, "%s")
        conn.commit()
        ops = raw_operations(self.captured, ids, "%s")
        cur = conn.cursor()

        def op(s: int, c: int) -> None:
            up_sql, up, inserts = ops[s * k + c]
            cur.execute(up_sql, up)
            if cur.rowcount != 1:
                raise RuntimeError("the raw compare-and-swap missed its row")
            for ins_sql, ins in inserts:
                cur.execute(ins_sql, ins)
            conn.commit()

        return op


def cpu_ticks() -> tuple[int, int]:
    """The whole machine's (busy, total) CPU ticks from /proc/stat, or (0, 0) where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


Report = tuple[str, Any, float, float, tuple[int, int], tuple[int, int]]


def _worker(url: str, cases: int, barrier: Any, results: Any) -> None:
    """One worker process: its own engine and cases, prepared before the barrier, then the path.

    It waits at the barrier again before it closes its store and exits: a worker done early would
    otherwise tear down (its interpreter, its connections, their server processes) on the cores the
    others are still timed on, and charge the harness's exit to their rate.
    """
    try:
        clock = new_clock()
        store = SqlStore(url, create=False)
        engine = Engine(store, KAP_PATHWAY, clock=clock)
        ids = [prepare_case(engine, clock) for _ in range(cases)]
        barrier.wait(timeout=_WORKER_TIMEOUT)
        start, ticks = time.monotonic(), cpu_ticks()  # CLOCK_MONOTONIC: comparable across processes
        fires = fire_path(engine, clock, ids)
        results.put(("ok", fires, start, time.monotonic(), ticks, cpu_ticks()))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}", 0.0, 0.0, (0, 0), (0, 0)))
        barrier.abort()  # the others stop waiting for this one
        return
    try:
        barrier.wait(timeout=_WORKER_TIMEOUT)
    except threading.BrokenBarrierError:
        pass  # another worker failed: its error is the report
    finally:
        store.close()


def _spin(index: int, rounds: int, barrier: Any, results: Any) -> None:
    """Pure-Python work with no I/O (dicts, strings, arithmetic): alone (process 0), then with the other."""
    for together in (False, True):
        barrier.wait(timeout=_WORKER_TIMEOUT)
        if together or index == 0:
            start = time.monotonic()
            acc: dict[int, str] = {}
            for i in range(rounds):
                acc[i % 512] = f"{i:08d}"
            results.put((together, start, time.monotonic()))


def cpu_scaling(rounds: int) -> float:
    """What this machine gives two CPU-bound processes against one, measured now: work per second of 2 / of 1.

    The ceiling of ``workers_scaling`` where a fire keeps a core busy end to end (one worker and its
    server process take turns on the cores, so one worker already keeps one core busy). The same two
    processes serve both measurements: one spins alone while the other waits, then both spin.
    """
    # Forked where the system can (the children only count, so a copy of this process is safe, and a
    # spawned child would first import everything the benchmark imports); spawned elsewhere.
    forks = "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork") if forks else multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_spin, args=(i, rounds, barrier, results), daemon=True) for i in range(2)]
    for p in procs:
        p.start()
    spans: list[tuple[bool, float, float]] = [results.get(timeout=_WORKER_TIMEOUT) for _ in range(3)]
    for p in procs:
        p.join(timeout=30)
    ((_, alone_start, alone_end),) = [s for s in spans if not s[0]]
    both = [s for s in spans if s[0]]
    both_s = max(e for _, _, e in both) - min(b for _, b, _ in both)
    return (2 * rounds / both_s) / (rounds / (alone_end - alone_start))


def workers_rate(url: str, processes: int, cases: int) -> tuple[float, float]:
    """Fires per second of ``processes`` workers together: all fires / (last end - first start).

    Also how busy the machine's CPUs were meanwhile (0-1, every process on the machine counted).
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, cases, barrier, results), daemon=True) for _ in range(processes)]
    got: list[Report] = []
    deadline = time.monotonic() + _WORKER_TIMEOUT
    try:
        for p in procs:
            p.start()
        while len(got) < processes:
            try:
                got.append(results.get(timeout=1.0))
            except queue.Empty:
                # A worker that reported waits for the others (alive); one that failed reports, then
                # exits cleanly; a non-zero exit code is a worker that died without a word.
                if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a worker process died or did not report in time") from None
    finally:
        barrier.abort()  # every worker has reported (none is timed any more), or the run failed
        for p in procs:
            if p.pid is None:
                continue
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        results.close()
    errors = [str(g[1]) for g in got if g[0] != "ok"]
    if errors:  # the cause, rather than the others' broken barrier
        cause = next((e for e in errors if not e.startswith(threading.BrokenBarrierError.__name__)), errors[0])
        raise RuntimeError(f"worker failed: {cause}")
    fires = sum(int(g[1]) for g in got)
    first, last = min(got, key=lambda g: g[2]), max(got, key=lambda g: g[3])
    busy, total = last[5][0] - first[4][0], last[5][1] - first[4][1]
    return fires / (last[3] - first[2]), busy / total if total > 0 else 0.0


def run(sizes: Sizes, base_url: str) -> dict[str, Any]:
    """The ``postgres`` section of results.json."""
    with bench_schema(base_url) as schema:
        fam = PostgresFamily(schema)
        try:
            k = sizes.durable_cases
            makers: dict[str, Callable[[int], Op]] = {"kapflow": fam.kapflow, "raw": fam.raw}
            runs: dict[str, list[float]] = {name: [] for name in makers}
            cpu: dict[str, list[float]] = {name: [] for name in makers}
            for _rep in range(sizes.repetitions):
                ops = {name: make(k) for name, make in makers.items()}
                for name, got in interleaved(ops, len(PATH), k, fam.before_step).items():
                    runs[name].append(got.per_s)
                    cpu[name].append(got.cpu_ms)
            sync = fam.synchronous_commit
        finally:
            fam.close()
        one: list[float] = []
        four: list[float] = []
        busy: dict[str, list[float]] = {"1": [], "4": []}
        ceiling: list[float] = []
        for _rep in range(sizes.scaling_repetitions):  # the noisiest figure here, and the slowest to measure
            for n, runs_n in ((1, one), (4, four)):
                per_s, cpu_busy = workers_rate(schema.url, n, sizes.worker_cases)
                runs_n.append(per_s)
                busy[str(n)].append(cpu_busy)
            ceiling.append(cpu_scaling(sizes.spin_rounds))
    fire, raw = median(runs["kapflow"]), median(runs["raw"])
    return {
        "fire_per_s": fire,
        "raw_per_s": raw,
        "ratio": fire / raw,
        "workers_scaling": median(four) / median(one),
        "workers_1_per_s": median(one),
        "workers_4_per_s": median(four),
        "machine_cpu_busy_workers_1": median(busy["1"]),
        "machine_cpu_busy_workers_4": median(busy["4"]),
        # What workers_scaling would be if a fire cost with 4 workers what it cost with one: the cores 4 kept busy
        # over those one kept busy (one worker overlapping its server's work with its own keeps more than one).
        "workers_scaling_bound": median(busy["4"]) / median(busy["1"]) if median(busy["1"]) > 0 else 0.0,
        "cpu_scaling_2_processes": median(ceiling),
        "measures": "durable fires/s (engine.fire on PostgreSQL through SQLAlchemy's pool and psycopg) vs plain "
        "psycopg writing the same case row (UPDATE), audit row and entry (INSERTs), one commit each, interleaved; "
        "workers_scaling = fires/s of 4 spawned worker processes (own engine, own cases) / of 1; "
        "cpu_scaling_2_processes = pure-Python work/s of 2 processes / of 1, measured after each workers pair",
        "synchronous_commit": sync,
        "client_cpu_ms_per_fire": median(cpu["kapflow"]),
        "client_cpu_ms_per_raw_commit": median(cpu["raw"]),
        "fires_per_repetition": k * len(PATH),
        "repetitions": sizes.repetitions,
        "scaling_repetitions": sizes.scaling_repetitions,
        "per_repetition": {
            "fire": runs["kapflow"], "raw": runs["raw"], "workers_1": one, "workers_4": four,
            "cpu_scaling_2_processes": ceiling,
        },
        "fires_per_worker": sizes.worker_cases * len(PATH),
    }


def growth(sizes: Sizes, base_url: str) -> dict[str, Any]:
    """``fire_growth_400`` on PostgreSQL (``bench/growth.py``), in a schema of its own."""
    import growth as aged  # the module's name is taken here by this function

    with bench_schema(base_url) as schema:
        return aged.run(sizes, schema.url)
