"""The service's figures: kapflow's HTTP API against the framework's floor and the engine, side by side.

SQLite (one server process, one keep-alive client): uvicorn serves ``create_app(engine,
RequestAuthenticator(engine))`` in a thread of this process, with ``kapflow serve``'s options (uvloop,
httptools, no uvicorn access log) and its logging (kapflow's line per request, at INFO, to a file). One
``httpx.Client`` keeps its connection open. Four contenders take turns operation by operation
(``measure.interleaved``), each on the path of ``bench/paths.py`` (facts recorded beforehand, not timed):

- ``fire``: ``POST /v1/cases/{id}/triggers/{trigger}`` with an API key of the step's role (and the
  step's data): identity, validation, ``engine.fire``, the outcome's shape, the request's log line.
- ``noop``: ``GET /v1/whoami``, an authenticated endpoint that reads nothing: the framework's floor.
- ``engine``: ``engine.fire`` of the same step in this process, on a SQLite file of its own, under the
  same logging (its ``transition`` line is the engine's, in both): the engine's own fires/s.
- ``read``: ``GET /v1/cases/{id}`` of a case of the fired ones (one access-log row: a commit), timed one
  by one for its latency.

``ratio`` = fire/s ÷ 1/(1/noop/s + 1/engine fires/s): a request that cost only the framework's floor and
the engine's fire would score 1; what is missing is kapflow's own API layer. The key is verified by an
HMAC and then from a short-lived cache (``kapflow.app.api_keys``): never a password hash per request.

PostgreSQL (``pg_workers_scaling``): ``kapflow serve --workers 1`` and ``--workers 2`` subprocesses on one
bench schema, loaded in turns, round by round, by the same client processes (each a keep-alive connection
of the standard library's ``http.client`` to each server, firing ``hold`` and ``resume`` on cases of its own);
fires/s with 2 workers ÷ with 1. Each round also reads the CPU the server's processes, PostgreSQL's and the
clients used (``proc_cpu``), and each pair of rounds is followed by what the machine gives two pure-Python
processes against one: the figure is read against both (``_cpu_figures``).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from measure import Op, Sizes, cores, interleaved, median
from paths import DISCHARGE, FRONT_DESK, INTAKE, OBSERVATION, PATH, new_clock, prepare_case
from proc_cpu import cpu_by_process, group_cpu_s, in_session, postgres_processes

from kapflow.app.engine import Engine
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.logging import logging_configured
from kapflow.store.sql import SqlStore
from kapflow.workflows.kap import KAP_PATHWAY


@dataclass(frozen=True)
class ApiSizes:
    repetitions: int
    cases: int  # cases per repetition on each side (8 fires each)
    warmup_cases: int
    pg_clients: int  # client processes loading the PostgreSQL servers
    pg_cases_per_client: int  # per server
    pg_requests: int  # per client and round
    pg_rounds: int  # each round loads the 1-worker server and the 2-worker server, in turn


API_SIZES = {
    "full": ApiSizes(5, 100, 5, 6, 20, 400, 5),
    "quick": ApiSizes(3, 10, 2, 3, 6, 50, 1),
    "tiny": ApiSizes(2, 3, 1, 2, 2, 6, 1),
}
ROLES = ("front_desk", "prescriber", "therapist")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread, with ``kapflow serve``'s options; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off",
                            access_log=False, server_header=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="bench-uvicorn")
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the benchmark's server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class SqliteApi:
    """The API's engine (served) and the engine alone, each on a SQLite file of its own, and a client."""

    def __init__(self, directory: Path, base_url: str | None = None) -> None:
        self.api_clock = new_clock()
        self.api_store = SqlStore(f"sqlite:///{directory / 'api.db'}")
        self.api_engine = Engine(self.api_store, KAP_PATHWAY, clock=self.api_clock)
        self.clock = new_clock()
        self.store = SqlStore(f"sqlite:///{directory / 'engine.db'}")
        self.engine = Engine(self.store, KAP_PATHWAY, clock=self.clock)
        self.headers = {}
        for role in ROLES:
            key, _ = self.api_engine.create_api_key(f"bench-{role}", role, (), created_by="bench")
            self.headers[role] = {"Authorization": f"Bearer {key}"}
        self.client: httpx.Client | None = None
        self.read_ms: list[float] = []

    def app(self) -> Any:
        return create_app(self.api_engine, RequestAuthenticator(self.api_engine))

    def before_step(self, step: int) -> None:
        if step == DISCHARGE:
            self.clock.advance(OBSERVATION)
            self.api_clock.advance(OBSERVATION)

    def close(self) -> None:
        self.api_store.close()
        self.store.close()

    def engine_fire(self, k: int) -> Op:
        engine, ids = self.engine, [prepare_case(self.engine, self.clock) for _ in range(k)]

        def op(s: int, c: int) -> None:
            step = PATH[s]
            engine.fire(ids[c], step.trigger, actor=step.actor, data=step.data)

        return op

    def api_ops(self, k: int) -> tuple[Op, Op, Op]:
        """(fire, noop, read) over HTTP, on ``k`` cases of the served engine prepared now."""
        client = self.client
        assert client is not None
        ids = [prepare_case(self.api_engine, self.api_clock) for _ in range(k)]
        bodies = [({"data": dict(step.data)} if step.data else None) for step in PATH]
        headers = [self.headers[step.actor.role] for step in PATH]
        read_headers = self.headers["prescriber"]
        read_ms = self.read_ms

        def fire(s: int, c: int) -> None:
            answer = client.post(f"/v1/cases/{ids[c]}/triggers/{PATH[s].trigger}", json=bodies[s], headers=headers[s])
            if answer.status_code != 200:
                raise RuntimeError(f"POST {PATH[s].trigger} answered {answer.status_code}: {answer.text[:300]}")

        def noop(_s: int, _c: int) -> None:
            answer = client.get("/v1/whoami", headers=read_headers)
            if answer.status_code != 200:
                raise RuntimeError(f"GET /v1/whoami answered {answer.status_code}: {answer.text[:300]}")

        def read(_s: int, c: int) -> None:
            start = time.perf_counter()
            answer = client.get(f"/v1/cases/{ids[c]}", headers=read_headers)
            read_ms.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 200:
                raise RuntimeError(f"GET /v1/cases/{{id}} answered {answer.status_code}: {answer.text[:300]}")

        return fire, noop, read


