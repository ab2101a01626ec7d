"""One practice group after ten years, on PostgreSQL: 1M cases and 20M audit events (full mode).

kapflow's engine writes four template cases, each stopped at another point of the path (13 to 24 events
each, about 20 on average). Every row of every table that names a template (its case row, audit events,
timers, outbox rows, name words, ledger summary, holds) is then copied server-side, in chunks, with
``INSERT ... SELECT`` over ``generate_series``: the engine's own tables and columns, the template's id
replaced in every text column, so the copies' rows are the engine's rows under other ids (their hash
chains are not recomputed: the copies do not verify, and nothing timed here verifies them). The
statistics are then gathered (``ANALYZE``, as autovacuum would) and, through a fresh engine:

- ``history_ms_p50``: ``engine.history`` of a copy picked at random;
- ``case_list_ms_p50``: ``engine.case_page`` of one state's cases, 50 a page, page after page;
- ``verify_case_ms_p50``: ``engine.verify_audit`` of one engine-written case (the templates and cases
  opened after the copies, whose chains are whole);
- ``db_bytes_per_case``: every table and index of the schema, over the number of cases.

The checkpoint of 100k new events is measured by the audit section (on top of a 1M-row log): here the
sequencer would first place the copies' 20M rows. Quick and tiny modes copy fewer cases and say so.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from measure import Sizes
from paths import DISCHARGE, OBSERVATION, PATH, new_clock, prepare_case
from pg import bench_schema
from sqlalchemy import Integer, String, Text, text
from sqlmodel import SQLModel

from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.store.tables import CaseRow
from kapflow.workflows.kap import KAP_PATHWAY

TEMPLATE_STEPS = (0, 3, 6, 8)  # fires of the path each template has made
CHUNK = 50_000  # cases copied per statement and table
SAMPLES = 200


def _templates(engine: Engine) -> list[str]:
    clock = engine.app.clock
    made = []
    for steps in TEMPLATE_STEPS:
        case_id = prepare_case(engine, clock)  # type: ignore[arg-type]
        for index, step in enumerate(PATH[:steps]):
            if index == DISCHARGE:
                clock.advance(OBSERVATION)  # type: ignore[attr-defined]
            engine.fire(case_id, step.trigger, actor=step.actor, data=step.data)
        made.append(case_id)
    return made


def _is_text(column: Any) -> bool:
    kind = column.type
    kind = getattr(kind, "impl", kind)  # SQLModel's AutoString decorates String
    return isinstance(kind, String | Text)


def _copy_statement(table: Any, column: Any) -> str:
    """INSERT ... SELECT of ``table``'s rows of :template once per n in [:first, :last], ids made from n."""
    assigned = {c.name for c in table.primary_key.columns if isinstance(c.type, Integer) and c.autoincrement}
    names = [c.name for c in table.columns if c.name not in assigned]
    values = [
        f'replace("{c}", :template, :prefix || g)' if _is_text(table.c[c]) else f'"{c}"' for c in names
    ]
    quoted = ", ".join(f'"{c}"' for c in names)
    series = "generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g"
    return (
        f'INSERT INTO "{table.name}" ({quoted}) SELECT {", ".join(values)} FROM "{table.name}", {series} '
        f'WHERE "{column.name}" = :template'
    )


def copy_cases(store: SqlStore, template: str, prefix: str, count: int) -> None:
    """``count`` copies of ``template`` under ids ``prefix1`` .. ``prefix<count>``, server-side, in chunks."""
    statements = []
    for table in SQLModel.metadata.sorted_tables:
        column = table.c.id if table is CaseRow.__table__ else table.c.get("case_id")  # type: ignore[attr-defined]
        if column is not None:
            statements.append(text(_copy_statement(table, column)))
    for first in range(1, count + 1, CHUNK):
        last = min(count, first + CHUNK - 1)
        with store.engine.begin() as conn:
            for statement in statements:
                conn.execute(statement, {"template": template, "prefix": prefix, "first": first, "last": last})


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(sizes: Sizes, base_url: str) -> dict[str, Any]:
    """The ``scale`` section of results.json."""
    started = time.perf_counter()
    with bench_schema(base_url) as schema:
        clock = new_clock()
        store = SqlStore(schema.url)
        try:
            engine = Engine(store, KAP_PATHWAY, clock=clock)
            templates = _templates(engine)
            per_template = max(1, (sizes.scale_cases - len(templates)) // len(templates))
            for n, template in enumerate(templates):
                copy_cases(store, template, f"scale-{n}-", per_template)
            whole = [prepare_case(engine, clock) for _ in range(10)]  # opened after the copies: whole chains
            with store.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
                cases = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
                events = conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
                size = conn.execute(text(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'"), {"s": schema.name},
                ).scalar_one()
            states = {t: engine.case(t).state for t in templates}
        finally:
            store.close()
        build_s = time.perf_counter() - started
        reader = SqlStore(schema.url, create=False)
        try:
            fresh = Engine(reader, KAP_PATHWAY, clock=clock)
            pick = random.Random(7)
            history = []
            for _ in range(SAMPLES):
                case_id = f"scale-{pick.randrange(len(templates))}-{pick.randint(1, per_template)}"
                start = time.perf_counter()
                found = fresh.history(case_id)
                history.append(time.perf_counter() - start)
                if not found:
                    raise RuntimeError(f"{case_id} has no history: the copies are missing")
            pages, cursor = [], None
            state = states[templates[1]]
            for _ in range(SAMPLES // 4):
                start = time.perf_counter()
                page = fresh.case_page(state=state, cursor=cursor, limit=50)
                pages.append(time.perf_counter() - start)
                cursor = page.next_cursor
                if cursor is None:
                    break
            verify = []
            for _ in range(SAMPLES // 4):
                case_id = pick.choice([*templates, *whole])
                start = time.perf_counter()
                report = fresh.verify_audit(case_id)
                verify.append(time.perf_counter() - start)
                if not report.ok:
                    raise RuntimeError(f"{case_id}, written by the engine, did not verify")
        finally:
            reader.close()
    full = sizes.scale_cases >= 1_000_000
    return {
        "history_ms_p50": _p50_ms(history),
        "case_list_ms_p50": _p50_ms(pages),
        "verify_case_ms_p50": _p50_ms(verify),
        "db_bytes_per_case": float(size) / cases,
        "cases": cases,
        "audit_events": events,
        "build_s": round(build_s, 1),
        "measures": "PostgreSQL, engine-written template cases copied server-side with the engine's tables and "
        "columns; history of a random copy, a state's case list page after page (50 a page), audit verification of "
        "an engine-written case, every table and index's size per case"
        + ("" if full else f"; {cases:,} cases, not 1M ({sizes.name} mode)"),
    }
