"""The console's accounts in SQL: users, sessions and sign-in attempts, their statements compiled once per dialect.

``AccountWriter`` runs in a command's unit of work (``SqlUnitOfWork.accounts``); ``AccountReader``
answers outside any transaction, one statement on a pooled connection (``SqlStore.accounts``):
looking up a session on each of a browser's requests, the recent failures the rate limit counts,
the user listing, an auditor's query of attempts. The sequencer places the attempts in the audit log
(``kapflow.store.audit_log.SOURCES``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Dialect,
    Integer,
    and_,
    bindparam,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.sql import ClauseElement

from kapflow.domain.accounts import FAILURES, ConsoleSession, ConsoleUser, SignInAttempt, SignInOutcome
from kapflow.domain.entries import to_iso
from kapflow.store.prepared import Prepared
from kapflow.store.tables import ConsoleSessionRow, ConsoleUserRow, SignInAttemptRow

_users = ConsoleUserRow.__table__  # type: ignore[attr-defined]
_sessions = ConsoleSessionRow.__table__  # type: ignore[attr-defined]
_attempts = SignInAttemptRow.__table__  # type: ignore[attr-defined]

_USER_COLUMNS = ("user_id", "name", "role", "password_hash", "totp_secret", "created_at", "created_by",
                 "disabled_at")
_SESSION_COLUMNS = ("token_hash", "actor", "role", "via", "csrf", "created_at", "last_seen_at", "ended_at")
_ATTEMPT_COLUMNS = ("at", "name", "source", "outcome")
_USERS = [_users.c[c] for c in _USER_COLUMNS]
_SESSIONS = [_sessions.c[c] for c in _SESSION_COLUMNS]
_ATTEMPTS = [_attempts.c[c] for c in ("id", *_ATTEMPT_COLUMNS)]
_FAILED = sorted(str(o) for o in FAILURES)

StoredUser = tuple[ConsoleUser, str, str | None]
"""A user as stored: its record, its password's argon2id hash, and its TOTP secret (None: no TOTP)."""

StoredSession = tuple[ConsoleSession, datetime | None]
"""A session as stored: its record, and when it ended (None: open)."""


def _attempt_terms() -> tuple[ColumnElement[bool], ...]:
    """The WHERE terms an auditor's query may have, in the order of ``Filters``."""
    return (_attempts.c.name == bindparam("b_name"), _attempts.c.at >= bindparam("b_since"),
            _attempts.c.at < bindparam("b_until"))


Filters = tuple[bool, bool, bool]
"""Which of name, since and until a query names: each combination is one compiled statement."""


