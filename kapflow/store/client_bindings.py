"""Client bindings in SQL: which case a client identity (its subject's hash) may reach over the network.

Written by the binding command in its transaction, beside the audited event on the case; read on every
request a client makes (one primary-key lookup).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import Dialect, and_, bindparam, delete, select, update

from kapflow.store.prepared import Prepared
from kapflow.store.tables import ClientBindingRow, ClientInvitationRow

_bindings = ClientBindingRow.__table__  # type: ignore[attr-defined]
_invitations = ClientInvitationRow.__table__  # type: ignore[attr-defined]
_KEY = and_(_bindings.c.case_id == bindparam("b_case"), _bindings.c.subject_hash == bindparam("b_subject"))


class BindingStatements:
    """The statements of one dialect, compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        self.insert = Prepared(_bindings.insert().values(
            {c: bindparam(c) for c in ("case_id", "subject_hash", "bound_at", "bound_by")}), dialect)
        self.remove = Prepared(delete(_bindings).where(_KEY), dialect)
        self.find = Prepared(select(_bindings.c.case_id).where(_KEY), dialect)
        listed = select(_bindings.c.case_id, _bindings.c.subject_hash).order_by(
            _bindings.c.case_id, _bindings.c.subject_hash)
        self.every = Prepared(listed, dialect)
        self.invite = Prepared(_invitations.insert().values(
            {c: bindparam(c) for c in ("code_hash", "case_id", "created_at", "created_by", "expires_at")}), dialect)
        # Used once: the update matches only an unused, unexpired invitation, and returns its case.
        self.redeem = Prepared(
            update(_invitations)
            .where(and_(_invitations.c.code_hash == bindparam("b_code"), _invitations.c.used_at.is_(None),
                        _invitations.c.expires_at > bindparam("b_now")))
            .values(used_at=bindparam("b_now")).returning(_invitations.c.case_id), dialect)
        self.of_case = Prepared(listed.where(_bindings.c.case_id == bindparam("b_case")), dialect)
        self.of_subject = Prepared(select(_bindings.c.case_id).where(
            _bindings.c.subject_hash == bindparam("b_subject")).order_by(_bindings.c.case_id), dialect)


@lru_cache(maxsize=8)
def statements_for(dialect: Dialect) -> BindingStatements:
    return BindingStatements(dialect)


class BindingWriter:
    """The binding command's writes, on its unit of work's cursor (``rows`` waits for a read's rows)."""

    def __init__(self, statements: BindingStatements, cursor: Any, rows: Callable[[Any], list[Any]]) -> None:
        self._s = statements
        self._cur = cursor
        self._rows = rows

    def bound(self, case_id: str, subject_hash: str) -> bool:
        return bool(self._rows(self._s.find.run(self._cur, {"b_case": case_id, "b_subject": subject_hash})))

    def bind(self, case_id: str, subject_hash: str, bound_at: str, bound_by: str) -> None:
        self._s.insert.run(self._cur, {"case_id": case_id, "subject_hash": subject_hash, "bound_at": bound_at,
                                       "bound_by": bound_by})

    def unbind(self, case_id: str, subject_hash: str) -> None:
        self._s.remove.run(self._cur, {"b_case": case_id, "b_subject": subject_hash})

    def invite(self, code_hash: str, case_id: str, created_at: str, created_by: str, expires_at: str) -> None:
        self._s.invite.run(self._cur, {"code_hash": code_hash, "case_id": case_id, "created_at": created_at,
                                       "created_by": created_by, "expires_at": expires_at})

    def redeem(self, code_hash: str, now: str) -> str | None:
        """Mark the invitation used; its case, or None if unknown, used or expired (nothing changed)."""
        rows = self._rows(self._s.redeem.run(self._cur, {"b_code": code_hash, "b_now": now}))
        return str(rows[0][0]) if rows else None


class BindingReader:
    """The lookup a client's every request makes, outside any command."""

    def __init__(self, statements: BindingStatements, run: Callable[[Prepared, Mapping[str, Any]], list[Any]]) -> None:
        self._s = statements
        self._run = run

    def bound(self, case_id: str, subject_hash: str) -> bool:
        return bool(self._run(self._s.find, {"b_case": case_id, "b_subject": subject_hash}))

    def cases_of(self, subject_hash: str) -> list[str]:
        """The cases a client identity is bound to, by id."""
        return [str(c) for (c,) in self._run(self._s.of_subject, {"b_subject": subject_hash})]

    def all(self, case_id: str | None = None) -> list[tuple[str, str]]:
        """Every binding (or one case's) as (case id, subject hash), by case id: verification's."""
        one = case_id is not None
        rows = self._run(self._s.of_case if one else self._s.every, {"b_case": case_id} if one else {})
        return [(str(c), str(h)) for c, h in rows]
