"""A case's projection lives in rows of its own (``case_entries``): a command adds its entries and rewrites none.

Each test runs on a SQLite file and on a PostgreSQL schema of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from support import FRONT_DESK, THERAPIST, cold_read, open_case, query, who

from kapflow.app.engine import Engine
from kapflow.domain.entries import Entries
from kapflow.errors import StorageError
from kapflow.store import schema
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


def entries(url: str, case_id: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT section, n, entry FROM case_entries WHERE case_id = :c ORDER BY section, n", c=case_id)


def vitals(engine: Engine, case_id: str, systolic: int) -> None:
    engine.record(case_id, "vitals", {"phase": "pre_dose", "systolic": systolic, "diastolic": 80}, actor=THERAPIST)


def test_a_command_adds_its_entries_and_rewrites_none(engine: Engine, any_ready_url: str, clock: FakeClock) -> None:
    """Each fact recorded adds one row; the rows before it stay byte for byte; the case row holds counts only."""
    case_id = open_case(engine)
    before = entries(any_ready_url, case_id)
    for n in range(5):
        vitals(engine, case_id, 110 + n)
    after = entries(any_ready_url, case_id)
    assert after[:len(before)] == before and len(after) == len(before) + 5
    assert [(s, n) for s, n, _ in after] == [("facts", n) for n in range(len(after))]
    (fact_count, move_count), = query(any_ready_url, "SELECT fact_count, move_count FROM cases WHERE id = :c",
                                      c=case_id)
    assert (fact_count, move_count) == (len(after), 0)
    assert engine.case(case_id).facts_json() == engine.case(case_id).facts_json()  # read twice: the same text
    assert [f["data"]["systolic"] for f in engine.case(case_id).facts["facts"][-5:]] == [110, 111, 112, 113, 114]
    assert engine.verify_audit(case_id).ok


def test_a_case_is_read_with_the_entries_its_row_counts(engine: Engine, any_ready_url: str) -> None:
    """An entry whose command has not committed yet (written by hand here, past the row's count) is not the
    case's: a reader takes as many as the row says, so a case is always the one a single commit left; the next
    command's entry takes its place."""
    case_id = open_case(engine)
    vitals(engine, case_id, 120)
    seen = engine.case(case_id)
    db = create_engine(any_ready_url, poolclass=NullPool)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO case_entries (case_id, section, n, entry) VALUES (:c, 'facts', :n, :e)"),
                     {"c": case_id, "n": len(seen.facts["facts"]),
                      "e": '{"at":"2026-01-05T09:00:00.000000+00:00","by":"x","data":{},"kind":"vitals"}'})
    db.dispose()
    assert engine.case(case_id).facts == seen.facts
    assert [c.facts for c in engine.case_page(limit=10).cases if c.id == case_id] == [seen.facts]
    vitals(engine, case_id, 121)  # the next command's entry takes that place
    assert [f["data"].get("systolic") for f in engine.case(case_id).facts["facts"][-2:]] == [120, 121]
    assert engine.verify_audit(case_id).ok


def test_verification_reports_entry_rows_no_reader_takes(engine: Engine, any_ready_url: str) -> None:
    """An entry row added by hand past the counts the case row keeps, or for a case that does not exist, changes no
    read, but it is an edit: verification names the case, of one case and of the whole database."""
    case_id, other = open_case(engine), open_case(engine)
    vitals(engine, case_id, 120)
    entry = '{"at":"2026-01-05T09:00:00.000000+00:00","by":"x","data":{},"kind":"vitals"}'
    added = "INSERT INTO case_entries (case_id, section, n, entry) VALUES (:c, :s, :n, :e)"
    db = create_engine(any_ready_url, poolclass=NullPool)
    with db.begin() as conn:
        for n in (40, 41):
            conn.execute(text(added), {"c": case_id, "s": "facts", "n": n, "e": entry})
        conn.execute(text(added), {"c": "case-that-never-was", "s": "moves", "n": 0, "e": entry})
    db.dispose()
    (problem,) = engine.verify_audit(case_id).problems
    assert problem.case_id == case_id and "2 of its projection's entry rows" in problem.reason
    whole = engine.verify_audit()
    assert sorted(p.case_id for p in whole.problems) == sorted([case_id, "case-that-never-was"])
    assert other not in {p.case_id for p in whole.problems} and engine.verify_audit(other).ok


