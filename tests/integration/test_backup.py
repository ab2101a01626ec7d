"""Backups of a SQLite database: consistent while processes write, private, and restorable to a verified copy."""

from __future__ import annotations

import multiprocessing
import os
import queue
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from integration import scale_workers
from support import BILLING, dump_database, open_case, query, to_ready

from kapflow.app.audit_log import Checkpointer
from kapflow.app.engine import Engine
from kapflow.audit import checkpoint_file
from kapflow.audit.signing import Ed25519Signer, generate_key, load_verifiers
from kapflow.bootstrap import backup_database, restore_database
from kapflow.errors import StorageError
from kapflow.store.backup import BackupInfo
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

PROCESSES = 4
_spawn = multiprocessing.get_context("spawn")


@contextmanager
def engine_on(url: str, clock: FakeClock | None = None) -> Iterator[Engine]:
    store = SqlStore(url)
    try:
        yield Engine(store, KAP_PATHWAY, clock=clock or FakeClock(scale_workers.T0))
    finally:
        store.close()


def counts(url: str) -> tuple[int, int]:
    """(cases, audit events), read straight from the file."""
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as conn:
        cases = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    return int(cases), int(events)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def practice(db_url: str, clock: FakeClock) -> str:
    """A SQLite file with three cases: one ready for KAP, one with a payment, one just opened."""
    with engine_on(db_url, clock) as engine:
        ready, paid, _new = open_case(engine), open_case(engine, first_name="Bravo"), open_case(engine)
        to_ready(engine, clock, ready)
        engine.record(paid, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING)
    return db_url


