"""The store keeps snapshots of a case's appointments and ledger (``case_views``): a command on a case read cold
starts from them, and ``audit verify`` folds the facts each covers and compares.

Each test runs on a SQLite file and on a PostgreSQL schema of its own.
"""

from __future__ import annotations

import gc
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from support import FRONT_DESK, THERAPIST, cold_read, open_case, query

from kapflow.app.engine import Engine
from kapflow.domain.appointments import appointments, stored_appointments
from kapflow.domain.billing import ledger, stored_ledger
from kapflow.domain.case import CaseRecord
from kapflow.domain.entries import ENTRY_INDEX, INDEX_FROM, INDEX_LAG, SNAPSHOT_EVERY
from kapflow.errors import StorageError
from kapflow.store.prepared import HotStatements
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

WEEKS = SNAPSHOT_EVERY + 2  # each week a booking and its attendance (which posts a charge), and a payment


def weeks_of_visits(engine: Engine, clock: FakeClock, case_id: str, weeks: int = WEEKS, first: int = 1) -> None:
    for n in range(first, first + weeks):
        visit = clock.now() + timedelta(days=1)
        engine.record(case_id, "appointment", {"kind": "integration_session", "starts_at": visit.isoformat(),
                                               "clinician": f"th-{case_id}"}, actor=FRONT_DESK)
        clock.set(visit + timedelta(hours=1))
        engine.record(case_id, "appointment_update", {"appointment": f"a{n}", "action": "attended"},
                      actor=THERAPIST)
        engine.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=FRONT_DESK)
        clock.advance(timedelta(days=6))


def snapshots(url: str, case_id: str) -> dict[str, tuple[int, str]]:
    rows = query(url, "SELECT name, fact_count, body FROM case_views WHERE case_id = :c", c=case_id)
    return {name: (count, body) for name, count, body in rows}


def delete_fact_row(url: str, case_id: str, place: int) -> None:
    """Delete the row of the case's fact at ``place``, as a hand with the database's password could."""
    db = create_engine(url, poolclass=NullPool)
    try:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM case_entries WHERE case_id = :c AND section = 'facts' AND n = :n"),
                         {"c": case_id, "n": place})
    finally:
        db.dispose()


def names(case_id: str) -> set[str]:
    """The names of the snapshots a case of the KAP pathway has, once long enough for all of them."""
    assert KAP_PATHWAY.appointments is not None and KAP_PATHWAY.billing is not None
    return {stored_appointments(case_id, KAP_PATHWAY.appointments).name, stored_ledger(KAP_PATHWAY.billing).name,
            ENTRY_INDEX}


def views(case: CaseRecord) -> tuple[Any, Any]:
    assert KAP_PATHWAY.appointments is not None and KAP_PATHWAY.billing is not None
    return appointments(case.id, case.projection, KAP_PATHWAY.appointments), ledger(case.projection,
                                                                                   KAP_PATHWAY.billing)


def test_commands_keep_snapshots_and_a_cold_read_starts_from_them(
    engine: Engine, any_ready_url: str, clock: FakeClock
) -> None:
    """After a few weeks of visits both views have a snapshot; a cold read takes them and gets what folding every
    fact gets (the record other readers get, which has none); commands on it go on as on any case."""
    assert KAP_PATHWAY.appointments is not None and KAP_PATHWAY.billing is not None
    case_id = open_case(engine)
    weeks_of_visits(engine, clock, case_id)
    kept = snapshots(any_ready_url, case_id)
    assert set(kept) == names(case_id)
    facts = len(engine.case(case_id).facts["facts"])
    assert all(SNAPSHOT_EVERY <= count <= facts for count, _ in kept.values())
    cold = cold_read(any_ready_url, case_id)
    assert set(cold.views) == names(case_id)
    folded = engine.case(case_id)
    assert folded.views == {}
    assert views(cold) == views(folded)
    assert len(views(cold)[0]) == WEEKS and views(cold)[1].balance == 0
    weeks_of_visits(engine, clock, case_id, 1, WEEKS + 1)  # a command after them, in a store that reads it cold
    assert views(cold_read(any_ready_url, case_id)) == views(engine.case(case_id))
    assert engine.verify_audit(case_id).ok and engine.verify_audit(None).ok


