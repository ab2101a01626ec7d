"""The audit log's tables in SQL: placing rows in the log, its tree's nodes, checkpoints, and reading them back.

The sequencer (``kapflow.app.audit_log``) runs as a command: its unit of work calls ``LogWriter``
with the transaction's cursor. Commands never touch these tables: a new row waits with a NULL
``log_position``, found through a partial index that holds only the rows not placed yet, so the
write path gains no lock and no shared row. ``LogReader`` streams the log for verification and
reads the few nodes a proof needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect, Engine, Integer, and_, bindparam, func, select, text, update
from sqlalchemy.sql import ClauseElement

from kapflow.audit.merkle import Node
from kapflow.domain.audit_log import CheckpointRecord, LogRecord, LogSlot, LogSource
from kapflow.domain.entries import to_iso
from kapflow.store.prepared import Prepared
from kapflow.store.rows import event_from_row
from kapflow.store.tables import (
    AccessRow,
    AuditRow,
    CheckpointRow,
    DeliveryAttemptRow,
    LogEntryRow,
    LogNodeRow,
    OutboxRow,
    SignInAttemptRow,
)

_audit = AuditRow.__table__  # type: ignore[attr-defined]
_outbox = OutboxRow.__table__  # type: ignore[attr-defined]
_attempts = DeliveryAttemptRow.__table__  # type: ignore[attr-defined]
_entries = LogEntryRow.__table__  # type: ignore[attr-defined]
_nodes = LogNodeRow.__table__  # type: ignore[attr-defined]
_checkpoints = CheckpointRow.__table__  # type: ignore[attr-defined]
_access = AccessRow.__table__  # type: ignore[attr-defined]
_sign_ins = SignInAttemptRow.__table__  # type: ignore[attr-defined]

LOG_LOCK_KEY = 0x6B66_6C6F_67  # PostgreSQL's advisory lock of the one sequencer at a time ("kflog")
_MESSAGE_FIELDS = ("key", "case_id", "channel", "audience", "recipient", "subject", "body", "payload", "created_at")
_DELIVERY_FIELDS = ("outbox_id", "attempt", "at", "worker", "outcome", "detail")
_ACCESS_FIELDS = ("at", "actor", "role", "via", "case_id", "view")
_SIGN_IN_FIELDS = ("at", "name", "source", "outcome")


@dataclass(frozen=True)
class _Source:
    """One table the log covers: its id column and how one of its rows becomes a ``LogRecord``."""

    kind: LogSource
    table: Any
    key: str
    record: Callable[[Sequence[Any]], LogRecord]


def _event_record(row: Sequence[Any]) -> LogRecord:
    event = event_from_row(row)
    return LogRecord(LogSource.EVENT, int(event.seq or 0), event.hashed_fields(), event.case_id, event.case_seq)


def _record_of(kind: LogSource, table: Any, key: str, fields: Sequence[str]) -> Callable[[Sequence[Any]], LogRecord]:
    names = [c.name for c in table.columns]
    at = {name: names.index(name) for name in (key, *fields)}

    def record(row: Sequence[Any]) -> LogRecord:
        values = {name: row[at[name]] for name in fields}
        case_id = str(values.get("case_id") or "")
        return LogRecord(kind, int(row[at[key]]), values, case_id)

    return record


SOURCES: Mapping[LogSource, _Source] = {
    LogSource.EVENT: _Source(LogSource.EVENT, _audit, "seq", _event_record),
    LogSource.MESSAGE: _Source(LogSource.MESSAGE, _outbox, "id",
                               _record_of(LogSource.MESSAGE, _outbox, "id", _MESSAGE_FIELDS)),
    LogSource.DELIVERY: _Source(LogSource.DELIVERY, _attempts, "id",
                                _record_of(LogSource.DELIVERY, _attempts, "id", _DELIVERY_FIELDS)),
    LogSource.ACCESS: _Source(LogSource.ACCESS, _access, "id",
                              _record_of(LogSource.ACCESS, _access, "id", _ACCESS_FIELDS)),
    LogSource.SIGN_IN: _Source(LogSource.SIGN_IN, _sign_ins, "id",
                               _record_of(LogSource.SIGN_IN, _sign_ins, "id", _SIGN_IN_FIELDS)),
}


def _position_of(table: Any) -> int:
    return [c.name for c in table.columns].index("log_position")


class LogStatements:
    """The log's statements for one dialect, compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

        def prep(statement: ClauseElement) -> Prepared:
            return Prepared(statement, dialect)

        self.unlogged = {
            kind: prep(select(s.table).where(s.table.c.log_position.is_(None)).order_by(s.table.c[s.key])
                       .limit(bindparam("limit", type_=Integer)))
            for kind, s in SOURCES.items()
        }
        self.place = {
            kind: prep(update(s.table).where(s.table.c[s.key] == bindparam("b_id"))
                       .values(log_position=bindparam("position")))
            for kind, s in SOURCES.items()
        }
        self.size = prep(select(func.coalesce(func.max(_entries.c.position) + 1, 0)))
        self.insert_entry = prep(_entries.insert().values(
            {c: bindparam(c) for c in ("position", "source", "source_id", "case_id", "case_seq")}))
        self.insert_node = prep(_nodes.insert().values(
            level=bindparam("level"), idx=bindparam("idx"), hash=bindparam("hash")))
        self.insert_checkpoint = prep(_checkpoints.insert().values(
            {c: bindparam(c) for c in ("size", "root", "at", "key_name", "key_id", "signed_note")}))
        self.checkpoints = prep(select(_checkpoints).order_by(_checkpoints.c.id))
        self.latest_checkpoint = prep(select(_checkpoints).order_by(_checkpoints.c.id.desc()).limit(1))
        # The stored hashes of any set of subtrees in one fixed statement, compiled once: the keys travel as
        # one parameter and each is looked up by the primary key (a case's proofs need hundreds of them;
        # building an OR of that many terms cost 65 ms, the read itself under one).
        self.nodes = prep(text(
            "SELECT n.level, n.idx, n.hash FROM unnest(CAST(:levels AS smallint[]), CAST(:idxs AS bigint[])) "
            "AS k(level, idx) JOIN log_nodes n ON n.level = k.level AND n.idx = k.idx"
            if dialect.name == "postgresql" else
            "SELECT n.level, n.idx, n.hash FROM json_each(:keys) AS k JOIN log_nodes n "
            "ON n.level = json_extract(k.value, '$[0]') AND n.idx = json_extract(k.value, '$[1]')"
        ))
        self.lock: str | None = (
            f"SELECT pg_try_advisory_xact_lock({LOG_LOCK_KEY})" if dialect.name == "postgresql" else None
        )

    def nodes_values(self, keys: Collection[Node]) -> dict[str, Any]:
        """The one parameter of ``nodes``: the keys as a PostgreSQL array pair, or as JSON for SQLite."""
        ordered = sorted(keys)
        if self.dialect.name == "postgresql":
            return {"levels": [k[0] for k in ordered], "idxs": [k[1] for k in ordered]}
        return {"keys": json.dumps(ordered)}


