"""Fill a SQLite database fast: copies of one case that kapflow's engine really wrote.

Every row of the template case (its case row, audit rows, timers, outbox rows, projection entries) is copied under
new case ids, with the template's id replaced in every text column (timer and message keys carry
it). The copies' audit rows are interleaved (all first events, then all second events, ...), so a
case's history is spread over the table as it is in a busy practice. The hash chains of the
copies are not recomputed: they do not verify, which no measurement here depends on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

_CHUNK = 20_000
_TABLES_BY_CASE = ("audit_events", "timers", "outbox", "case_entries")
_DB_ASSIGNED = {"audit_events": "seq", "timers": "id", "outbox": "id"}


def _rows(conn: sqlite3.Connection, table: str, where: str, template: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = conn.execute(f'SELECT * FROM "{table}" WHERE {where} = ? ORDER BY rowid', (template,))
    cols = [d[0] for d in cur.description]
    return cols, cur.fetchall()


def _renamed(row: tuple[Any, ...], keep: Sequence[int], template: str, new: str) -> tuple[Any, ...]:
    return tuple(row[i].replace(template, new) if isinstance(row[i], str) else row[i] for i in keep)


def _copies(
    cols: list[str], rows: list[tuple[Any, ...]], skip: str | None, template: str, ids: Sequence[str]
) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    keep = [i for i, c in enumerate(cols) if c != skip]
    # Row-major over the template's rows: all copies of its first row, then of its second, ...
    gen = (_renamed(row, keep, template, new) for row in rows for new in ids)
    return [cols[i] for i in keep], gen


def _insert(conn: sqlite3.Connection, table: str, cols: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    names = ", ".join(f'"{c}"' for c in cols)
    sql = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(cols))})'
    count = 0
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK:
            conn.executemany(sql, chunk)
            count += len(chunk)
            chunk.clear()
    if chunk:
        conn.executemany(sql, chunk)
        count += len(chunk)
    return count


def clone_case(db: Path, template: str, ids: Sequence[str]) -> dict[str, int]:
    """Copy every row of ``template`` under each of ``ids``; returns the rows added per table."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a bulk load of a benchmark database: durability is moot
        conn.execute("BEGIN IMMEDIATE")
        added: dict[str, int] = {}
        cols, rows = _rows(conn, "cases", "id", template)
        out_cols, gen = _copies(cols, rows, None, template, ids)
        added["cases"] = _insert(conn, "cases", out_cols, gen)
        for table in _TABLES_BY_CASE:
            cols, rows = _rows(conn, table, "case_id", template)
            out_cols, gen = _copies(cols, rows, _DB_ASSIGNED.get(table), template, ids)
            added[table] = _insert(conn, table, out_cols, gen)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no ANALYZE: kapflow's databases have no statistics
        return added
    finally:
        conn.close()
