"""A fire on a year-old case against a fire on a fresh one: ``fire_growth_400``, on SQLite and PostgreSQL.

Two templates are written by kapflow's engine on one store:

- fresh: a case opened now with the facts the path's guards read (``paths.prepare_case``);
- aged: a case opened a year earlier that lived a year of weekly visits first (``AGED_EXTRA_FACTS``
  facts and more: each week an integration session booked, marked attended, which posts its charge,
  then paid, with vitals, fasting, an escort and the clinician present), then got the path's facts now.

Each is copied under new case ids (every row of every table that names the case, ``copy_case``), and
the two groups fire the path side by side, operation by operation (``measure.interleaved``), in one
engine and one database. ``fire_growth_400`` = fresh fires/s ÷ aged fires/s: 1 when a fire costs the
same whatever the case's age. The aged case row's length is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from measure import Op, Sizes, interleaved, median
from paths import (
    CLIENT,
    DISCHARGE,
    FRONT_DESK,
    INTAKE,
    OBSERVATION,
    PATH,
    START,
    THERAPIST,
    facts_for,
    new_clock,
    prepare_case,
)
from sqlalchemy import Connection, Integer, insert, select, text
from sqlalchemy import Engine as SqlEngine
from sqlmodel import SQLModel

from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.store.tables import CaseRow
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

AGED_EXTRA_FACTS = 400
"""Facts the aged case has beyond the fresh one's (a year of KAP is about 200)."""


def _week(engine: Engine, clock: FakeClock, case_id: str, n: int) -> int:
    """One week of the aged case's year: the facts it records (the charge the engine posts counted)."""
    visit = clock.now() + timedelta(days=1)
    engine.record(case_id, "appointment", {"kind": "integration_session", "starts_at": visit.isoformat(),
                                           "clinician": f"th-{case_id}"}, actor=FRONT_DESK)
    clock.set(visit + timedelta(hours=1, minutes=30))
    engine.record(case_id, "appointment_update", {"appointment": f"a{n}", "action": "attended"}, actor=THERAPIST)
    engine.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=FRONT_DESK)
    engine.record(case_id, "vitals", {"phase": "pre_dose", "systolic": 121, "diastolic": 79}, actor=THERAPIST)
    engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 117, "diastolic": 75}, actor=THERAPIST)
    engine.record(case_id, "fasting", {"attested": True, "hours": 6}, actor=CLIENT)
    engine.record(case_id, "escort", {"name": "Escort Bench", "phone": "+1 555 010 0199"}, actor=FRONT_DESK)
    engine.record(case_id, "clinician_present", {"clinician": "Th Bench, LCSW"}, actor=THERAPIST)
    return 9  # eight recorded, one charge posted


def prepare_aged_case(engine: Engine, clock: FakeClock) -> str:
    """A case that lived a year of weekly visits, then got the path's facts at ``START`` (clock left there)."""
    clock.set(START - timedelta(days=365))
    case_id = engine.open_case(INTAKE, actor=FRONT_DESK).case_id
    facts, n = 0, 0
    while facts < AGED_EXTRA_FACTS:
        n += 1
        facts += _week(engine, clock, case_id, n)
        clock.set(START - timedelta(days=365) + timedelta(days=7 * n))
    clock.set(START)
    # The path's evaluation is booked as appointment a<n+1>: facts_for books it, so the path's guards find it.
    for kind, data, actor in facts_for(clock.now(), clinician=f"np-{case_id}"):
        engine.record(case_id, kind, data, actor=actor)
    return case_id


TableRows = list[tuple[Any, list[dict[str, Any]]]]
"""Rows of a case, table by table (in the schema's order): what ``insert_copies`` copies."""