class AccountStatements:
    """The accounts' statements for one dialect, compiled once (an auditor's query on its first use)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

        def prep(statement: ClauseElement) -> Prepared:
            return Prepared(statement, dialect)

        self.insert_user = prep(_users.insert().values({c: bindparam(c) for c in _USER_COLUMNS}))
        self.user_by_name = prep(select(*_USERS).where(_users.c.name == bindparam("b_name")))
        self.users = prep(select(*_USERS).order_by(_users.c.name))
        self.disable_user = prep(
            update(_users).where(and_(_users.c.name == bindparam("b_name"), _users.c.disabled_at.is_(None)))
            .values(disabled_at=bindparam("disabled_at")))
        self.set_password = prep(update(_users).where(_users.c.name == bindparam("b_name"))
                                 .values(password_hash=bindparam("password_hash")))
        self.set_totp = prep(update(_users).where(_users.c.name == bindparam("b_name"))
                             .values(totp_secret=bindparam("totp_secret"), totp_last_step=None))
        self.use_totp_step = prep(
            update(_users).where(and_(_users.c.name == bindparam("b_name"),
                                      or_(_users.c.totp_last_step.is_(None),
                                          _users.c.totp_last_step < bindparam("step", type_=BigInteger))))
            .values(totp_last_step=bindparam("step", type_=BigInteger)))

        self.insert_session = prep(_sessions.insert().values({c: bindparam(c) for c in _SESSION_COLUMNS}))
        self.session = prep(select(*_SESSIONS).where(_sessions.c.token_hash == bindparam("b_hash")))
        self.touch_session = prep(
            update(_sessions).where(and_(_sessions.c.token_hash == bindparam("b_hash"),
                                         _sessions.c.ended_at.is_(None),
                                         _sessions.c.last_seen_at < bindparam("last_seen_at")))
            .values(last_seen_at=bindparam("last_seen_at")))
        self.end_session = prep(
            update(_sessions).where(and_(_sessions.c.token_hash == bindparam("b_hash"),
                                         _sessions.c.ended_at.is_(None)))
            .values(ended_at=bindparam("ended_at")))
        self.end_sessions_of = prep(
            update(_sessions).where(and_(_sessions.c.actor == bindparam("b_actor"),
                                         _sessions.c.via == bindparam("b_via"), _sessions.c.ended_at.is_(None)))
            .values(ended_at=bindparam("ended_at")))

        self.insert_attempt = prep(_attempts.insert().values({c: bindparam(c) for c in _ATTEMPT_COLUMNS}))
        # The outcomes as constants in the text (an IN list of parameters expands only when executed).
        failed = or_(*(_attempts.c.outcome == literal_column(f"'{outcome}'") for outcome in _FAILED))
        self.name_failures = prep(select(_attempts.c.at).where(and_(
            _attempts.c.name == bindparam("b_name"), _attempts.c.at > bindparam("b_since"), failed)))
        self.source_failures = prep(select(_attempts.c.at).where(and_(
            _attempts.c.source == bindparam("b_source"), _attempts.c.at > bindparam("b_since"), failed)))
        self._finds: dict[Filters, Prepared] = {}

    def find_attempts(self, filters: Filters) -> Prepared:
        found = self._finds.get(filters)
        if found is None:
            terms = [term for term, wanted in zip(_attempt_terms(), filters, strict=True) if wanted]
            query = (select(*_ATTEMPTS).where(and_(true(), *terms)).order_by(_attempts.c.at, _attempts.c.id)
                     .limit(bindparam("b_limit", type_=Integer)))
            found = self._finds[filters] = Prepared(query, self.dialect)
        return found


@lru_cache(maxsize=8)
def statements_for(dialect: Dialect) -> AccountStatements:
    """The statements of ``dialect``, compiled on first use (one engine has one dialect object)."""
    return AccountStatements(dialect)


def _instant(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def user_from_row(row: Sequence[Any]) -> StoredUser:
    user_id, name, role, password_hash, totp_secret, created_at, created_by, disabled_at = row
    user = ConsoleUser(user_id=str(user_id), name=str(name), role=str(role),
                       created_at=datetime.fromisoformat(created_at), disabled_at=_instant(disabled_at),
                       totp=totp_secret is not None, created_by=str(created_by))
    return user, str(password_hash), None if totp_secret is None else str(totp_secret)


def session_from_row(row: Sequence[Any]) -> StoredSession:
    _hash, actor, role, via, csrf, created_at, last_seen_at, ended_at = row
    session = ConsoleSession(actor=str(actor), role=str(role), via=str(via), csrf=str(csrf),
                             created_at=datetime.fromisoformat(created_at),
                             last_seen_at=datetime.fromisoformat(last_seen_at))
    return session, _instant(ended_at)


def attempt_from_row(row: Sequence[Any]) -> SignInAttempt:
    aid, at, name, source, outcome = row
    return SignInAttempt(datetime.fromisoformat(at), str(name), None if source is None else str(source),
                         SignInOutcome(outcome), int(aid))


def _failure_values(name: str, source: str | None, since: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"b_name": name, "b_since": to_iso(since)}, {"b_source": source, "b_since": to_iso(since)}


class AccountWriter:
    """A command's reads and writes of the console's accounts, on its unit of work's cursor."""

    def __init__(
        self, statements: AccountStatements, cursor: Any, rows: Callable[[Any], list[Any]],
        row_count: Callable[[Any], int],
    ) -> None:
        self._s = statements
        self._cur = cursor
        self._rows = rows  # waits for a statement's rows (on PostgreSQL: sends the pipeline first)
        self._row_count = row_count

    def find_user(self, name: str) -> StoredUser | None:
        rows = self._rows(self._s.user_by_name.run(self._cur, {"b_name": name}))
        return user_from_row(rows[0]) if rows else None

    def add_user(self, user: ConsoleUser, password_hash: str, totp_secret: str | None) -> None:
        self._s.insert_user.run(self._cur, {
            "user_id": user.user_id, "name": user.name, "role": user.role, "password_hash": password_hash,
            "totp_secret": totp_secret, "created_at": to_iso(user.created_at), "created_by": user.created_by,
            "disabled_at": None,
        })

    def disable_user(self, name: str, at: datetime) -> bool:
        """Mark an active user disabled; False if no active user has that name."""
        return self._row_count(self._s.disable_user.run(self._cur, {"b_name": name, "disabled_at": to_iso(at)})) == 1

    def set_password(self, name: str, password_hash: str) -> bool:
        values = {"b_name": name, "password_hash": password_hash}
        return self._row_count(self._s.set_password.run(self._cur, values)) == 1

    def set_totp(self, name: str, secret: str | None) -> bool:
        return self._row_count(self._s.set_totp.run(self._cur, {"b_name": name, "totp_secret": secret})) == 1

    def use_totp_step(self, name: str, step: int) -> bool:
        """Record that a code of ``step`` was accepted; False if one of this step or a later one was already."""
        return self._row_count(self._s.use_totp_step.run(self._cur, {"b_name": name, "step": step})) == 1

    def add_session(self, token_hash: str, session: ConsoleSession) -> None:
        self._s.insert_session.run(self._cur, {
            "token_hash": token_hash, "actor": session.actor, "role": session.role, "via": session.via,
            "csrf": session.csrf, "created_at": to_iso(session.created_at),
            "last_seen_at": to_iso(session.last_seen_at), "ended_at": None,
        })

    def find_session(self, token_hash: str) -> StoredSession | None:
        rows = self._rows(self._s.session.run(self._cur, {"b_hash": token_hash}))
        return session_from_row(rows[0]) if rows else None

    def touch_session(self, token_hash: str, at: datetime) -> bool:
        """Move an open session's last-seen time forward to ``at`` (never back)."""
        values = {"b_hash": token_hash, "last_seen_at": to_iso(at)}
        return self._row_count(self._s.touch_session.run(self._cur, values)) == 1

    def end_session(self, token_hash: str, at: datetime) -> bool:
        """End an open session; False if it is unknown or ended already."""
        values = {"b_hash": token_hash, "ended_at": to_iso(at)}
        return self._row_count(self._s.end_session.run(self._cur, values)) == 1

    def end_sessions_of(self, actor: str, via: str, at: datetime) -> int:
        """End every open session of ``actor`` signed in ``via``; how many."""
        values = {"b_actor": actor, "b_via": via, "ended_at": to_iso(at)}
        return self._row_count(self._s.end_sessions_of.run(self._cur, values))

    def add_attempt(self, attempt: SignInAttempt) -> None:
        self._s.insert_attempt.run(self._cur, {"at": to_iso(attempt.at), "name": attempt.name,
                                               "source": attempt.source, "outcome": str(attempt.outcome)})


