"""Reads are audited: each read of a case is recorded (who, for whom, which case, which view, when), an auditor
can ask who looked at a case in a month, and signed checkpoints cover the records like the audit history."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from raw_db import RawDb
from sqlalchemy import create_engine, text
from support import FRONT_DESK, INQUIRY, THERAPIST

from kapflow.app.engine import Engine
from kapflow.audit import checkpoint_file
from kapflow.audit.log_verify import LogReport
from kapflow.audit.signing import Ed25519Signer, generate_key, load_verifiers
from kapflow.domain.case import Actor
from kapflow.errors import InvalidInput
from kapflow.testing import FakeClock

ORIGIN = "practice.example/kapflow-audit"
AUDITOR = Actor("auditor-1", "auditor")
VIA_PMS = Actor("th-jordan", "therapist", via="pms-sync")

NOVEMBER = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, tzinfo=UTC)
JANUARY = datetime(2027, 1, 1, tzinfo=UTC)


class Signed:
    """An engine's audit log with a signing key and a checkpoint file outside the database."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        private, self.public = generate_key("practice-example")
        self.file = folder / "checkpoints.jsonl"
        self.engine = engine
        self.checkpoint = engine.checkpointer(Ed25519Signer.from_text(private), origin=ORIGIN,
                                              publish=lambda records: checkpoint_file.publish(self.file, records))

    def verify(self) -> LogReport:
        opener = checkpoint_file.note_opener(load_verifiers(self.public))
        return self.engine.verify_log(checkpoint_file.read_lines(self.file), opener)


@pytest.fixture
def raw(any_ready_url: str) -> Iterator[RawDb]:
    db = RawDb(any_ready_url)
    yield db
    db.close()


def _reads(engine: Engine, clock: FakeClock) -> tuple[str, str]:
    """Two cases read in November and in December, by staff and by a service for a therapist."""
    a = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    b = engine.open_case({**INQUIRY, "first_name": "Other"}, actor=FRONT_DESK).case_id
    clock.set(NOVEMBER)
    engine.record_access(FRONT_DESK, a, "case")
    clock.set(DECEMBER + timedelta(days=2))
    engine.record_access(VIA_PMS, a, "history")
    clock.advance(timedelta(minutes=5))
    engine.record_access(THERAPIST, b, "facts")
    clock.advance(timedelta(minutes=5))
    engine.record_access(FRONT_DESK, a, "triggers")
    clock.set(JANUARY + timedelta(hours=1))
    engine.record_access(FRONT_DESK, a, "case")
    return a, b


def test_reads_are_recorded_and_found_by_case_and_month(engine: Engine, clock: FakeClock) -> None:
    a, b = _reads(engine, clock)
    december = engine.accesses(case_id=a, since=DECEMBER, until=JANUARY)
    assert [(r.actor, r.role, r.via, r.view) for r in december] == [
        ("th-jordan", "therapist", "pms-sync", "history"), ("fd-avery", "front_desk", None, "triggers"),
    ]
    assert all(r.case_id == a and DECEMBER <= r.at < JANUARY for r in december)
    assert december[0].at == DECEMBER + timedelta(days=2)
    assert len(engine.accesses(case_id=a)) == 4
    assert [r.case_id for r in engine.accesses(case_id=b)] == [b]
    assert [r.view for r in engine.accesses(actor="fd-avery", since=DECEMBER)] == ["triggers", "case"]
    assert [r.view for r in engine.accesses(case_id=a, actor="th-jordan")] == ["history"]
    assert [r.view for r in engine.accesses(case_id=a, limit=2)] == ["case", "history"]
    assert engine.accesses(case_id="case-nobody-read") == []


def test_bad_input_is_refused_and_nothing_is_written(engine: Engine) -> None:
    for actor, case_id, view in ((FRONT_DESK, "case 1", "case"), (FRONT_DESK, "case-1", "Client Notes"),
                                 (Actor("", "front_desk"), "case-1", "case"), (FRONT_DESK, "case-1", "")):
        with pytest.raises(InvalidInput):
            engine.record_access(actor, case_id, view)
    with pytest.raises(InvalidInput):
        engine.accesses(case_id="case-1", since=datetime(2026, 12, 1))  # naive: which zone?
    with pytest.raises(InvalidInput):
        engine.accesses(case_id="case-1", since=JANUARY, until=DECEMBER)
    with pytest.raises(InvalidInput):
        engine.accesses(case_id="case-1", limit=0)
    assert engine.accesses(case_id="case-1") == []


