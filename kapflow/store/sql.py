"""The SQL store: SQLite by default, PostgreSQL at scale. The only importer of SQLAlchemy.

The hot path uses Core statements on the SQLModel tables, built once at
import and cached compiled by SQLAlchemy; the ORM session is never on it.
SQLite runs in WAL mode with ``synchronous=FULL`` (an acknowledged
transition survives power loss) and takes its write lock up front with
``BEGIN IMMEDIATE``. Engines are created with ``hide_parameters=True`` so
bound values (names, notes) never reach logs or exception text, and every
SQLAlchemy error leaves this module as a ``StorageError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, func, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from kapflow.domain.case import AuditEvent, CaseRecord, to_iso
from kapflow.domain.effects import Effects, OutboxMessage
from kapflow.domain.errors import StorageError
from kapflow.domain.payload import canonical_json
from kapflow.domain.timers import PlannedTimer
from kapflow.ports import DuplicateIdempotencyKey
from kapflow.store import schema
from kapflow.store.prepared import CASE_COLUMNS, HotStatements
from kapflow.store.queue import SqlQueue
from kapflow.store.tables import AuditRow, CaseRow, IdempotencyRow

_cases = CaseRow.__table__  # type: ignore[attr-defined]
_audit = AuditRow.__table__  # type: ignore[attr-defined]
_idem = IdempotencyRow.__table__  # type: ignore[attr-defined]

_SELECT_CASE = select(_cases).where(_cases.c.id == bindparam("id"))
_HISTORY = select(_audit).where(_audit.c.case_id == bindparam("case_id")).order_by(_audit.c.case_seq)


def create_db_engine(url: str) -> Engine:
    """An SQLAlchemy engine with kapflow's durability and privacy settings."""
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        return create_engine(url, hide_parameters=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(f"cannot open database ({type(exc).__name__}); check the URL") from None


def _sqlite_engine(url: str) -> Engine:
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if in_memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock before reading, so a read-then-write never races.
        mode = "IMMEDIATE" if conn.get_execution_options().get("kapflow_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def _translated(dbapi_error: type[Exception] | None = None) -> Iterator[None]:
    """SQLAlchemy's errors, and the driver's own from the hot path, leave as ``StorageError`` (no values)."""
    try:
        yield
    except IntegrityError as exc:
        raise StorageError(
            f"the database refused a write ({type(exc.orig).__name__}); nothing was committed"
        ) from None
    except SQLAlchemyError as exc:
        raise StorageError(
            f"database error ({type(exc).__name__}); nothing was committed, retry later"
        ) from None
    except Exception as exc:
        if dbapi_error is not None and isinstance(exc, dbapi_error):
            raise StorageError(
                f"database error ({type(exc).__name__}); nothing was committed, retry later"
            ) from None
        raise


def _case_from_row(row: Row[Any] | Mapping[str, Any]) -> CaseRecord:
    m = row._mapping if isinstance(row, Row) else row
    return CaseRecord(
        id=m["id"],
        workflow=m["workflow"],
        workflow_version=m["workflow_version"],
        state=m["state"],
        previous_state=m["previous_state"],
        version=m["version"],
        event_count=m["event_count"],
        head_hash=m["head_hash"],
        facts=json.loads(m["facts"]),
        opened_at=datetime.fromisoformat(m["opened_at"]),
        updated_at=datetime.fromisoformat(m["updated_at"]),
    )


def _case_values(case: CaseRecord) -> dict[str, Any]:
    return {
        "workflow_version": case.workflow_version,  # changes when a case is migrated to another version
        "state": case.state,
        "previous_state": case.previous_state,
        "version": case.version,
        "event_count": case.event_count,
        "head_hash": case.head_hash,
        "facts": canonical_json(case.facts),
        "updated_at": to_iso(case.updated_at),
    }


def _event_values(ev: AuditEvent) -> dict[str, Any]:
    f = ev.hashed_fields()
    return {**f, "data": canonical_json(f["data"]), "blockers": canonical_json(f["blockers"]), "hash": ev.hash}


def event_from_row(row: Row[Any]) -> AuditEvent:
    m = row._mapping
    return AuditEvent(
        seq=m["seq"],
        case_id=m["case_id"],
        case_seq=m["case_seq"],
        at=datetime.fromisoformat(m["at"]),
        actor=m["actor"],
        role=m["role"],
        kind=m["kind"],
        trigger=m["trigger"],
        from_state=m["from_state"],
        to_state=m["to_state"],
        workflow=m["workflow"],
        workflow_version=m["workflow_version"],
        data=json.loads(m["data"]),
        blockers=tuple(json.loads(m["blockers"])),
        idempotency_key=m["idempotency_key"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


_CANCELLED = "the case left the state or the appointment changed"


class SqlUnitOfWork:
    """One transaction on one pooled DBAPI connection, running the precompiled hot statements."""

    def __init__(self, conn: Any, hot: HotStatements) -> None:
        self._conn = conn
        self._hot = hot
        self._cur = conn.cursor()
        self.committed = False

    def begin_immediate(self) -> None:
        """SQLite: take the write lock before reading, so a read-then-write never races."""
        self._cur.execute("BEGIN IMMEDIATE")

    def load_case(self, case_id: str) -> CaseRecord | None:
        row = self._hot.select_case.run(self._cur, {"id": case_id}).fetchone()
        return _case_from_row(dict(zip(CASE_COLUMNS, row, strict=True))) if row is not None else None

    def insert_case(self, case: CaseRecord) -> None:
        values = {
            "id": case.id,
            "workflow": case.workflow,
            "workflow_version": case.workflow_version,
            "opened_at": to_iso(case.opened_at),
            **_case_values(case),
        }
        self._hot.insert_case.run(self._cur, values)

    def update_case(self, case: CaseRecord, *, expected_event_count: int) -> bool:
        values = {"b_id": case.id, "b_expected": expected_event_count, **_case_values(case)}
        return int(self._hot.update_case.run(self._cur, values).rowcount) == 1

    def append_event(self, event: AuditEvent) -> None:
        self._hot.insert_event.run(self._cur, _event_values(event))

    def update_and_append(self, case: CaseRecord, event: AuditEvent, *, expected_event_count: int) -> bool:
        combined = self._hot.update_and_append
        if combined is None:  # SQLite: two local calls cost nothing to combine
            if not self.update_case(case, expected_event_count=expected_event_count):
                return False
            self.append_event(event)
            return True
        values = {"b_id": case.id, "b_expected": expected_event_count, **_case_values(case)}
        values.update({f"a_{k}": v for k, v in _event_values(event).items()})
        return int(combined.run(self._cur, values).rowcount) == 1

    def apply_effects(self, effects: Effects, now: datetime) -> None:
        if effects.empty:
            return
        stamp = to_iso(now)
        if effects.cancel:
            rows = [{"b_key": k, "updated_at": stamp, "outcome": _CANCELLED} for k in effects.cancel]
            self._hot.cancel_timer.run_many(self._cur, rows)
        # Booked too late for a reminder that counts back: sending it now would only add noise.
        plan = [t for t in effects.plan if not (t.counts_back and t.due_at < now)]
        if plan:
            self._hot.plan_timer.run_many(self._cur, [_timer_values(t, stamp) for t in plan])
        for message in effects.outbox:
            self.add_outbox(message, now)

    def add_outbox(self, message: OutboxMessage, now: datetime) -> bool:
        stamp = to_iso(now)
        values = {
            "key": message.key, "case_id": message.case_id, "channel": message.channel,
            "audience": message.audience, "recipient": message.recipient, "subject": message.subject,
            "body": message.body, "payload": canonical_json(dict(message.payload)), "status": "pending",
            "attempts": 0, "next_attempt_at": stamp, "created_at": stamp,
        }
        return int(self._hot.insert_outbox.run(self._cur, values).rowcount) == 1

    def finish_timer(self, timer_id: int, worker: str, status: str, outcome: str, now: datetime) -> bool:
        values = {"b_id": timer_id, "b_worker": worker, "status": status, "outcome": outcome[:500],
                  "updated_at": to_iso(now)}
        return int(self._hot.finish_timer.run(self._cur, values).rowcount) == 1

    def find_idempotent(self, key: str) -> tuple[str, str] | None:
        row = self._hot.select_idem.run(self._cur, {"key": key}).fetchone()
        return (str(row[0]), str(row[1])) if row is not None else None

    def save_idempotent(self, key: str, case_id: str, fingerprint: str, result: str) -> None:
        values = {"key": key, "case_id": case_id, "fingerprint": fingerprint, "result": result}
        try:
            self._hot.insert_idem.run(self._cur, values)
        except Exception as exc:
            if _is_integrity_error(exc):
                raise DuplicateIdempotencyKey from None
            raise

    def commit(self) -> None:
        self._conn.commit()
        self.committed = True


def _timer_values(t: PlannedTimer, stamp: str) -> dict[str, Any]:
    return {
        "key": t.key, "case_id": t.case_id, "reminder": t.reminder, "appointment_id": t.appointment_id,
        "due_at": to_iso(t.due_at), "status": "pending", "created_at": stamp, "updated_at": stamp, "b_now": stamp,
    }


def _is_integrity_error(exc: Exception) -> bool:
    # The DBAPI's own class (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) under PEP 249's name.
    return any(cls.__name__ == "IntegrityError" for cls in type(exc).__mro__)


class SqlStore:
    """The ``Store`` port on SQLAlchemy Core."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.dialect = self.engine.dialect.name
        self._hot = HotStatements(self.engine.dialect)
        self._dbapi_error: type[Exception] = self.engine.dialect.dbapi.Error  # type: ignore[union-attr]
        if create:
            self.create_schema()

    def create_schema(self) -> None:
        """Create or upgrade the schema. Looks first, so a read-only user on a ready database writes nothing."""
        try:
            if not schema.at_head(self.engine):
                schema.upgrade(self.engine)
        except StorageError:
            self.engine.dispose()  # a store that cannot start must not keep pooled connections open
            raise

    @contextmanager
    def write(self) -> Iterator[SqlUnitOfWork]:
        # The pool's DBAPI connection directly: SQLAlchemy's Connection would add tens of
        # microseconds of events and bookkeeping to every command (see prepared.py).
        with _translated(self._dbapi_error):
            conn = self.engine.raw_connection()
            uow: SqlUnitOfWork | None = None
            broken = False
            try:
                uow = SqlUnitOfWork(conn, self._hot)
                if self.dialect == "sqlite":
                    uow.begin_immediate()
                yield uow
            except self._dbapi_error:
                # No pre-ping on checkout (a round trip per command): a connection that failed is
                # dropped from the pool instead, and the caller's retry gets a fresh one.
                broken = True
                conn.invalidate()
                raise
            finally:
                try:
                    if not broken and (uow is None or not uow.committed):
                        conn.rollback()
                finally:
                    conn.close()  # back to the pool

    def get_case(self, case_id: str) -> CaseRecord | None:
        with _translated(), self.engine.connect() as conn:
            row = conn.execute(_SELECT_CASE, {"id": case_id}).first()
            return _case_from_row(row) if row is not None else None

    def list_cases(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Sequence[CaseRecord]:
        query = select(_cases).order_by(_cases.c.opened_at, _cases.c.id).limit(limit).offset(offset)
        if state is not None:
            query = query.where(_cases.c.state == state)
        with _translated(), self.engine.connect() as conn:
            return [_case_from_row(r) for r in conn.execute(query)]

    def count_cases(self, *, state: str | None = None) -> int:
        query = select(func.count()).select_from(_cases)
        if state is not None:
            query = query.where(_cases.c.state == state)
        with _translated(), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def history(self, case_id: str) -> Sequence[AuditEvent]:
        with _translated(), self.engine.connect() as conn:
            return [event_from_row(r) for r in conn.execute(_HISTORY, {"case_id": case_id})]

    def iter_audit(self, case_id: str | None = None) -> Iterator[AuditEvent]:
        query = select(_audit).order_by(_audit.c.case_id, _audit.c.case_seq)
        if case_id is not None:
            query = query.where(_audit.c.case_id == case_id)
        with _translated(), self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield event_from_row(row)

    def iter_cases(self) -> Iterator[CaseRecord]:
        query = select(_cases).order_by(_cases.c.id)
        with _translated(), self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield _case_from_row(row)

    def queue(self) -> SqlQueue:
        return SqlQueue(self.engine)

    def close(self) -> None:
        self.engine.dispose()