def _waiting_for_a_lock(url: str, holder: int) -> bool:
    """True once a session waits for a lock the backend ``holder`` holds (tests of other schemas run meanwhile)."""
    (count,), = query(url, "SELECT count(*) FROM pg_stat_activity WHERE :h = ANY(pg_blocking_pids(pid))", h=holder)
    return bool(count)


def test_a_command_waiting_for_the_case_reads_the_entries_the_one_before_committed(
    postgres_ready_url: str, clock: FakeClock
) -> None:
    """PostgreSQL: a command that waits for the case row's lock starts from the case the command holding it left,
    its new entries included (a read of the row and its entries in one statement would miss them: the rest of a
    statement sees the database as of before the wait)."""
    store = SqlStore(postgres_ready_url, recent_cases=0)  # no kept copy: the command reads the row
    engine = Engine(store, KAP_PATHWAY, clock=clock)
    try:
        case_id = open_case(engine)
        holder = create_engine(postgres_ready_url, poolclass=NullPool)
        with holder.connect() as conn:
            tx = conn.begin()
            conn.execute(text("SELECT id FROM cases WHERE id = :c FOR UPDATE"), {"c": case_id})
            holder_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            done: list[Exception | None] = []

            def record() -> None:
                try:
                    vitals(engine, case_id, 131)
                    done.append(None)
                except Exception as exc:
                    done.append(exc)

            waiter = threading.Thread(target=record)
            waiter.start()
            while not _waiting_for_a_lock(postgres_ready_url, holder_pid):  # the command waits for the row
                time.sleep(0.01)
            # What another command appends meanwhile, as kapflow's commands do: an entry and the row's counts.
            note = '{"at":"2026-01-05T09:00:00.000000+00:00","by":"x","data":{"n":1},"kind":"note"}'
            conn.execute(text("INSERT INTO case_entries (case_id, section, n, entry) "
                              "SELECT id, 'facts', fact_count, :e FROM cases WHERE id = :c"),
                         {"e": note, "c": case_id})
            conn.execute(text("UPDATE cases SET fact_count = fact_count + 1 WHERE id = :c"), {"c": case_id})
            tx.commit()
        holder.dispose()
        waiter.join(timeout=60)
        assert done == [None]
        kinds = [f["kind"] for f in engine.case(case_id).facts["facts"]]
        assert kinds[-2:] == ["note", "vitals"]  # the waiting command appended after what it waited for
    finally:
        store.close()


def booked_case(url: str, clock: FakeClock) -> tuple[str, str]:
    """A case with an evaluation booked, written at the newest revision, and its projection's text."""
    store = SqlStore(url)
    engine = Engine(store, KAP_PATHWAY, clock=clock)
    case_id = open_case(engine)
    starts = (clock.now() + timedelta(days=3)).isoformat()
    engine.record(case_id, "appointment", {"kind": "evaluation", **who(case_id), "starts_at": starts}, actor=FRONT_DESK)
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    text = engine.case(case_id).facts_json()
    store.close()
    return case_id, text


@pytest.fixture
def old_database(any_db_url: str, clock: FakeClock) -> Iterator[tuple[str, str, str]]:
    """A database at revision 0012 (the projection in ``cases.facts``) with a case, and that projection's text."""
    case_id, text_before = booked_case(any_db_url, clock)
    schema.downgrade(any_db_url, "0012")
    yield any_db_url, case_id, text_before


def test_the_downgrade_and_the_upgrade_move_every_projection_whole(
    old_database: tuple[str, str, str], clock: FakeClock
) -> None:
    url, case_id, text_before = old_database
    assert query(url, "SELECT facts FROM cases WHERE id = :c", c=case_id) == [(text_before,)]
    schema.upgrade(url)
    assert schema.check(url) == []
    store = SqlStore(url)
    engine = Engine(store, KAP_PATHWAY, clock=clock)
    try:
        assert engine.case(case_id).facts_json() == text_before
        assert engine.verify_audit(case_id).ok
        vitals(engine, case_id, 118)  # and the case goes on
        assert engine.verify_audit(case_id).ok
    finally:
        store.close()