def test_verification_names_a_snapshot_edited_by_hand(engine: Engine, any_ready_url: str, clock: FakeClock) -> None:
    """A snapshot made to say an appointment was never attended, or the ledger paid off, would change what
    commands see while the chain verifies: verification names the case and the view, of the case and of the
    whole database. Deleting the row mends it: commands fold the facts, and write it again."""
    assert KAP_PATHWAY.billing is not None
    case_id, other = open_case(engine), open_case(engine)
    weeks_of_visits(engine, clock, case_id)
    weeks_of_visits(engine, clock, other)
    name = stored_ledger(KAP_PATHWAY.billing).name
    count, body = snapshots(any_ready_url, case_id)[name]
    edited = body.replace('"165.00"', '"0.00"', 1)
    assert edited != body
    db = create_engine(any_ready_url, poolclass=NullPool)
    try:
        with db.begin() as conn:
            conn.execute(text("UPDATE case_views SET body = :b WHERE case_id = :c AND name = :n"),
                         {"b": edited, "c": case_id, "n": name})
        for report in (engine.verify_audit(case_id), engine.verify_audit(None)):
            assert [(p.case_id, name in p.reason) for p in report.problems] == [(case_id, True)]
            assert f"after {count} facts differs from a fold" in report.problems[0].reason
        with db.begin() as conn:
            conn.execute(text("DELETE FROM case_views WHERE case_id = :c"), {"c": case_id})
    finally:
        db.dispose()
    assert engine.verify_audit(case_id).ok
    assert views(cold_read(any_ready_url, case_id)) == views(engine.case(case_id))


def test_verification_names_snapshots_of_no_case_and_skips_views_no_code_keeps(
    engine: Engine, any_ready_url: str
) -> None:
    """A snapshot of a case not in the cases table is a row added by hand; one of a name no view of the case's
    workflow has (an older fold's) is read by no command, and not checked."""
    case_id = open_case(engine)
    add = "INSERT INTO case_views (case_id, name, fact_count, body) VALUES (:c, :n, 1, '[]')"
    db = create_engine(any_ready_url, poolclass=NullPool)
    try:
        with db.begin() as conn:
            conn.execute(text(add), {"c": case_id, "n": "appointments/0:appointment:appointment_update"})
            conn.execute(text(add), {"c": "case-never", "n": "ledger/1:0"})
    finally:
        db.dispose()
    assert engine.verify_audit(case_id).ok
    report = engine.verify_audit(None)
    assert [p.case_id for p in report.problems] == ["case-never"]
    assert "not in the cases table" in report.problems[0].reason


def test_a_long_case_is_read_in_part_and_answers_as_read_whole(
    engine: Engine, any_ready_url: str, clock: FakeClock
) -> None:
    """A command reads a long case's facts past the store's index of them (and the last of each kind); the others
    are read when a query reaches them, and every query answers as on the case read whole."""
    case_id = open_case(engine)
    weeks_of_visits(engine, clock, case_id, 2 * WEEKS)
    whole = engine.case(case_id)
    cold = cold_read(any_ready_url, case_id)
    facts = cold.facts["facts"]
    read = sum(t is not None for t in facts._texts)
    assert facts.stored_at(0) and read <= INDEX_LAG + SNAPSHOT_EVERY + len(facts.positions("kind")) < len(facts)
    kinds = {f.kind for f in whole.projection.facts()}
    for kind in sorted(kinds):
        part = cold_read(any_ready_url, case_id).projection
        assert part.latest(kind) == whole.projection.latest(kind)
        assert part.of_kind(kind) == whole.projection.of_kind(kind)
        assert part.since(kind, clock.now() - timedelta(days=30)) == whole.projection.since(
            kind, clock.now() - timedelta(days=30))
    assert list(facts) == list(whole.facts["facts"])
    db = create_engine(any_ready_url, poolclass=NullPool)
    try:  # an index edited by hand: verification names it, and a command reads the case whole
        with db.begin() as conn:
            conn.execute(text("UPDATE case_views SET body = replace(body, '\"payment\"', '\"vitals\"') "
                              "WHERE case_id = :c AND name = :n"), {"c": case_id, "n": ENTRY_INDEX})
        problems = engine.verify_audit(case_id).problems
        assert [(p.case_id, ENTRY_INDEX in p.reason) for p in problems] == [(case_id, True)]
        assert views(cold_read(any_ready_url, case_id)) == views(engine.case(case_id))
        with db.begin() as conn:
            conn.execute(text("DELETE FROM case_views WHERE case_id = :c AND name = :n"),
                         {"c": case_id, "n": ENTRY_INDEX})
    finally:
        db.dispose()
    assert engine.verify_audit(case_id).ok
    assert list(cold_read(any_ready_url, case_id).facts["facts"]) == list(whole.facts["facts"])