def composed(noop_per_s: float, fire_per_s: float) -> float:
    """The rate of a request costing the framework's floor plus the engine's fire, nothing more."""
    return 1 / (1 / noop_per_s + 1 / fire_per_s)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_sqlite(sizes: ApiSizes, directory: Path) -> dict[str, Any]:
    log_path = directory / "api-server.log"
    with log_path.open("w") as log, logging_configured(level=logging.INFO, stream=log):
        side = SqliteApi(directory)
        try:
            with serving(side.app()) as url, httpx.Client(base_url=url, timeout=30) as client:
                side.client = client
                runs: dict[str, list[float]] = {"fire": [], "noop": [], "engine": [], "read": []}
                cpu: dict[str, list[float]] = {name: [] for name in runs}
                for rep in range(-1, sizes.repetitions):  # repetition -1 warms up: not kept
                    k = sizes.warmup_cases if rep < 0 else sizes.cases
                    fire_op, noop_op, read_op = side.api_ops(k)
                    ops = {"fire": fire_op, "noop": noop_op, "engine": side.engine_fire(k), "read": read_op}
                    if rep < 0:
                        interleaved(ops, len(PATH), k, side.before_step)
                        side.read_ms.clear()
                        continue
                    for name, got in interleaved(ops, len(PATH), k, side.before_step).items():
                        runs[name].append(got.per_s)
                        cpu[name].append(got.cpu_ms)
        finally:
            side.close()
    fire, noop, engine = median(runs["fire"]), median(runs["noop"]), median(runs["engine"])
    per_rep = [f / composed(n, e) for f, n, e in zip(runs["fire"], runs["noop"], runs["engine"], strict=True)]
    return {
        "fire_per_s": fire,
        "noop_per_s": noop,
        "sqlite_fire_per_s": engine,
        "composed_limit_per_s": composed(noop, engine),
        "ratio": fire / composed(noop, engine),
        "read_case_ms_p50": statistics.median(side.read_ms),
        "read_case_ms_p95": percentile(side.read_ms, 0.95),
        "read_case_per_s": median(runs["read"]),
        "measures": "one uvicorn server (kapflow serve's options) in a thread of this process, one keep-alive "
        "httpx client, SQLite (WAL, synchronous=FULL): fire = authenticated POST /v1/cases/{id}/triggers/{t} on "
        "the 8-step path of bench/paths.py; noop = authenticated GET /v1/whoami; sqlite_fire = engine.fire of the "
        "same steps in this process on a file of its own; read = GET /v1/cases/{id} (one access-log row each); "
        "all interleaved operation by operation, kapflow logging at INFO to a file as kapflow serve does; "
        "ratio = fire_per_s / (1 / (1/noop_per_s + 1/sqlite_fire_per_s))",
        "client_in_process": True,
        "requests_per_repetition": sizes.cases * len(PATH),
        "repetitions": sizes.repetitions,
        "ratio_per_repetition": per_rep,
        "per_repetition": runs,
        "cpu_ms_per_request": {name: median(v) for name, v in cpu.items()},
        "log_bytes": log_path.stat().st_size,
    }


