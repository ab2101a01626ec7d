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

from sqlalchemy import Connection, Engine, and_, bindparam, create_engine, event, func, inspect, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from kapflow.domain.case import AuditEvent, CaseRecord, to_iso
from kapflow.domain.effects import Effects, OutboxMessage
from kapflow.domain.errors import StorageError
from kapflow.domain.payload import canonical_json
from kapflow.ports import DuplicateIdempotencyKey
from kapflow.store import queue
from kapflow.store.tables import AuditRow, CaseRow, IdempotencyRow

_cases = CaseRow.__table__  # type: ignore[attr-defined]
_audit = AuditRow.__table__  # type: ignore[attr-defined]
_idem = IdempotencyRow.__table__  # type: ignore[attr-defined]

_SELECT_CASE = select(_cases).where(_cases.c.id == bindparam("id"))
_INSERT_CASE = _cases.insert()
_UPDATE_CASE = (
    update(_cases)
    .where(and_(_cases.c.id == bindparam("b_id"), _cases.c.event_count == bindparam("b_expected")))
    .values(
        state=bindparam("state"),
        previous_state=bindparam("previous_state"),
        version=bindparam("version"),
        event_count=bindparam("event_count"),
        head_hash=bindparam("head_hash"),
        facts=bindparam("facts"),
        updated_at=bindparam("updated_at"),
    )
)
_INSERT_EVENT = _audit.insert()
_SELECT_IDEM = select(_idem.c.fingerprint, _idem.c.result).where(_idem.c.key == bindparam("key"))
_INSERT_IDEM = _idem.insert()
_HISTORY = select(_audit).where(_audit.c.case_id == bindparam("case_id")).order_by(_audit.c.case_seq)


def default_sqlite_url(path: str = "kapflow.db") -> str:
    return f"sqlite:///{path}"


def create_db_engine(url: str) -> Engine:
    """An SQLAlchemy engine with kapflow's durability and privacy settings."""
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        return create_engine(url, hide_parameters=True, pool_pre_ping=True)
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
def _translated() -> Iterator[None]:
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


class SqlUnitOfWork:
    """One transaction on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def load_case(self, case_id: str) -> CaseRecord | None:
        row = self._conn.execute(_SELECT_CASE, {"id": case_id}).first()
        return _case_from_row(row) if row is not None else None

    def insert_case(self, case: CaseRecord) -> None:
        self._conn.execute(
            _INSERT_CASE,
            {
                "id": case.id,
                "workflow": case.workflow,
                "workflow_version": case.workflow_version,
                "opened_at": to_iso(case.opened_at),
                **_case_values(case),
            },
        )

    def update_case(self, case: CaseRecord, *, expected_event_count: int) -> bool:
        result = self._conn.execute(
            _UPDATE_CASE, {"b_id": case.id, "b_expected": expected_event_count, **_case_values(case)}
        )
        return result.rowcount == 1

    def append_event(self, event: AuditEvent) -> int:
        result = self._conn.execute(_INSERT_EVENT, _event_values(event))
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def apply_effects(self, effects: Effects, now: datetime) -> None:
        if not effects.empty:
            queue.apply_effects(self._conn, effects, now)

    def add_outbox(self, message: OutboxMessage, now: datetime) -> bool:
        return queue.add_outbox(self._conn, message, now)

    def finish_timer(self, timer_id: int, worker: str, status: str, outcome: str, now: datetime) -> bool:
        return queue.finish_timer(self._conn, timer_id, worker, status, outcome, now)

    def find_idempotent(self, key: str) -> tuple[str, str] | None:
        row = self._conn.execute(_SELECT_IDEM, {"key": key}).first()
        return (row[0], row[1]) if row is not None else None

    def save_idempotent(self, key: str, case_id: str, fingerprint: str, result: str) -> None:
        try:
            self._conn.execute(
                _INSERT_IDEM, {"key": key, "case_id": case_id, "fingerprint": fingerprint, "result": result}
            )
        except IntegrityError:
            raise DuplicateIdempotencyKey from None

    def commit(self) -> None:
        self._conn.commit()


class SqlStore:
    """The ``Store`` port on SQLAlchemy Core."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.dialect = self.engine.dialect.name
        if create:
            self.create_schema()

    def create_schema(self) -> None:
        """Create missing tables. Looks first, so a read-only user on a ready database writes nothing."""
        with _translated():
            present = set(inspect(self.engine).get_table_names())
            if set(SQLModel.metadata.tables) <= present:
                return
            with self.engine.connect() as conn:
                conn.execution_options(kapflow_write=True)
                with conn.begin():
                    SQLModel.metadata.create_all(conn)

    @contextmanager
    def write(self) -> Iterator[SqlUnitOfWork]:
        with _translated(), self.engine.connect() as conn:
            conn.execution_options(kapflow_write=True)
            conn.begin()
            try:
                yield SqlUnitOfWork(conn)
            finally:
                if conn.in_transaction():
                    conn.rollback()

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

    def queue(self) -> queue.SqlQueue:
        return queue.SqlQueue(self.engine)

    def close(self) -> None:
        self.engine.dispose()
