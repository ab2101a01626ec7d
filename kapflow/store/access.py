"""The access log in SQL: its statements compiled once per dialect, a command's insert, an auditor's query.

``AccessWriter`` runs in a command's unit of work (``SqlUnitOfWork.access``): one INSERT, touching no
other table, so recording a read never waits for a writer of the case. ``AccessReader`` answers
"who looked at this case this month" outside any transaction, in one statement on a pooled connection
(``SqlStore.access``), through the index on (case_id, at), or (actor, at) for one person's reads.
The sequencer places the rows in the audit log (``kapflow.store.audit_log.SOURCES``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Dialect, Integer, and_, bindparam, select, true

from kapflow.domain.access import AccessRecord
from kapflow.domain.entries import to_iso
from kapflow.store.prepared import Prepared
from kapflow.store.tables import AccessRow

_access = AccessRow.__table__  # type: ignore[attr-defined]
_COLUMNS = ("at", "actor", "role", "via", "case_id", "view")
_LISTED = [_access.c[c] for c in ("id", *_COLUMNS)]


def _terms() -> tuple[ColumnElement[bool], ...]:
    """The WHERE terms a query may have, in the order of ``Filters``."""
    return (_access.c.case_id == bindparam("b_case"), _access.c.actor == bindparam("b_actor"),
            _access.c.at >= bindparam("b_since"), _access.c.at < bindparam("b_until"))


Filters = tuple[bool, bool, bool, bool]
"""Which of case_id, actor, since and until a query names: each combination is one compiled statement."""


class AccessStatements:
    """The access log's statements for one dialect, compiled once (a query's on its first use)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.insert = Prepared(_access.insert().values({c: bindparam(c) for c in _COLUMNS}), dialect)
        self._finds: dict[Filters, Prepared] = {}

    def find(self, filters: Filters) -> Prepared:
        found = self._finds.get(filters)
        if found is None:
            terms = [term for term, wanted in zip(_terms(), filters, strict=True) if wanted]
            query = (select(*_LISTED).where(and_(true(), *terms)).order_by(_access.c.at, _access.c.id)
                     .limit(bindparam("b_limit", type_=Integer)))
            found = self._finds[filters] = Prepared(query, self.dialect)
        return found


@lru_cache(maxsize=8)
def statements_for(dialect: Dialect) -> AccessStatements:
    """The statements of ``dialect``, compiled on first use (one engine has one dialect object)."""
    return AccessStatements(dialect)


def access_values(record: AccessRecord) -> dict[str, Any]:
    return {"at": to_iso(record.at), "actor": record.actor, "role": record.role, "via": record.via,
            "case_id": record.case_id, "view": record.view}


def access_from_row(row: Sequence[Any]) -> AccessRecord:
    aid, at, actor, role, via, case_id, view = row
    return AccessRecord(datetime.fromisoformat(at), str(actor), str(role), via, str(case_id), str(view), int(aid))


class AccessWriter:
    """A command's write of the access log, on its unit of work's cursor."""

    def __init__(self, statements: AccessStatements, cursor: Any) -> None:
        self._s = statements
        self._cur = cursor

    def add(self, record: AccessRecord) -> None:
        self._s.insert.run(self._cur, access_values(record))


class AccessReader:
    """Queries of the access log outside any command."""

    def __init__(self, statements: AccessStatements, run: Callable[[Prepared, Mapping[str, Any]], list[Any]]) -> None:
        self._s = statements
        self._run = run  # the store's one-statement read on a pooled DBAPI connection

    def find(
        self, *, case_id: str | None, actor: str | None, since: datetime | None, until: datetime | None, limit: int,
    ) -> list[AccessRecord]:
        """Reads of ``case_id`` (or any case) by ``actor`` (or anyone) in [since, until), oldest first."""
        values: dict[str, Any] = {"b_limit": limit}
        if case_id is not None:
            values["b_case"] = case_id
        if actor is not None:
            values["b_actor"] = actor
        if since is not None:
            values["b_since"] = to_iso(since)
        if until is not None:
            values["b_until"] = to_iso(until)
        filters = (case_id is not None, actor is not None, since is not None, until is not None)
        return [access_from_row(r) for r in self._run(self._s.find(filters), values)]
