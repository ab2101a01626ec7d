"""``kapflow audit keygen``, ``checkpoint`` and ``verify --checkpoints``, as a compliance officer runs them,
and the worker signing checkpoints on its own schedule."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from pathlib import Path

from support import FRONT_DESK, INQUIRY
from typer.testing import CliRunner

from kapflow.audit.chain import link_hash
from kapflow.bootstrap import build_checkpointer, build_dispatcher, build_engine
from kapflow.cli import app
from kapflow.config import load_settings
from kapflow.worker import Worker

runner = CliRunner()


def _setup(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    key, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    done = runner.invoke(app, ["audit", "keygen", "--name", "practice-example", "--private", str(key),
                               "--public", str(public)])
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "PRIVATE" not in done.output
    config = tmp_path / "kapflow.toml"
    config.write_text(f'[audit]\norigin = "practice.example/audit"\nsigning_key_file = "{key}"\n'
                      f'checkpoint_file = "{tmp_path / "checkpoints.jsonl"}"\ncheckpoint_every_minutes = 0.1\n')
    db = f"sqlite:///{tmp_path / 'kapflow.db'}"
    base = ["--db", db, "--config", str(config)]
    engine = build_engine(db)
    for _ in range(3):
        engine.open_case(INQUIRY, actor=FRONT_DESK)
    engine.close()
    paths = {"public": str(public), "file": str(tmp_path / "checkpoints.jsonl"), "db": str(tmp_path / "kapflow.db")}
    return base, paths


def test_keygen_checkpoint_and_verify_against_the_file(tmp_path: Path) -> None:
    base, paths = _setup(tmp_path)
    signed = runner.invoke(app, [*base, "audit", "checkpoint"])
    assert signed.exit_code == 0, signed.output
    assert "signed a checkpoint of 3 entries" in signed.output
    again = runner.invoke(app, [*base, "audit", "checkpoint"])
    assert "already covers all 3 entries" in again.output
    verify = [*base, "audit", "verify", "--checkpoints", paths["file"], "--public-key", paths["public"]]
    ok = runner.invoke(app, verify)
    assert ok.exit_code == 0, ok.output
    assert "every entry is covered by a checkpoint, ok" in ok.output
    with sqlite3.connect(paths["db"]) as conn:
        conn.execute("DELETE FROM audit_events WHERE seq = 2")
        conn.execute("DELETE FROM cases WHERE id = (SELECT case_id FROM audit_events WHERE seq = 3)")
    broken = runner.invoke(app, verify)
    assert broken.exit_code == 1
    assert "log position 1" in broken.output and "is gone: its row was deleted" in broken.output


def test_verify_needs_the_key_with_the_file(tmp_path: Path) -> None:
    base, paths = _setup(tmp_path)
    done = runner.invoke(app, [*base, "audit", "verify", "--checkpoints", paths["file"]])
    assert done.exit_code == 2 and "go together" in done.output


def test_checkpoint_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'kapflow.db'}"
    done = runner.invoke(app, ["--db", db, "audit", "checkpoint"], env={"KAPFLOW_AUDIT_SIGNING_KEY": ""})
    assert done.exit_code == 2 and "kapflow audit keygen" in done.output


def test_the_worker_signs_checkpoints_on_its_schedule(tmp_path: Path) -> None:
    base, paths = _setup(tmp_path)
    settings = load_settings(base[3])
    engine = build_engine(base[1], settings=settings)
    checkpointer = build_checkpointer(engine, settings)
    assert checkpointer is not None
    worker = Worker(build_dispatcher(engine, settings), interval=0.05, checkpointer=checkpointer,
                    checkpoint_every=0.1, sequence_every=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not Path(paths["file"]).exists():
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join()
        engine.close()
    assert Path(paths["file"]).read_text().count("\n") == 1  # one checkpoint: the log did not grow again


def test_the_worker_s_periodic_jobs_run_not_only_at_stop(tmp_path: Path) -> None:
    """A periodic job (the summary, the sequencer) was once added paused: it ran only at stop, if ever."""
    engine = build_engine(f"sqlite:///{tmp_path / 'kapflow.db'}")
    engine.open_case(INQUIRY, actor=FRONT_DESK)
    dispatcher = build_dispatcher(engine, load_settings(None))
    worker = Worker(dispatcher, interval=0.05, summary_every=0.05, sequence_every=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and engine.store.log().size() == 0:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join()
    assert engine.store.log().size() == 1  # the sequencer ran while the worker ran
    engine.close()


def test_one_case_is_proven_against_the_file_and_an_edit_of_it_is_named(tmp_path: Path) -> None:
    base, paths = _setup(tmp_path)
    assert runner.invoke(app, [*base, "audit", "checkpoint"]).exit_code == 0
    with sqlite3.connect(paths["db"]) as conn:
        (case_id,) = conn.execute("SELECT case_id FROM audit_events WHERE seq = 2").fetchone()
    verify = [*base, "audit", "verify", "--case", case_id, "--checkpoints", paths["file"],
              "--public-key", paths["public"]]
    ok = runner.invoke(app, verify)
    assert ok.exit_code == 0, ok.output
    assert "1 proven against the checkpoint of 3 entries" in ok.output
    with sqlite3.connect(paths["db"]) as conn:  # the actor and the chain hash, rewritten together
        conn.execute("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2")
    with build_engine(base[1]) as engine:
        row = engine.history(case_id)[0]
    with sqlite3.connect(paths["db"]) as conn:
        conn.execute("UPDATE audit_events SET hash = ? WHERE seq = 2", (link_hash(row),))
        conn.execute("UPDATE cases SET head_hash = ? WHERE id = ?", (link_hash(row), case_id))
    broken = runner.invoke(app, verify)
    assert broken.exit_code == 1 and "FAILED at event 1" in broken.output
