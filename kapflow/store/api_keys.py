"""API keys in SQL: their statements compiled once per dialect, the writes of a command, the reads of a request.

``ApiKeyWriter`` runs in a command's unit of work (``SqlUnitOfWork.api_keys``); ``ApiKeyReader``
reads one key by its public id outside any transaction, in one statement on a pooled connection
(``SqlStore.api_keys``): what verifying a request's key costs when the cache misses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Dialect, and_, bindparam, select, update
from sqlalchemy.sql import ClauseElement

from kapflow.domain.entries import to_iso
from kapflow.domain.identity import ApiKey
from kapflow.domain.payload import canonical_json
from kapflow.store.prepared import Prepared
from kapflow.store.tables import ApiKeyRow

_keys = ApiKeyRow.__table__  # type: ignore[attr-defined]
_COLUMNS = ("id", "name", "role", "delegate_roles", "key_hash", "created_at", "created_by", "revoked_at",
            "revoked_by", "last4")
_LISTED = [_keys.c[c] for c in _COLUMNS]

StoredKey = tuple[ApiKey, str]
"""A key as stored: its record and the hex hash of its text."""


class ApiKeyStatements:
    """The API keys' statements for one dialect, compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        def prep(statement: ClauseElement) -> Prepared:
            return Prepared(statement, dialect)

        self.insert = prep(_keys.insert().values({c: bindparam(c) for c in _COLUMNS}))
        self.by_id = prep(select(*_LISTED).where(_keys.c.id == bindparam("b_id")))
        self.by_name = prep(select(*_LISTED).where(_keys.c.name == bindparam("b_name")))
        self.listing = prep(select(*_LISTED).order_by(_keys.c.created_at, _keys.c.id))
        self.revoke = prep(
            update(_keys).where(and_(_keys.c.id == bindparam("b_id"), _keys.c.revoked_at.is_(None)))
            .values(revoked_at=bindparam("revoked_at"), revoked_by=bindparam("revoked_by"))
        )


@lru_cache(maxsize=8)
def statements_for(dialect: Dialect) -> ApiKeyStatements:
    """The statements of ``dialect``, compiled on first use (one engine has one dialect object)."""
    return ApiKeyStatements(dialect)


def key_from_row(row: Sequence[Any]) -> StoredKey:
    kid, name, role, delegates, key_hash, created_at, created_by, revoked_at, revoked_by, last4 = row
    record = ApiKey(
        id=str(kid), name=str(name), role=str(role), delegate_roles=tuple(json.loads(delegates)),
        created_at=datetime.fromisoformat(created_at), created_by=str(created_by),
        revoked_at=datetime.fromisoformat(revoked_at) if revoked_at is not None else None,
        last4=str(last4), revoked_by=revoked_by,
    )
    return record, str(key_hash)


def key_values(key: ApiKey, key_hash: str) -> dict[str, Any]:
    return {
        "id": key.id, "name": key.name, "role": key.role, "delegate_roles": canonical_json(list(key.delegate_roles)),
        "key_hash": key_hash, "created_at": to_iso(key.created_at), "created_by": key.created_by,
        "revoked_at": to_iso(key.revoked_at) if key.revoked_at is not None else None,
        "revoked_by": key.revoked_by, "last4": key.last4,
    }


class ApiKeyWriter:
    """A command's reads and writes of API keys, on its unit of work's cursor."""

    def __init__(
        self, statements: ApiKeyStatements, cursor: Any, rows: Callable[[Any], list[Any]],
        row_count: Callable[[Any], int],
    ) -> None:
        self._s = statements
        self._cur = cursor
        self._rows = rows  # waits for a statement's rows (on PostgreSQL: sends the pipeline first)
        self._row_count = row_count

    def find(self, key_id: str) -> StoredKey | None:
        rows = self._rows(self._s.by_id.run(self._cur, {"b_id": key_id}))
        return key_from_row(rows[0]) if rows else None

    def find_by_name(self, name: str) -> StoredKey | None:
        rows = self._rows(self._s.by_name.run(self._cur, {"b_name": name}))
        return key_from_row(rows[0]) if rows else None

    def add(self, key: ApiKey, key_hash: str) -> None:
        self._s.insert.run(self._cur, key_values(key, key_hash))

    def revoke(self, key_id: str, at: datetime, by: str) -> bool:
        """Mark an active key revoked; False if no active key has that id."""
        values = {"b_id": key_id, "revoked_at": to_iso(at), "revoked_by": by}
        return self._row_count(self._s.revoke.run(self._cur, values)) == 1


class ApiKeyReader:
    """Reads of API keys outside any command."""

    def __init__(self, statements: ApiKeyStatements, run: Callable[[Prepared, Mapping[str, Any]], list[Any]]) -> None:
        self._s = statements
        self._run = run  # the store's one-statement read on a pooled DBAPI connection

    def find(self, key_id: str) -> StoredKey | None:
        rows = self._run(self._s.by_id, {"b_id": key_id})
        return key_from_row(rows[0]) if rows else None

    def list(self) -> list[ApiKey]:
        return [key_from_row(r)[0] for r in self._run(self._s.listing, {})]