def test_the_views_are_written_with_the_index_even_by_commands_that_read_neither(
    any_ready_url: str, clock: FakeClock
) -> None:
    """Every command reads its case cold, and most record a fact no guard or plan of theirs folds a view for (a
    vital sign): the command that writes the index works out every kept view all the same, so none is left
    behind it (a read past the index steps each by facts it read); and a snapshot of a name no view has now,
    behind it too, is gone."""
    store = SqlStore(any_ready_url, recent_cases=0)
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock)
        case_id = open_case(engine)
        stale = "INSERT INTO case_views (case_id, name, fact_count, body) VALUES (:c, 'ledger/0:old', 1, '{}')"
        db = create_engine(any_ready_url, poolclass=NullPool)
        try:
            with db.begin() as conn:
                conn.execute(text(stale), {"c": case_id})
        finally:
            db.dispose()
        weeks_of_visits(engine, clock, case_id, 4)
        indexed = 0
        for n in range(INDEX_FROM + 2 * SNAPSHOT_EVERY):
            engine.record(case_id, "vitals", {"phase": "pre_dose", "systolic": 120 + n % 5, "diastolic": 80},
                          actor=THERAPIST)
            kept = snapshots(any_ready_url, case_id)
            if kept.get(ENTRY_INDEX, (0, ""))[0] > indexed:  # this command wrote the index: every view with it
                indexed = kept[ENTRY_INDEX][0]
                assert {name for name, (count, _) in kept.items() if count >= indexed} == names(case_id)
        assert indexed and "ledger/0:old" not in snapshots(any_ready_url, case_id)
        assert views(cold_read(any_ready_url, case_id)) == views(engine.case(case_id))
        assert engine.verify_audit(case_id).ok
    finally:
        store.close()


def test_an_earlier_entry_deleted_by_hand_is_said_when_a_query_reaches_it(
    engine: Engine, any_ready_url: str, clock: FakeClock
) -> None:
    """A case read in part reads an earlier fact's text when a query reaches it: a row deleted by hand is a storage
    error naming the case and what to do, and verification names the case."""
    case_id = open_case(engine)
    weeks_of_visits(engine, clock, case_id, 2 * WEEKS)
    delete_fact_row(any_ready_url, case_id, engine.case(case_id).facts["facts"].positions("kind")["appointment"][0])
    with pytest.raises(StorageError, match=f"missing from the database.*{case_id}|{case_id}.*missing"):
        cold_read(any_ready_url, case_id).projection.of_kind("appointment")
    assert case_id in {p.case_id for p in engine.verify_audit(None).problems}


def test_commands_on_a_long_case_leave_nothing_for_the_cycle_collector(
    engine: Engine, any_ready_url: str, clock: FakeClock
) -> None:
    """Every projection, view and ledger a command makes is freed when the last reference to it goes: a kept record's
    views hold the projection that reads them weakly. A reference cycle per command would leave each command's
    projection to the cycle collector, whose passes over a store's kept records cost tens of milliseconds each."""
    case_id = open_case(engine)
    weeks_of_visits(engine, clock, case_id, 2 * WEEKS)
    cold = SqlStore(any_ready_url, recent_cases=0)  # every command reads the case cold, with its snapshots
    try:
        kept = Engine(cold, KAP_PATHWAY, clock=clock)
        for store_engine in (engine, kept):
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                weeks_of_visits(store_engine, clock, case_id, 2, first=len(views(engine.case(case_id))[0]) + 1)
                found = gc.collect()
                assert found == 0, sorted({type(o).__name__ for o in gc.garbage})
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
    finally:
        cold.close()


def test_sqlite_looks_each_last_fact_up_in_the_key(db_url: str) -> None:
    """A long case's read takes the last fact of each kind the index covers by its place: not a range of a year's
    facts, each tested for being a last one (which SQLite chose for ``n < index``, at twice the cost)."""
    store = SqlStore(db_url)
    try:
        read = HotStatements(store.engine.dialect).select_entries
        with store.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            plan = [row[3] for row in driver.execute("EXPLAIN QUERY PLAN " + read.sql, read.bind({"id": "case"}))]
    finally:
        store.close()
    searches = [step for step in plan if step.startswith("SEARCH case_entries")]
    assert any("n=?" in step for step in searches), plan
    assert not any("n<?" in step for step in searches), plan


def test_the_store_reads_only_the_earlier_texts_a_where_may_find(
    engine: Engine, any_ready_url: str, clock: FakeClock
) -> None:
    """``where`` on a long case read in part: the database looks through the earlier texts of the kind and sends
    those holding the value; the answer is the whole case's, and a row deleted by hand is still found missing."""
    case_id = open_case(engine)
    engine.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    weeks_of_visits(engine, clock, case_id, 2 * WEEKS)
    cold = cold_read(any_ready_url, case_id).projection
    whole = engine.case(case_id).projection
    stored = cold.raw["facts"]
    fees = cold.where("payment", "purpose", "evaluation_fee")
    assert fees == whole.where("payment", "purpose", "evaluation_fee") and len(fees) == 1
    payments = [n for n in whole.raw["facts"].positions("kind")["payment"] if stored.stored_at(n)]
    assert len(payments) > 10 and sum(stored._texts[n] is not None for n in payments) <= 2  # the fee, the last one
    delete_fact_row(any_ready_url, case_id, payments[0])
    with pytest.raises(StorageError, match=case_id):
        cold_read(any_ready_url, case_id).projection.where("payment", "purpose", "evaluation_fee")