class AccountReader:
    """Reads of the console's accounts outside any command."""

    def __init__(self, statements: AccountStatements, run: Callable[[Prepared, Mapping[str, Any]], list[Any]]) -> None:
        self._s = statements
        self._run = run  # the store's one-statement read on a pooled DBAPI connection

    def find_user(self, name: str) -> StoredUser | None:
        rows = self._run(self._s.user_by_name, {"b_name": name})
        return user_from_row(rows[0]) if rows else None

    def users(self) -> list[ConsoleUser]:
        return [user_from_row(r)[0] for r in self._run(self._s.users, {})]

    def find_session(self, token_hash: str) -> StoredSession | None:
        rows = self._run(self._s.session, {"b_hash": token_hash})
        return session_from_row(rows[0]) if rows else None

    def failures(self, name: str, source: str | None, since: datetime) -> tuple[list[datetime], list[datetime]]:
        """The times of the failed attempts after ``since`` for ``name``, and from ``source`` (none if None)."""
        by_name, by_source = _failure_values(name, source, since)
        names = [datetime.fromisoformat(r[0]) for r in self._run(self._s.name_failures, by_name)]
        sources = ([] if source is None else
                   [datetime.fromisoformat(r[0]) for r in self._run(self._s.source_failures, by_source)])
        return names, sources

    def attempts(
        self, *, name: str | None, since: datetime | None, until: datetime | None, limit: int,
    ) -> list[SignInAttempt]:
        """Attempts for ``name`` (None: any) in [since, until), oldest first, at most ``limit``."""
        values: dict[str, Any] = {"b_limit": limit}
        if name is not None:
            values["b_name"] = name
        if since is not None:
            values["b_since"] = to_iso(since)
        if until is not None:
            values["b_until"] = to_iso(until)
        filters = (name is not None, since is not None, until is not None)
        return [attempt_from_row(r) for r in self._run(self._s.find_attempts(filters), values)]
