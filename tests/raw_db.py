"""Direct SQL on a test database, bypassing kapflow: how the tamper tests play a database insider."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from typing import Any

from sqlalchemy import create_engine, text

Params = Mapping[str, Any]


def projection_statements(case_id: str, projection: Mapping[str, Any]) -> list[tuple[str, Params]]:
    """The statements that make ``projection`` the case's stored one, by hand: its entries (``case_entries``) and
    the case row's counts of them, as an insider who knows the schema would write them."""
    statements: list[tuple[str, Params]] = [("DELETE FROM case_entries WHERE case_id = :c", {"c": case_id})]
    for section in ("facts", "moves"):
        statements += [("INSERT INTO case_entries (case_id, section, n, entry) VALUES (:c, :s, :n, :e)",
                        {"c": case_id, "s": section, "n": n,
                         "e": json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)})
                       for n, entry in enumerate(projection[section])]
    statements.append(("UPDATE cases SET fact_count = :f, move_count = :m WHERE id = :c",
                       {"f": len(projection["facts"]), "m": len(projection["moves"]), "c": case_id}))
    return statements


class RawDb:
    """Direct SQL on the database file or schema, bypassing kapflow (``:name`` parameters on both backends)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite_path = url.removeprefix("sqlite:///") if url.startswith("sqlite") else None
        self._pg = None if self.sqlite_path else create_engine(url)

    def rows(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        if self.sqlite_path:
            with closing(sqlite3.connect(self.sqlite_path)) as conn:
                return [tuple(r) for r in conn.execute(sql, dict(params or {})).fetchall()]
        assert self._pg is not None
        with self._pg.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), dict(params or {})).all()]

    def run(self, *statements: tuple[str, Params]) -> None:
        """Run the statements in one committed transaction."""
        if self.sqlite_path:
            with closing(sqlite3.connect(self.sqlite_path)) as conn, conn:
                for sql, params in statements:
                    conn.execute(sql, dict(params))
            return
        assert self._pg is not None
        with self._pg.begin() as conn:
            for sql, params in statements:
                conn.execute(text(sql), dict(params))

    def close(self) -> None:
        if self._pg is not None:
            self._pg.dispose()