def test_a_record_carries_no_phi(engine: Engine, raw: RawDb) -> None:
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    engine.record_access(VIA_PMS, case_id, "case")
    columns = [r[0] for r in raw.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'access_log' "
        "AND table_schema = current_schema()")] if raw.sqlite_path is None else [
        r[1] for r in raw.rows("PRAGMA table_info(access_log)")]
    assert sorted(columns) == sorted(["id", "at", "actor", "role", "via", "case_id", "view", "log_position"])
    (row,) = raw.rows("SELECT at, actor, role, via, case_id, view FROM access_log")
    stored = " ".join(str(v) for v in row)
    for value in INQUIRY.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in stored, value
    assert row[1:] == ("th-jordan", "therapist", "pms-sync", case_id, "case")


def test_recording_a_read_neither_reads_nor_waits_for_the_case(any_ready_url: str, engine: Engine) -> None:
    """On PostgreSQL a writer holding the case row's lock does not hold up the read's record."""
    if any_ready_url.startswith("sqlite"):
        pytest.skip("SQLite's writers take turns for the whole database")
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    other = create_engine(any_ready_url)
    try:
        with other.begin() as conn:
            conn.execute(text("SELECT id FROM cases WHERE id = :c FOR UPDATE"), {"c": case_id})
            done = threading.Event()
            worker = threading.Thread(target=lambda: (engine.record_access(AUDITOR, case_id, "case"), done.set()))
            worker.start()
            worker.join(timeout=10)
            assert done.is_set(), "recording a read waited for the lock on the case"
    finally:
        other.dispose()
    assert [r.actor for r in engine.accesses(case_id=case_id)] == ["auditor-1"]


def test_reads_are_placed_in_the_audit_log_and_covered_by_a_checkpoint(
    engine: Engine, clock: FakeClock, tmp_path: Path, raw: RawDb
) -> None:
    _reads(engine, clock)
    assert engine.sequence_audit_log().placed > 5  # the cases' events and the five reads
    placed = raw.rows("SELECT id, log_position FROM access_log ORDER BY id")
    assert len(placed) == 5 and all(position is not None for _id, position in placed)
    sources = raw.rows("SELECT source, source_id FROM log_entries WHERE source = 'access' ORDER BY position")
    assert [int(i) for _s, i in sources] == [i for i, _p in placed]  # in the order they were written
    signed = Signed(engine, tmp_path)
    record = signed.checkpoint()
    assert record is not None and record.size == engine.store.log().size()
    report = signed.verify()
    assert report.status == "ok" and report.covered == report.size, report.as_dict()
    engine.record_access(AUDITOR, "case-later", "case")
    assert signed.verify().status == "not_yet_covered"  # a read after the newest checkpoint is counted, not verified


@pytest.mark.parametrize("tamper", ["delete", "edit_actor", "edit_time", "edit_view"])
def test_deleting_or_editing_a_read_after_a_checkpoint_is_found(
    engine: Engine, clock: FakeClock, tmp_path: Path, raw: RawDb, tamper: str
) -> None:
    a, _b = _reads(engine, clock)
    signed = Signed(engine, tmp_path)
    assert signed.checkpoint() is not None and signed.verify().status == "ok"
    (access_id, position), = raw.rows(
        "SELECT id, log_position FROM access_log WHERE case_id = :c AND view = 'history'", {"c": a})
    statement = {
        "delete": "DELETE FROM access_log WHERE id = :i",
        "edit_actor": "UPDATE access_log SET actor = 'someone-else', via = NULL WHERE id = :i",
        "edit_time": "UPDATE access_log SET at = '2026-11-01T00:00:00.000000+00:00' WHERE id = :i",
        "edit_view": "UPDATE access_log SET view = 'case' WHERE id = :i",
    }[tamper]
    raw.run((statement, {"i": access_id}))
    report = signed.verify()
    assert report.status == "failed", report.as_dict()
    first = report.problems[0]
    assert first.position == position and f"the access (id {access_id})" in first.reason, report.as_dict()
    assert ("deleted" if tamper == "delete" else "edited") in first.reason