def case_rows(conn: Connection, template: str) -> TableRows:
    """Every row of every table that names ``template`` (its case row, ``case_id`` elsewhere), without the
    columns the database assigns (an integer primary key)."""
    found: TableRows = []
    for table in SQLModel.metadata.sorted_tables:
        column = table.c.id if table is CaseRow.__table__ else table.c.get("case_id")  # type: ignore[attr-defined]
        if column is None:
            continue
        assigned = {c.name for c in table.primary_key.columns
                    if isinstance(c.type, Integer) and c.autoincrement is not False}
        rows = [{k: v for k, v in r._mapping.items() if k not in assigned}
                for r in conn.execute(select(table).where(column == template))]
        if rows:
            found.append((table, rows))
    return found


def insert_copies(conn: Connection, rows: TableRows, template: str, ids: Sequence[str]) -> None:
    """``rows`` of ``template`` under each of ``ids``: the template's id replaced in every text column (timer
    keys and clinicians carry it). Hash chains are not recomputed: the copies do not verify, which no fire checks.
    """
    for table, table_rows in rows:
        copies = [{k: (v.replace(template, new) if isinstance(v, str) else v) for k, v in row.items()}
                  for new in ids for row in table_rows]
        conn.execute(insert(table), copies)


def copy_case(engine: SqlEngine, template: str, ids: Sequence[str]) -> None:
    """Every row of every table that names ``template``, under ``ids`` (``case_rows``, ``insert_copies``)."""
    with engine.begin() as conn:
        insert_copies(conn, case_rows(conn, template), template, ids)


def _fires(engine: Engine, ids: Sequence[str]) -> Op:
    def op(s: int, c: int) -> None:
        step = PATH[s]
        engine.fire(ids[c], step.trigger, actor=step.actor, data=step.data)

    return op


def run(sizes: Sizes, url: str) -> dict[str, Any]:
    """``fire_growth_400`` and what it compares, for the store at ``url`` (a fresh database or schema)."""
    clock = new_clock()
    store = SqlStore(url)
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock)
        aged = prepare_aged_case(engine, clock)
        fresh = prepare_case(engine, clock)
        with store.engine.connect() as conn:
            aged_row = conn.execute(text("SELECT * FROM cases WHERE id = :id"), {"id": aged}).mappings().one()
            aged_events = conn.execute(text("SELECT count(*) FROM audit_events WHERE case_id = :id"),
                                       {"id": aged}).scalar_one()
        row_chars = sum(len(v) for v in aged_row.values() if isinstance(v, str))
        k = sizes.growth_cases
        runs: dict[str, list[float]] = {"fresh": [], "aged": []}
        cpu: dict[str, list[float]] = {"fresh": [], "aged": []}
        for rep in range(sizes.growth_repetitions):
            groups = {name: [f"growth-{name}-{rep}-{i}" for i in range(k)] for name in runs}
            copy_case(store.engine, fresh, groups["fresh"])
            copy_case(store.engine, aged, groups["aged"])
            clock.set(START)
            ops = {name: _fires(engine, groups[name]) for name in runs}

            def before_step(step: int) -> None:
                if step == DISCHARGE:
                    clock.advance(OBSERVATION)

            for name, got in interleaved(ops, len(PATH), k, before_step).items():
                runs[name].append(got.per_s)
                cpu[name].append(got.cpu_ms)
        fresh_rate, aged_rate = median(runs["fresh"]), median(runs["aged"])
        return {
            "fire_growth_400": fresh_rate / aged_rate,
            "fresh_fire_per_s": fresh_rate,
            "aged_fire_per_s": aged_rate,
            "cpu_ms_per_fire_fresh": median(cpu["fresh"]),
            "cpu_ms_per_fire_aged": median(cpu["aged"]),
            "aged_case_events": aged_events,
            "aged_case_row_chars": row_chars,
            "growth_measures": "fires/s on copies of a fresh case / on copies of a case with a year of weekly "
            f"visits first ({AGED_EXTRA_FACTS}+ extra facts), interleaved in one engine and database",
            "growth_per_repetition": runs,
        }
    finally:
        store.close()