def test_a_projection_that_cannot_be_moved_stops_the_upgrade_naming_its_case(
    old_database: tuple[str, str, str]
) -> None:
    url, case_id, _text = old_database
    db = create_engine(url, poolclass=NullPool)
    with db.begin() as conn:
        conn.execute(text("UPDATE cases SET facts = :f WHERE id = :c"), {"f": '{"facts": [', "c": case_id})
    db.dispose()
    with pytest.raises(StorageError) as caught:
        schema.upgrade(url)
    assert case_id in str(caught.value) and "kapflow audit verify" in str(caught.value)
    assert schema.current(url) == "0012"  # nothing of the upgrade stays


def kinds(url: str, case_id: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT section, n, kind FROM case_entries WHERE case_id = :c ORDER BY section, n", c=case_id)


def cold_entries(url: str, case_id: str) -> tuple[Entries, Entries]:
    """The projection's entries as a command in another process reads them."""
    stored = cold_read(url, case_id).stored_entries()
    assert stored is not None
    return stored


def test_each_entry_has_its_kind_beside_it_and_a_command_reads_them(
    engine: Engine, any_ready_url: str, clock: FakeClock
) -> None:
    """The fact's kind, or the move's trigger: a command's read hands them over, so grouping the entries reads no
    text; an entry with none (a hand's) has the case's entries read from their texts, as before."""
    case_id = open_case(engine)
    vitals(engine, case_id, 120)
    starts = (clock.now() + timedelta(days=3)).isoformat()
    engine.record(case_id, "appointment", {"kind": "evaluation", **who(case_id), "starts_at": starts}, actor=FRONT_DESK)
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    case = engine.case(case_id)
    expected = [("facts", n, f["kind"]) for n, f in enumerate(case.facts["facts"])]
    expected += [("moves", n, m["trigger"]) for n, m in enumerate(case.facts["moves"])]
    assert kinds(any_ready_url, case_id) == expected
    facts, moves = cold_entries(any_ready_url, case_id)
    assert facts._keys == ("kind", [k for s, _n, k in expected if s == "facts"])
    assert moves._keys == ("trigger", ["book_evaluation"])
    db = create_engine(any_ready_url, poolclass=NullPool)
    with db.begin() as conn:
        conn.execute(text("UPDATE case_entries SET kind = NULL WHERE case_id = :c AND n = 0"), {"c": case_id})
    db.dispose()
    facts, moves = cold_entries(any_ready_url, case_id)
    assert facts._keys is None and moves._keys is None
    assert facts.keys("kind") == [k for s, _n, k in expected if s == "facts"]
    assert engine.verify_audit(case_id).ok
    vitals(engine, case_id, 121)
    assert engine.verify_audit(case_id).ok


def test_verification_names_an_entry_row_whose_kind_was_edited(engine: Engine, any_ready_url: str) -> None:
    """A kind changed by hand would hide a fact from the guards that ask for its kind (a command groups the entries
    by it): verification names the case, of the case and of the whole database."""
    case_id, other = open_case(engine), open_case(engine)
    vitals(engine, case_id, 120)
    vitals(engine, other, 120)
    db = create_engine(any_ready_url, poolclass=NullPool)
    with db.begin() as conn:
        conn.execute(text("UPDATE case_entries SET kind = 'consent' WHERE case_id = :c AND kind = 'vitals'"),
                     {"c": case_id})
    db.dispose()
    for report in (engine.verify_audit(case_id), engine.verify_audit(None)):
        assert [p.case_id for p in report.problems] == [case_id]
        assert "1 of its projection's entry rows name a kind" in report.problems[0].reason


def test_the_upgrade_gives_every_entry_its_kind(old_kinds: tuple[str, str, list[str]]) -> None:
    """Revision 0015 adds the column and fills it in from each entry's text."""
    url, case_id, written = old_kinds
    schema.upgrade(url)
    assert schema.check(url) == []
    assert [k for _s, _n, k in kinds(url, case_id)] == written
    facts, moves = cold_entries(url, case_id)
    assert facts._keys is not None and moves._keys is not None
    assert facts._keys[1] + moves._keys[1] == written


@pytest.fixture
def old_kinds(any_db_url: str, clock: FakeClock) -> Iterator[tuple[str, str, list[str]]]:
    """A database at revision 0014 (entries without their kinds) with a case, and its entries' kinds as written."""
    case_id, _text = booked_case(any_db_url, clock)
    written = [k for _s, _n, k in kinds(any_db_url, case_id)]
    assert len(written) == 3 and None not in written
    schema.downgrade(any_db_url, "0014")
    yield any_db_url, case_id, written