# ---------------------------------------------------------------- PostgreSQL: server workers


def _start_server(url: str, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "KAPFLOW_DB": url}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kapflow", "--db", url, "serve", "--port", str(port), "--workers", str(workers)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"kapflow serve --workers {workers} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, base


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # uvicorn's own shutdown: its workers too
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class _Connection:
    """One keep-alive HTTP/1.1 connection of the standard library's ``http.client``, posting JSON.

    The load of the scaling measurement shares the machine's cores with the servers it loads, so its own CPU per
    request is kept low: ``httpx`` took 0.62 ms of the clients' CPU per fire, this 0.21 ms (``pg_client_cpu_ms``;
    quick size, two runs each: scaling 1.33 and 1.39 with ``httpx``, 1.71 and 1.43 with this).
    """

    def __init__(self, base: str, key: str) -> None:
        parts = urlsplit(base)
        self._address = (parts.hostname or "127.0.0.1", parts.port)
        self._connection = http.client.HTTPConnection(*self._address, timeout=60)
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def reopen(self) -> None:
        """A new connection: the server closes one left idle (uvicorn after 5 s, as while the other server's
        round runs), and a fire is never sent twice, so each round starts on a connection of its own."""
        self._connection.close()
        self._connection = http.client.HTTPConnection(*self._address, timeout=60)

    def post(self, path: str, body: bytes) -> int:
        self._connection.request("POST", path, body=body, headers=self._headers)
        answer = self._connection.getresponse()
        answer.read()  # the whole answer, so the connection serves the next request
        return answer.status

    def close(self) -> None:
        self._connection.close()


_HOLD = json.dumps({"data": {"reason": "bench"}}).encode()
_RESUME = b"{}"


def _client(key: str, cases: dict[str, list[str]], commands: Any, reports: Any) -> None:
    """A client process: on each (base URL, n) command, n fires (hold or resume, as each case needs) on its cases
    of that server through one keep-alive connection; reports (start, end, refused, its CPU) on the shared clock."""
    held = {case_id: False for ids in cases.values() for case_id in ids}
    connections = {base: _Connection(base, key) for base in cases}
    turn = dict.fromkeys(cases, 0)
    reports.put(("ready", 0.0, 0.0, 0, 0.0))
    while True:
        command = commands.get()
        if command is None:
            break
        base, n = command
        connection, ids = connections[base], cases[base]
        connection.reopen()
        bad = 0
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            case_id = ids[turn[base] % len(ids)]
            turn[base] += 1
            if held[case_id]:
                status = connection.post(f"/v1/cases/{case_id}/triggers/resume", _RESUME)
            else:
                status = connection.post(f"/v1/cases/{case_id}/triggers/hold", _HOLD)
            if status == 200:
                held[case_id] = not held[case_id]
            else:
                bad += 1
        reports.put((base, start, time.perf_counter(), bad, time.process_time() - start_cpu))
    for c in connections.values():
        c.close()


