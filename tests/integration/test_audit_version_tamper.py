"""An edited workflow version on a case row (to dodge a stricter version's guards) is found."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support import open_case

from kapflow.app.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

V2 = KAP_PATHWAY.with_thresholds("2", max_systolic=135)


def test_case_row_moved_to_another_version_by_hand_is_found(tmp_path: Path) -> None:
    """Rewriting cases.workflow_version with raw SQL breaks verification, naming the case."""
    db = tmp_path / "k.db"
    store = SqlStore(f"sqlite:///{db}")
    engine = Engine(store, [KAP_PATHWAY, V2], clock=FakeClock())
    case_id = open_case(engine)
    assert engine.case(case_id).workflow_version == "2"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE cases SET workflow_version = '1' WHERE id = ?", (case_id,))
    report = engine.verify_audit()
    assert not report.ok
    assert [p.case_id for p in report.problems] == [case_id]
    assert "workflow version" in report.problems[0].reason
    store.close()
