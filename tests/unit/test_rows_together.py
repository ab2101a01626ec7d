"""Which rows may run as one statement on PostgreSQL (``RowsTogether.fits``): rows must agree on every value bound
once for all of them, and tell themselves apart by their keys (an upsert may not touch one row twice)."""

from __future__ import annotations

from sqlalchemy import literal, select
from sqlalchemy.dialects import postgresql

from kapflow.store.prepared import RowsTogether

TOGETHER = RowsTogether(select(literal(1)), postgresql.psycopg.dialect(), per_row=("key", "due_at"), unique=("key",))


def row(key: str, due_at: str = "2026-03-02", now: str = "2026-03-01") -> dict[str, str]:
    return {"key": key, "due_at": due_at, "b_now": now}


def test_rows_with_distinct_keys_and_one_shared_value_run_together() -> None:
    assert TOGETHER.fits([row("a"), row("b", due_at="2026-04-01"), row("c")])


def test_rows_disagreeing_on_a_shared_value_run_one_by_one() -> None:
    assert not TOGETHER.fits([row("a"), row("b", now="2026-03-02")])


def test_rows_repeating_a_key_run_one_by_one() -> None:
    assert not TOGETHER.fits([row("a"), row("b"), row("a", due_at="2026-05-01")])
