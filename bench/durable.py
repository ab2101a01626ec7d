"""Durable steps on SQLite: kapflow's ``engine.fire``, plain sqlite3 doing the same row writes, SpiffWorkflow.

Each contender writes to a SQLite file of its own in one directory, all with kapflow's settings
(WAL, ``synchronous=FULL``), one commit per step. They take turns operation by operation
(``measure.interleaved``), so they see the same disk and the same load; medians of the
repetitions are compared. Separate files keep one contender's WAL checkpoints off another's bill.

- kapflow: ``engine.fire`` on cases whose facts were recorded beforehand (not timed): load the case
  row, evaluate the KAP guards, compare-and-swap the case row, insert the hashed audit row, apply
  timer effects, commit. The store finds each case's projection among those it committed last
  (``kapflow.store.recent``), as for a case whose last command ran on the same server.
- kapflow_cold: the same with ``recent_cases=0``, so every fire parses its case's projection from the
  row, as for a case another server changed last.
- raw: for each step, the case row, the audit row and the projection's entry that kapflow wrote for a
  template case (read back from its tables: same bytes, other case ids), written through plain sqlite3:
  ``BEGIN IMMEDIATE``, UPDATE of the case row where its event count is the previous one (checked:
  one row), INSERT of the audit row and of the entry (two of each when the step posts a charge), ``COMMIT``.
- replay: kapflow's own statements of each step, as its store ran them on the template case with the values it
  bound (the raw side's rows, and the timers a move plans and cancels, and the ledger summary), run through plain
  sqlite3 on copies of the template's rows, one commit each: the fire's writes with none of kapflow's Python.
  ``ratio_ceiling`` = replay / raw is the most ``ratio`` could be.
- spiff: a SpiffWorkflow instance per case completes the step's user task, is serialized to JSON and
  written to its row (``BEGIN IMMEDIATE``, UPDATE, ``COMMIT``); the instance stays in memory. The
  ``reload`` variant also reads and deserializes it in each step's transaction, as a request would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spiff_kap8
from growth import TableRows, case_rows, insert_copies
from measure import Op, Sizes, filesystem_of, interleaved, kapflow_sqlite, median
from paths import DISCHARGE, OBSERVATION, PATH, TRIGGERS, fire_step_op, new_clock, prepare_case
from sqlalchemy import create_engine, event, text

from kapflow.app.engine import Engine
from kapflow.store.prepared import Prepared
from kapflow.store.recent import DEFAULT_CASES
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


@dataclass(frozen=True)
class CapturedPath:
    """What kapflow wrote for each step of the path on one template case, read back from the tables."""

    template_id: str
    case_row: dict[str, Any]  # the template's case row before the path
    # Per step: (case row after, audit rows added, projection entries added): the move's, then any fact the engine
    # posted after it in the same command (a completed visit's charge), which the raw baseline inserts too.
    steps: tuple[tuple[dict[str, Any], tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]], ...]
    statements_per_fire: float | None  # SQL statements kapflow ran per fire, BEGIN and COMMIT excluded (SQLite)
    rows_before: TableRows  # every row naming the template before the path (the replay's copies start there)
    statements: tuple[tuple[Statement, ...], ...]  # per step, what the store ran through its prepared statements


Values = Sequence[Any] | Mapping[str, Any]
Statement = tuple[str, tuple[Values, ...], bool]
"""SQL, the values bound to it, and whether the store ran it once per values (``executemany``)."""


@contextmanager
def statements_recorded(into: list[Statement]) -> Iterator[None]:
    """Every statement kapflow's store runs through its prepared statements (``Prepared``), with its values."""
    run, run_many = Prepared.run, Prepared.run_many

    def recording_run(self: Prepared, cursor: Any, values: Mapping[str, Any]) -> Any:
        into.append((self.sql, (self.bind(values),), False))
        return run(self, cursor, values)

    def recording_run_many(self: Prepared, cursor: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        into.append((self.sql, tuple(self.bind(r) for r in rows), True))
        run_many(self, cursor, rows)

    Prepared.run, Prepared.run_many = recording_run, recording_run_many  # type: ignore[method-assign]
    try:
        yield
    finally:
        Prepared.run, Prepared.run_many = run, run_many  # type: ignore[method-assign]


def _row(conn: Any, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return dict(conn.execute(text(sql), params).mappings().one())


def capture_path(store: SqlStore, engine: Engine, clock: FakeClock) -> CapturedPath:
    """Prepare a template case, fire the path on it, and read back each step's case row and audit row.

    On SQLite, sqlite3's trace callback also counts the statements each fire ran.
    """
    template = prepare_case(engine, clock)
    traced: list[str] = []

    def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.set_trace_callback(traced.append)

    def on_checkin(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.set_trace_callback(None)

    with store.engine.connect() as conn:
        before = _row(conn, "SELECT * FROM cases WHERE id = :id", {"id": template})
        rows_before = case_rows(conn, template)
    steps: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]] = []
    recorded: list[tuple[Statement, ...]] = []
    statements = 0
    entries_before = _entries(store, template)
    # The store keeps a connection or two checked out between commands: hand them back, so the
    # path's first fire checks one out (and gets traced) and the last hands it back (untraced).
    store.release_connections()
    event.listen(store.engine, "checkout", on_checkout)
    event.listen(store.engine, "checkin", on_checkin)
    try:
        for index, step in enumerate(PATH):
            if index == DISCHARGE:
                clock.advance(OBSERVATION)
            traced.clear()
            ran: list[Statement] = []
            with statements_recorded(ran):
                engine.fire(template, step.trigger, actor=step.actor, data=step.data)
            run = sum(1 for s in traced if s.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"))
            if store.dialect == "sqlite" and run != sum(len(values) for _sql, values, _many in ran):
                raise RuntimeError(f"{step.trigger} ran a statement the replay would miss (not a prepared one)")
            statements += run
            recorded.append(tuple(ran))
            with store.engine.connect() as conn:
                seen = (steps[-1][0] if steps else before)["event_count"]
                case = _row(conn, "SELECT * FROM cases WHERE id = :id", {"id": template})
                added = tuple(dict(r) for r in conn.execute(text(
                    "SELECT * FROM audit_events WHERE case_id = :id AND case_seq > :n ORDER BY case_seq"),
                    {"id": template, "n": seen}).mappings())
            if not added or added[0]["kind"] != "transition" or added[0]["trigger"] != step.trigger:
                raise RuntimeError(f"{step.trigger} was not recorded as a transition")
            entries = _entries(store, template)
            steps.append((case, added, tuple(e for key, e in entries.items() if key not in entries_before)))
            entries_before = entries
    finally:
        store.release_connections()
        event.remove(store.engine, "checkout", on_checkout)
        event.remove(store.engine, "checkin", on_checkin)
    per_fire = statements / len(PATH) if store.dialect == "sqlite" else None
    return CapturedPath(template, before, tuple(steps), per_fire, rows_before, tuple(recorded))


def raw_statements(path: CapturedPath) -> float:
    """Statements the raw baseline runs per commit (BEGIN and COMMIT excluded): the UPDATE and its INSERTs."""
    return sum(1 + len(added) + len(entries) for _case, added, entries in path.steps) / len(path.steps)


def _entries(store: SqlStore, case_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM case_entries WHERE case_id = :id ORDER BY section, n"), {"id": case_id})
        return {(r["section"], r["n"]): dict(r) for r in rows.mappings()}


def insert_cases(conn: Any, row: dict[str, Any], ids: Sequence[str], placeholder: str) -> None:
    """Copies of the template case row under ``ids`` (the raw baseline's rows to update), not timed."""
    cols = list(row)
    sql = f"INSERT INTO cases ({', '.join(map(_q, cols))}) VALUES ({', '.join([placeholder] * len(cols))})"
    for case_id in ids:
        conn.execute(sql, tuple(case_id if c == "id" else row[c] for c in cols))


def _q(column: str) -> str:
    return f'"{column}"'


Operation = tuple[str, tuple[Any, ...], tuple[tuple[str, tuple[Any, ...]], ...]]


def raw_operations(path: CapturedPath, ids: Sequence[str], placeholder: str) -> list[Operation]:
    """Every (UPDATE, params, INSERTs with their params) of the path on ``ids``, step by step, built before timing.

    The UPDATE sets every column of the case row but its id to the values kapflow wrote, where the
    row's event count is the one it had before (kapflow's compare-and-swap); the INSERTs add the audit
    rows kapflow added (the move, and a charge it posted), with every column but the database-assigned
    ``seq``, and the entries of the case's projection it added (the move, the charge).
    """
    ops: list[Operation] = []
    previous = path.case_row
    for case, added, entries in path.steps:
        set_cols = [c for c in case if c != "id"]
        audit = added[0]
        update = (
            f"UPDATE cases SET {', '.join(f'{_q(c)} = {placeholder}' for c in set_cols)} "
            f"WHERE id = {placeholder} AND event_count = {placeholder}"
        )
        ins_cols = [c for c in audit if c != "seq"]
        insert = (
            f"INSERT INTO audit_events ({', '.join(map(_q, ins_cols))}) "
            f"VALUES ({', '.join([placeholder] * len(ins_cols))})"
        )
        entry_cols = ("case_id", "section", "n", "entry")
        add_entry = f"INSERT INTO case_entries ({', '.join(entry_cols)}) VALUES ({', '.join([placeholder] * 4)})"
        for cid in ids:
            up = (*(case[c] for c in set_cols), cid, previous["event_count"])
            ins = tuple((insert, tuple(cid if c == "case_id" else row[c] for c in ins_cols)) for row in added)
            ins += tuple((add_entry, (cid, e["section"], e["n"], e["entry"])) for e in entries)
            ops.append((update, up, ins))
        previous = case
    return ops


Replay = list[list[Statement]]


def replay_operations(path: CapturedPath, ids: Sequence[str]) -> Replay:
    """kapflow's statements of each step (``CapturedPath.statements``) for each of ``ids``, the template's id
    replaced in every text value, step by step: built before timing."""
    def value_for(case_id: str, value: Any) -> Any:
        return value.replace(path.template_id, case_id) if isinstance(value, str) else value

    def values_for(case_id: str, values: Values) -> Values:
        if isinstance(values, Mapping):
            return {k: value_for(case_id, v) for k, v in values.items()}
        return [value_for(case_id, v) for v in values]

    return [
        [(sql, tuple(values_for(cid, v) for v in values), many) for sql, values, many in step]
        for step in path.statements for cid in ids
    ]


class KapflowSide:
    """kapflow's side of a durable family: its engine on ``url``, the path it wrote, and its step."""

    def __init__(self, url: str, recent_cases: int = DEFAULT_CASES) -> None:
        self.clock = new_clock()
        self.store = SqlStore(url, recent_cases=recent_cases)
        self.engine = Engine(self.store, KAP_PATHWAY, clock=self.clock)
        self.captured = capture_path(self.store, self.engine, self.clock)

    def before_step(self, step: int) -> None:
        if step == DISCHARGE:
            self.clock.advance(OBSERVATION)

    def kapflow(self, k: int) -> Op:
        return fire_step_op(self.engine, self.clock, k)


class SqliteFamily(KapflowSide):
    """kapflow through its engine; raw and spiff through plain sqlite3; each on a file of its own, same settings."""

    def __init__(self, directory: Path) -> None:
        super().__init__(f"sqlite:///{directory / 'kapflow.db'}")
        self.cold = KapflowSide(f"sqlite:///{directory / 'kapflow_cold.db'}", recent_cases=0)
        SqlStore(f"sqlite:///{directory / 'raw.db'}").close()  # kapflow's schema, indexes included
        self.raw_conn = kapflow_sqlite(directory / "raw.db")
        SqlStore(f"sqlite:///{directory / 'replay.db'}").close()
        self.replay_copier = create_engine(f"sqlite:///{directory / 'replay.db'}")  # the cases' rows, not timed
        self.replay_conn = kapflow_sqlite(directory / "replay.db")
        self.spiff_conn = kapflow_sqlite(directory / "spiff.db")
        self.spiff_conn.execute("CREATE TABLE IF NOT EXISTS workflows (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        self._batch = 0
        self.spiff_bytes: list[int] = []

    def before_step(self, step: int) -> None:
        super().before_step(step)
        self.cold.before_step(step)

    def close(self) -> None:
        self.raw_conn.close()
        self.replay_conn.close()
        self.replay_copier.dispose()
        self.spiff_conn.close()
        self.store.close()
        self.cold.store.close()

    def _ids(self, family: str, k: int) -> list[str]:
        self._batch += 1
        return [f"bench-{family}-{self._batch}-{i}" for i in range(k)]

    def raw(self, k: int) -> Op:
        ids = self._ids("raw", k)
        conn = self.raw_conn
        conn.execute("BEGIN IMMEDIATE")
        insert_cases(conn, self.captured.case_row, ids, "?")
        conn.execute("COMMIT")
        ops = raw_operations(self.captured, ids, "?")

        def op(s: int, c: int) -> None:
            up_sql, up, inserts = ops[s * k + c]
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute(up_sql, up).rowcount != 1:
                raise RuntimeError("the raw compare-and-swap missed its row")
            for ins_sql, ins in inserts:
                conn.execute(ins_sql, ins)
            conn.execute("COMMIT")

        return op

    def replay(self, k: int) -> Op:
        """kapflow's own statements of each step (the case row's compare-and-swap, the audit row, the entries,
        the timers planned and cancelled, the ledger summary), run through plain sqlite3 with the values kapflow
        bound, one commit each: the fire's writes without any of kapflow's Python."""
        ids = self._ids("replay", k)
        captured = self.captured
        with self.replay_copier.begin() as copier:
            insert_copies(copier, captured.rows_before, captured.template_id, ids)
        ops = replay_operations(captured, ids)
        conn = self.replay_conn

        def op(s: int, c: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            for sql, values, many in ops[s * k + c]:
                if many:
                    conn.executemany(sql, values)
                elif conn.execute(sql, values[0]).rowcount != 1 and sql.startswith("UPDATE cases"):
                    raise RuntimeError("the replayed compare-and-swap missed its row")
            conn.execute("COMMIT")

        return op

    def spiff(self, k: int) -> Op:
        ids = self._ids("spiff", k)
        flows = [spiff_kap8.start() for _ in ids]
        self._store_flows(ids, flows)
        conn = self.spiff_conn

        def op(s: int, c: int) -> None:
            flow = flows[c]
            spiff_kap8.step(flow, TRIGGERS[s])
            data = spiff_kap8.dumps(flow)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE workflows SET data = ? WHERE id = ?", (data, ids[c]))
            conn.execute("COMMIT")
            if s == len(TRIGGERS) - 1:
                self.spiff_bytes.append(len(data))

        return op

    def spiff_reload(self, k: int) -> Op:
        ids = self._ids("spiffr", k)
        self._store_flows(ids, [spiff_kap8.start() for _ in ids])
        conn = self.spiff_conn

        def op(s: int, c: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            (data,) = conn.execute("SELECT data FROM workflows WHERE id = ?", (ids[c],)).fetchone()
            flow = spiff_kap8.loads(data)
            spiff_kap8.step(flow, TRIGGERS[s])
            conn.execute("UPDATE workflows SET data = ? WHERE id = ?", (spiff_kap8.dumps(flow), ids[c]))
            conn.execute("COMMIT")

        return op

    def _store_flows(self, ids: Sequence[str], flows: Sequence[Any]) -> None:
        self.spiff_conn.execute("BEGIN IMMEDIATE")
        rows = [(i, spiff_kap8.dumps(f)) for i, f in zip(ids, flows, strict=True)]
        self.spiff_conn.executemany("INSERT INTO workflows (id, data) VALUES (?, ?)", rows)
        self.spiff_conn.execute("COMMIT")


def run(sizes: Sizes, directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``sqlite`` and ``spiff`` sections of results.json."""
    fam = SqliteFamily(directory)
    try:
        k = sizes.durable_cases
        makers: dict[str, Callable[[int], Op]] = {
            "kapflow": fam.kapflow, "kapflow_cold": fam.cold.kapflow, "raw": fam.raw, "replay": fam.replay,
            "spiff": fam.spiff, "spiff_reload": fam.spiff_reload,
        }
        runs: dict[str, list[float]] = {name: [] for name in makers}
        cpu: dict[str, list[float]] = {name: [] for name in makers}
        for _rep in range(sizes.repetitions):
            ops = {name: make(k) for name, make in makers.items()}  # preparation, not timed
            for name, got in interleaved(ops, len(PATH), k, fam.before_step).items():
                runs[name].append(got.per_s)
                cpu[name].append(got.cpu_ms)
        fire, raw, spiff = median(runs["kapflow"]), median(runs["raw"]), median(runs["spiff"])
        replay, spiff_reload = median(runs["replay"]), median(runs["spiff_reload"])
        cold = median(runs["kapflow_cold"])
        recent = fam.store.recent
        sqlite = {
            "fire_per_s": fire,
            "raw_per_s": raw,
            "ratio": fire / raw,
            "measures": "durable fires/s (engine.fire on a SQLite file: KAP guards, compare-and-swap of the case "
            "row, hashed audit row, projection entry, timer effects, one commit each) vs plain sqlite3 writing the "
            "same case row (UPDATE), audit row and entry (INSERTs) kapflow wrote, one commit each; interleaved "
            "operation by operation",
            "durability": "WAL, synchronous=FULL (both)",
            "filesystem": filesystem_of(directory),
            "fires_per_repetition": k * len(PATH),
            "repetitions": sizes.repetitions,
            "per_repetition": {"fire": runs["kapflow"], "fire_cold": runs["kapflow_cold"], "raw": runs["raw"],
                               "replay": runs["replay"]},
            "replay_per_s": replay,
            "ratio_ceiling": replay / raw,
            "replay_measures": "kapflow's own statements of each fire (captured from its store with the values it "
            "bound: case row, audit row, entries, timers, ledger summary) run through plain sqlite3, one commit "
            "each: ratio_ceiling = replay / raw is the most sqlite.ratio could be if kapflow's Python cost nothing",
            "cpu_ms_per_replay_commit": median(cpu["replay"]),
            "fire_cold_per_s": cold,
            "ratio_cold": cold / raw,
            "cold_measures": "the same fires on a store keeping no projections (recent_cases=0): each parses its "
            "case's projection from the row, as for a case another process changed last",
            "recent_projection_hit_share": recent.hits / max(1, recent.hits + recent.misses),
            "kapflow_statements_per_fire": fam.captured.statements_per_fire,
            "raw_statements_per_commit": raw_statements(fam.captured),
            "cpu_ms_per_fire": median(cpu["kapflow"]),
            "cpu_ms_per_fire_cold": median(cpu["kapflow_cold"]),
            "cpu_ms_per_raw_commit": median(cpu["raw"]),
        }
        spiff_section = {
            "durable_per_s": spiff,
            "ratio": fire / spiff,
            "durable_reload_per_s": spiff_reload,
            # Like for like: kapflow's fire also reads its case from the database in each transaction.
            "ratio_reload": fire / spiff_reload,
            "ratio_reload_ceiling": replay / spiff_reload,  # kapflow's statements alone against Spiff's step
            "measures": "SpiffWorkflow steps/s on the same path (kap8.bpmn), the workflow serialized to JSON and "
            "written to a SQLite file with kapflow's settings after each step (one commit each), interleaved with "
            "kapflow's fires; ratio = kapflow durable fires/s / that. durable_reload_per_s also reads and "
            "deserializes the workflow in each step's transaction, as a stateless request handler would",
            "serialized_bytes_median": median([float(b) for b in fam.spiff_bytes]),
            "cpu_ms_per_step": median(cpu["spiff"]),
            "cpu_ms_per_step_reload": median(cpu["spiff_reload"]),
            "per_repetition": runs["spiff"],
        }
        return sqlite, spiff_section
    finally:
        fam.close()