def checkpoint_from_row(row: Sequence[Any]) -> CheckpointRecord:
    cid, size, root, at, key_name, key_id, note = row
    return CheckpointRecord(int(size), bytes(root), datetime.fromisoformat(at), key_name, key_id, note, int(cid))


def checkpoint_values(checkpoint: CheckpointRecord) -> dict[str, Any]:
    return {"size": checkpoint.size, "root": checkpoint.root, "at": to_iso(checkpoint.at),
            "key_name": checkpoint.key_name, "key_id": checkpoint.key_id, "signed_note": checkpoint.note}


def nodes_from_rows(rows: Sequence[Sequence[Any]]) -> dict[Node, bytes]:
    return {(int(level), int(idx)): bytes(h) for level, idx, h in rows}


_CHUNK = 5000


class LogReader:
    """Reads of the audit log outside any command: verification's stream, a proof's nodes, the checkpoints."""

    def __init__(
        self, engine: Engine, statements: LogStatements, run: Callable[[Prepared, Mapping[str, Any]], list[Any]]
    ) -> None:
        self._engine = engine
        self._statements = statements
        self._run = run  # the store's one-statement read on a pooled DBAPI connection

    def size(self) -> int:
        return int(self._run(self._statements.size, {})[0][0])

    def nodes(self, keys: Collection[Node]) -> dict[Node, bytes]:
        if not keys:
            return {}
        return nodes_from_rows(self._run(self._statements.nodes, self._statements.nodes_values(keys)))

    def checkpoints(self) -> list[CheckpointRecord]:
        return [checkpoint_from_row(r) for r in self._run(self._statements.checkpoints, {})]

    def unlogged(self) -> dict[LogSource, int]:
        """How many rows of each source wait for a position."""
        counts: dict[LogSource, int] = {}
        with self._engine.connect() as conn:
            for kind, source in SOURCES.items():
                query = select(func.count()).select_from(source.table).where(source.table.c.log_position.is_(None))
                counts[kind] = int(conn.execute(query).scalar_one())
        return counts

    def misplaced(self, size: int) -> dict[LogSource, int]:
        """Rows saying they sit at a position the log does not reach (its newest entries were deleted)."""
        counts: dict[LogSource, int] = {}
        with self._engine.connect() as conn:
            for kind, source in SOURCES.items():
                query = select(func.count()).select_from(source.table).where(source.table.c.log_position >= size)
                counts[kind] = int(conn.execute(query).scalar_one())
        return counts

    def slots(self, start: int = 0) -> Iterator[LogSlot]:
        """Every position from ``start``, in order, with the row it names (read a chunk at a time)."""
        position = start
        with self._engine.connect() as conn:
            while True:
                entries = conn.execute(
                    select(_entries.c.position, _entries.c.source, _entries.c.source_id, _entries.c.case_id,
                           _entries.c.case_seq)
                    .where(_entries.c.position >= position).order_by(_entries.c.position).limit(_CHUNK)
                ).all()
                if not entries:
                    return
                last = entries[-1][0]
                leaves: dict[int, bytes] = dict(conn.execute(
                    select(_nodes.c.idx, _nodes.c.hash)
                    .where(and_(_nodes.c.level == 0, _nodes.c.idx >= position, _nodes.c.idx <= last))
                ).all())
                rows = self._rows(conn, entries)
                for pos, kind, source_id, case_id, case_seq in entries:
                    record, row_position = rows.get((kind, source_id), (None, None))
                    stored = leaves.get(pos)
                    yield LogSlot(int(pos), kind, int(source_id), record, row_position,
                                  bytes(stored) if stored is not None else None, case_id or "", case_seq)
                position = last + 1

    def _rows(self, conn: Any, entries: Sequence[Any]) -> dict[tuple[str, int], tuple[LogRecord, int | None]]:
        wanted: dict[str, list[int]] = {}
        for _pos, kind, source_id, *_case in entries:
            wanted.setdefault(kind, []).append(int(source_id))
        found: dict[tuple[str, int], tuple[LogRecord, int | None]] = {}
        for kind, ids in wanted.items():
            source = SOURCES.get(LogSource(kind)) if kind in LogSource._value2member_map_ else None
            if source is None:
                continue  # an entry naming no known table: its record stays missing
            at = _position_of(source.table)
            for row in conn.execute(select(source.table).where(source.table.c[source.key].in_(ids))):
                record = source.record(tuple(row))
                found[(kind, record.id)] = (record, row[at])
        return found

    def case_positions(self, case_id: str) -> dict[int, int]:
        """Each of one case's events' log positions, by its place in the case (placed ones only)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_audit.c.case_seq, _audit.c.log_position)
                .where(and_(_audit.c.case_id == case_id, _audit.c.log_position.is_not(None)))
            ).all()
        return {int(seq): int(pos) for seq, pos in rows}

    def outbox_outcomes(self) -> Iterator[tuple[int, str, str, frozenset[str]]]:
        """Each queued message with its status and the outcomes of its delivery attempts."""
        query = (
            select(_outbox.c.id, _outbox.c.case_id, _outbox.c.status, _attempts.c.outcome)
            .select_from(_outbox.outerjoin(_attempts, _attempts.c.outbox_id == _outbox.c.id))
            .order_by(_outbox.c.id)
        )
        with self._engine.connect() as conn:
            current: tuple[int, str, str] | None = None
            outcomes: set[str] = set()
            for oid, case_id, status, outcome in conn.execution_options(yield_per=2000).execute(query):
                if current is not None and current[0] != oid:
                    yield (*current, frozenset(outcomes))
                    outcomes = set()
                current = (int(oid), case_id, status)
                if outcome is not None:
                    outcomes.add(outcome)
            if current is not None:
                yield (*current, frozenset(outcomes))


class LogWriter:
    """The sequencer's writes, on one command's cursor (``SqlUnitOfWork`` hands it its read helpers)."""

    def __init__(self, statements: LogStatements, cursor: Any, rows: Callable[[Any], list[Any]]) -> None:
        self._s = statements
        self._cur = cursor
        self._rows = rows  # waits for a statement's rows (on PostgreSQL: sends the pipeline first)

    def lock(self) -> bool:
        if self._s.lock is None:  # SQLite: this transaction holds the database's one write lock already
            return True
        self._cur.execute(self._s.lock)
        return bool(self._rows(self._cur)[0][0])

    def size(self) -> int:
        return int(self._rows(self._s.size.run(self._cur, {}))[0][0])

    def nodes(self, keys: Collection[Node]) -> dict[Node, bytes]:
        if not keys:
            return {}
        return nodes_from_rows(self._rows(self._s.nodes.run(self._cur, self._s.nodes_values(keys))))

    def unlogged(self, limit: int) -> list[LogRecord]:
        """Rows waiting for a position, oldest first within each source, at most ``limit`` of each."""
        found: list[LogRecord] = []
        for kind, statement in self._s.unlogged.items():
            found += [SOURCES[kind].record(tuple(r)) for r in self._rows(statement.run(self._cur, {"limit": limit}))]
        return found

    def append(self, start: int, records: Sequence[LogRecord], nodes: Sequence[tuple[Node, bytes]]) -> None:
        entries = [{"position": start + i, "source": str(r.source), "source_id": r.id, "case_id": r.case_id or None,
                    "case_seq": r.case_seq} for i, r in enumerate(records)]
        self._s.insert_entry.run_many(self._cur, entries)
        self._s.insert_node.run_many(self._cur, [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in nodes])
        by_source: dict[LogSource, list[dict[str, Any]]] = {}
        for i, r in enumerate(records):
            by_source.setdefault(r.source, []).append({"b_id": r.id, "position": start + i})
        for kind, rows in by_source.items():
            self._s.place[kind].run_many(self._cur, rows)

    def add_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self._s.insert_checkpoint.run(self._cur, checkpoint_values(checkpoint))

    def latest_checkpoint(self) -> CheckpointRecord | None:
        rows = self._rows(self._s.latest_checkpoint.run(self._cur, {}))
        return checkpoint_from_row(rows[0]) if rows else None