def test_a_backup_restores_to_the_same_verified_database(practice: str, tmp_path: Path) -> None:
    """The copy is one self-contained file; restored, it holds every row and every chain verifies."""
    target = tmp_path / "backups" / "kapflow-backup.db"
    target.parent.mkdir()
    info = backup_database(practice, target)

    assert isinstance(info, BackupInfo)
    assert (info.path, info.bytes, info.cases) == (target, target.stat().st_size, 3)
    assert (info.cases, info.audit_events) == counts(practice)
    assert info.revision and info.taken_at.utcoffset() is not None
    assert sorted(p.name for p in target.parent.iterdir()) == ["kapflow-backup.db"]  # no -wal, no temporary
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)

    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    done = restore_database(target, restored)
    assert (done.cases, done.audit_events, done.revision) == (info.cases, info.audit_events, info.revision)
    assert stat.S_IMODE((tmp_path / "restored.db").stat().st_mode) == 0o600
    assert dump_database(restored) == dump_database(practice)
    with engine_on(restored) as engine:
        report = engine.verify_audit()
        assert report.ok and (report.cases, report.events) == (info.cases, info.audit_events)


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_the_backup_is_private_whatever_the_umask(practice: str, tmp_path: Path, mask: int) -> None:
    """0600: a backup holds every client's record, so only its owner may read it."""
    target = tmp_path / "backup.db"
    with umask(mask):
        backup_database(practice, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_existing_backup_is_replaced_only_with_overwrite(practice: str, tmp_path: Path) -> None:
    """A file already there is kept (and said so) unless overwrite; replaced, it is private again."""
    target = tmp_path / "backup.db"
    target.write_text("an older backup")
    target.chmod(0o644)
    with pytest.raises(StorageError, match="already exists: give another file name, or pass --overwrite"):
        backup_database(practice, target)
    assert target.read_text() == "an older backup"

    backup_database(practice, target, overwrite=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert counts(f"sqlite:///{target}") == counts(practice)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_backup_of_no_database_creates_nothing(tmp_path: Path) -> None:
    """A mistyped --db says there is no database there, and no file is left behind."""
    with pytest.raises(StorageError, match="no database at"):
        backup_database(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "backup.db")
    assert list(tmp_path.iterdir()) == []


def test_a_backup_of_a_database_that_is_not_kapflows_is_refused(tmp_path: Path) -> None:
    """--db naming some other SQLite file: said plainly, and no backup (nor temporary file) is left."""
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE things (x)")
    with pytest.raises(StorageError, match=r"not a kapflow database \(no kapflow schema revision in it\): check --db"):
        backup_database(f"sqlite:///{other}", tmp_path / "backup.db")
    assert [p.name for p in tmp_path.iterdir()] == ["other.db"]


def test_restore_refuses_a_file_that_is_not_a_kapflow_backup(tmp_path: Path) -> None:
    """Text, and a SQLite database without kapflow's schema revision, are both refused plainly."""
    url = f"sqlite:///{tmp_path / 'kapflow.db'}"
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    with pytest.raises(StorageError, match="is not a kapflow backup"):
        restore_database(text, url)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE things (x)")
    with pytest.raises(StorageError, match="is not a kapflow backup"):
        restore_database(other, url)
    assert not (tmp_path / "kapflow.db").exists()


def test_restore_refuses_a_database_holding_cases_unless_replace(practice: str, tmp_path: Path) -> None:
    """An occupied database is never overwritten by accident; with replace it becomes the backup."""
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with engine_on(empty):  # the schema, no case
        pass
    backup = tmp_path / "backup.db"
    backup_database(empty, backup)

    with pytest.raises(StorageError, match="pass --replace") as refused:
        restore_database(backup, practice)
    assert "stopping the worker and the API" in refused.value.message
    assert counts(practice)[0] == 3

    done = restore_database(backup, practice, replace=True)
    assert (done.cases, done.audit_events) == (0, 0) == counts(practice)
    with engine_on(practice) as engine:
        assert engine.cases() == [] and engine.verify_audit().ok


@pytest.mark.parametrize("url", ["postgresql+psycopg://kapflow@127.0.0.1:1/kapflow", "postgresql://db.example/k"])
def test_postgresql_is_pointed_to_pg_dump_and_archiving(url: str, tmp_path: Path) -> None:
    """kapflow copies no PostgreSQL database: it says which tools to use instead, before connecting."""
    with pytest.raises(StorageError) as backup:
        backup_database(url, tmp_path / "backup.db")
    assert "pg_dump --format=custom" in backup.value.message
    assert "point-in-time recovery" in backup.value.message
    with pytest.raises(StorageError, match="pg_dump"):
        restore_database(tmp_path / "backup.db", url)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ under load


def _checkpointer(engine: Engine, folder: Path) -> Checkpointer:
    """Checkpoints signed with the practice's key (made once per test folder) into its checkpoint file."""
    private, public = folder / "audit.key", folder / "audit.pub"
    if not private.exists():
        signer_text, verifier_text = generate_key("practice-example")
        private.write_text(signer_text)
        public.write_text(verifier_text + "\n")
    return engine.checkpointer(Ed25519Signer.from_text(private.read_text()), origin="practice.example/audit",
                               publish=lambda records: checkpoint_file.publish(folder / "checkpoints.jsonl", records))


def wait_for_events(url: str, above: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        found = counts(url)[1]
        if found > above:
            return found
        time.sleep(0.02)
    pytest.fail(f"the writing processes wrote no more than {above} events in time")


def test_a_backup_taken_during_a_burst_of_writing_processes_is_consistent(db_url: str, tmp_path: Path) -> None:
    """4 processes record payments on their own cases; the backup in the middle is one verified snapshot."""
    with engine_on(db_url) as engine:
        cases = [open_case(engine, last_name=f"Client-{n}") for n in range(PROCESSES)]
    before = counts(db_url)

    barrier = _spawn.Barrier(PROCESSES, timeout=scale_workers.BARRIER_TIMEOUT)
    results, backed_up = _spawn.Queue(), _spawn.Event()
    processes = [  # each writes until the backup is taken, then 20 more: the backup is always mid-burst
        _spawn.Process(target=scale_workers.record_many,
                       args=(db_url, cases[n], 20, n, barrier, results, backed_up))
        for n in range(PROCESSES)
    ]
    for p in processes:
        p.start()
    reports: dict[int, list[tuple[Any, ...]]] = {}
    try:
        wait_for_events(db_url, before[1] + 20, time.monotonic() + 60)  # the burst is under way
        with engine_on(db_url) as engine:
            first = _checkpointer(engine, tmp_path)()  # the checkpoint taken before the backup
        info = backup_database(db_url, tmp_path / "during.db")
        backed_up.set()
        for _ in processes:
            worker, report = results.get(timeout=60)
            reports[worker] = report
    except queue.Empty:
        pytest.fail(f"only {sorted(reports)} of {PROCESSES} processes reported in time")
    finally:
        backed_up.set()  # a failure above must not leave the processes writing
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():  # never leave a process behind a failed test
                p.kill()
                p.join()
    errors = [entry for report in reports.values() for entry in report if entry[0] == "error"]
    assert not errors, errors
    after = counts(db_url)
    written = sum(1 for report in reports.values() for entry in report if entry[0] == "ok")
    assert after[1] == before[1] + written

    assert info.cases == before[0] == after[0]
    assert before[1] < info.audit_events < after[1], (before, info.audit_events, after)  # taken mid-burst

    with engine_on(db_url) as engine:
        last = _checkpointer(engine, tmp_path)()  # after the burst: more than the backup holds
    assert first is not None and last is not None and first.size <= info.audit_events < last.size

    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    done = restore_database(info.path, restored)
    assert (done.cases, done.audit_events) == (info.cases, info.audit_events)
    with engine_on(restored) as engine:
        assert all(engine.verify_audit(case_id).ok for case_id in cases)
        report = engine.verify_audit()
        assert report.ok and report.events == info.audit_events
        # The restore drill: complete up to the checkpoint taken before the backup; the later one is past it.
        log = engine.verify_log(checkpoint_file.read_lines(tmp_path / "checkpoints.jsonl"),
                                checkpoint_file.note_opener(load_verifiers((tmp_path / "audit.pub").read_text())))
        assert log.status != "failed", log.as_dict()
        assert log.complete_up_to is not None and log.complete_up_to.size == first.size
        assert [c.status for c in log.checkpoints] == ["ok", "beyond_log"]
    # Each case's head counts exactly its events, numbered 1..n: no command was copied halfway.
    rows = query(restored, "SELECT c.id, c.event_count, count(a.seq), min(a.case_seq), max(a.case_seq) "
                           "FROM cases c LEFT JOIN audit_events a ON a.case_id = c.id GROUP BY c.id, c.event_count")
    for case_id, event_count, events, first, last in rows:
        assert (events, first, last) == (event_count, 1, event_count), case_id