def run_postgres(sizes: ApiSizes, base_url: str, directory: Path, spin_rounds: int) -> dict[str, Any]:
    from durable_pg import cpu_scaling  # psycopg only when a server is there
    from pg import bench_schema

    from kapflow.bootstrap import upgrade_schema

    with bench_schema(base_url) as schema:
        upgrade_schema(schema.url)
        store = SqlStore(schema.url)
        engine = Engine(store, KAP_PATHWAY)
        try:
            key, _ = engine.create_api_key("bench-workers", "front_desk", (), created_by="bench")
            servers = {}
            try:
                for workers in (1, 2):
                    servers[workers] = _start_server(schema.url, workers, directory / f"serve-{workers}.log")
                bases = {w: base for w, (_p, base) in servers.items()}
                ctx = multiprocessing.get_context("spawn")
                reports = ctx.Queue()
                clients = []
                for _i in range(sizes.pg_clients):
                    cases = {base: [engine.open_case(INTAKE, actor=FRONT_DESK).case_id
                                    for _ in range(sizes.pg_cases_per_client)] for base in bases.values()}
                    commands = ctx.Queue()
                    client = ctx.Process(target=_client, args=(key, cases, commands, reports), daemon=True)
                    client.start()
                    clients.append((client, commands))
                try:
                    for _ in clients:
                        reports.get(timeout=120)
                    for workers in (1, 2):  # warm-up: each worker's first requests, not kept
                        _round(clients, reports, bases[workers], max(2, sizes.pg_requests // 4))
                    rates: dict[int, list[float]] = {1: [], 2: []}
                    spent: dict[int, list[_RoundCpu]] = {1: [], 2: []}
                    refused, ceiling = 0, []
                    for r in range(sizes.pg_rounds):
                        for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
                            server_pid = servers[workers][0].pid
                            before = _Cpu.read(server_pid)
                            got, bad, cpu = _round(clients, reports, bases[workers], sizes.pg_requests)
                            rates[workers].append(got)
                            refused += bad
                            spent[workers].append(_RoundCpu.between(
                                before, _Cpu.read(server_pid), sizes.pg_requests * len(clients), cpu,
                                supervisor=server_pid if workers > 1 else None,
                            ))
                        ceiling.append(cpu_scaling(spin_rounds))  # what the machine gives two processes now
                finally:
                    for _client_proc, commands in clients:
                        commands.put(None)
                    for client_proc, _c in clients:
                        client_proc.join(timeout=30)
                        if client_proc.is_alive():
                            client_proc.terminate()
            finally:
                for server, _base in servers.values():
                    _stop(server)
        finally:
            store.close()
    one, two = median(rates[1]), median(rates[2])
    return {
        "pg_workers_1_per_s": one,
        "pg_workers_2_per_s": two,
        "pg_workers_scaling": two / one,
        **_cpu_figures(spent, one, two),
        "pg_cpu_scaling_2_processes": median(ceiling),
        "pg_cpu_scaling_per_round": [round(c, 3) for c in ceiling],
        "pg_measures": f"kapflow serve --workers 1 and --workers 2 subprocesses on one PostgreSQL schema, loaded in "
        f"turns by {sizes.pg_clients} client processes (one keep-alive http.client connection to each server, "
        "hold/resume fires on cases of "
        f"their own, {sizes.pg_requests} each per round); fires/s of a round = all its fires / from the first "
        "start to the last end; medians of the rounds",
        "pg_rounds": sizes.pg_rounds,
        "pg_per_round": {str(k): v for k, v in rates.items()},
        "pg_refused": refused,
        "pg_client_cpu_ms": median([c.clients_ms for rounds in spent.values() for c in rounds]),
    }


@dataclass(frozen=True)
class _Cpu:
    """CPU seconds so far of the server's processes (its session: uvicorn and its workers), by pid, and of
    PostgreSQL's; None where /proc could not be read."""

    server: dict[int, float] | None
    postgres: float | None

    @classmethod
    def read(cls, server: int) -> _Cpu:
        return cls(cpu_by_process(in_session(server)), group_cpu_s(postgres_processes))


@dataclass(frozen=True)
class _RoundCpu:
    """One round's CPU per fire in ms (NaN where unknown) and the share of the workers' CPU the busiest one used.

    A keep-alive connection stays with the worker that accepted it, and the clients open theirs together at
    the start of a round: how they fall between two workers decides how evenly the workers are loaded.
    """

    server_ms: float
    postgres_ms: float
    clients_ms: float
    busiest_worker_share: float

    @classmethod
    def between(cls, before: _Cpu, after: _Cpu, fires: int, clients_ms: float, supervisor: int | None) -> _RoundCpu:
        if before.server is None or after.server is None or before.postgres is None or after.postgres is None:
            return cls(math.nan, math.nan, clients_ms, math.nan)
        spent = {pid: cpu - before.server.get(pid, 0.0) for pid, cpu in after.server.items()}
        workers = [cpu for pid, cpu in spent.items() if pid != supervisor]  # uvicorn's supervisor serves nothing
        share = max(workers) / sum(workers) if workers and sum(workers) > 0 else math.nan
        return cls(sum(spent.values()) * 1000 / fires, (after.postgres - before.postgres) * 1000 / fires,
                   clients_ms, share)

    @property
    def total_ms(self) -> float:
        return self.server_ms + self.postgres_ms + self.clients_ms


def _cpu_figures(spent: dict[int, list[_RoundCpu]], one: float, two: float) -> dict[str, Any]:
    """What the rounds cost the cores, and the most two workers could fire on them.

    Medians by worker count of each round's CPU per fire of the server (its workers), PostgreSQL and the clients.
    With every core busy with these three, two workers would fire ``cores / CPU per fire`` a second, so
    ``pg_workers_scaling_bound`` is that over one worker's rate: the scaling this machine's cores allow at the
    measured costs. ``pg_server_busy_1_worker`` is how much of its core the single worker used (near 1: it
    was the bottleneck); ``pg_cores_busy_2_workers``, how much of the cores the three groups used with two;
    ``pg_busiest_worker_share``, the median share of the two workers' CPU the busier one used (0.5: even).
    """
    def med(workers: int, figure: str) -> float:
        return median([getattr(r, figure) for r in spent[workers]])

    if any(math.isnan(r.total_ms) for rounds in spent.values() for r in rounds):
        return {"pg_cpu_ms_per_fire": None, "pg_cpu_skipped": "no /proc here: CPU of other processes not read"}
    parts = ("server_ms", "postgres_ms", "clients_ms")
    return {
        "pg_cpu_ms_per_fire": {str(w): {p.removesuffix("_ms"): round(med(w, p), 3) for p in parts} for w in (1, 2)},
        "pg_server_busy_1_worker": one * med(1, "server_ms") / 1000,
        "pg_cores_busy_2_workers": two * med(2, "total_ms") / 1000 / cores(),
        "pg_workers_scaling_bound": cores() * 1000 / med(2, "total_ms") / one,
        "pg_busiest_worker_share": med(2, "busiest_worker_share"),
        "pg_busiest_worker_share_per_round": [round(r.busiest_worker_share, 3) for r in spent[2]],
    }


def _round(clients: list[tuple[Any, Any]], reports: Any, base: str, n: int) -> tuple[float, int, float]:
    """Fires/s of one round on ``base``, the fires refused, and the clients' CPU per fire in ms."""
    for _proc, commands in clients:
        commands.put((base, n))
    got = [reports.get(timeout=600) for _ in clients]
    start, end = min(g[1] for g in got), max(g[2] for g in got)
    fires = n * len(clients)
    return fires / (end - start), sum(g[3] for g in got), sum(g[4] for g in got) * 1000 / fires


def run(sizes: Sizes, directory: Path, postgres_url: str | None) -> dict[str, Any]:
    """The ``api`` section of results.json."""
    api_sizes = API_SIZES[sizes.name]
    section = {"mode": sizes.name, **run_sqlite(api_sizes, directory)}
    if postgres_url:
        section.update(run_postgres(api_sizes, postgres_url, directory, sizes.spin_rounds))
    else:
        section["pg_skipped"] = "no PostgreSQL URL: set KAPFLOW_BENCH_POSTGRES_URL (or KAPFLOW_TEST_POSTGRES_URL)"
    return section


def _main() -> None:
    """``python bench/api.py [--quick|--tiny] [--no-pg]``: this section alone, as JSON."""
    import tempfile

    from measure import PROFILES
    from pg import postgres_url

    name = "tiny" if "--tiny" in sys.argv else "quick" if "--quick" in sys.argv else "full"
    url = None if "--no-pg" in sys.argv else postgres_url()
    with tempfile.TemporaryDirectory(prefix="kapflow-bench-api-") as tmp:
        print(json.dumps(run(PROFILES[name], Path(tmp), url), indent=2))


if __name__ == "__main__":
    _main()
