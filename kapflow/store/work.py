"""The reads behind a staff member's work list, each one bounded and ordered by an index.

- Due timers: one query per status on ``ix_timers_status_due`` (status, due_at), walked in order
  and stopped at the limit (an OR or IN over statuses would sort the whole backlog instead, as
  ``SqlQueue.claim_timers`` notes), each joined to its case by primary key so that only timers of
  the reminders asked for, whose case is in one of their states now, come back; merged by
  (due_at, id) here.
- A clinician's appointments: ``ix_resource_holds_resource_starts`` (resource, starts_at), one
  range per clinician; for every clinician, the clinicians are found by seeking that index from
  one to the next (a skip scan by hand: PostgreSQL before 18 and SQLite would walk every hold).
- Failed deliveries: ``ix_outbox_status_next`` (status, next_attempt_at) with status ``dead``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, and_, or_, select, tuple_

from kapflow.domain.case import CaseRecord
from kapflow.domain.entries import to_iso
from kapflow.ports import DeadMessage, DueTimer, HeldAppointment, LedgerBacklog, WantedTimer
from kapflow.store.prepared import CASE_COLUMNS, case_read, entries_of
from kapflow.store.rows import case_from_values, with_projections
from kapflow.store.tables import CaseRow, LedgerSummaryRow, OutboxRow, ResourceHoldRow, TimerRow

_timers = TimerRow.__table__  # type: ignore[attr-defined]
_outbox = OutboxRow.__table__  # type: ignore[attr-defined]
_holds = ResourceHoldRow.__table__  # type: ignore[attr-defined]
_cases = CaseRow.__table__  # type: ignore[attr-defined]
_ledgers = LedgerSummaryRow.__table__  # type: ignore[attr-defined]

CLINICIAN = "clinician:"
_AFTER_CLINICIANS = "clinician;"  # the first text after every "clinician:..." (";" follows ":")


def _case_columns(dialect: Dialect) -> list[Any]:
    return [c.label(f"c_{c.name}") for c in case_read(dialect)]


def _with_cases(conn: Connection, result: Iterable[Any]) -> list[tuple[Any, CaseRecord]]:
    """Each row of ``result`` (with ``_case_columns``) and the case it names, its projection joined if need be."""
    rows = list(result)
    reads = with_projections([[r._mapping[f"c_{name}"] for name in CASE_COLUMNS] for r in rows],
                             lambda ids: list(conn.execute(entries_of(conn.dialect), {"ids": ids})))
    return [(r, case_from_values(read)) for r, read in zip(rows, reads, strict=True)]


class SqlWorkReader:
    """The work list's queries on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._case_columns = _case_columns(engine.dialect)

    def due_timers(
        self, wanted: Sequence[WantedTimer], statuses: Sequence[str], due_by: datetime,
        after: tuple[datetime, int] | None, limit: int,
    ) -> list[DueTimer]:
        if not wanted or not statuses or limit <= 0:
            return []
        which = or_(*(
            and_(_timers.c.reminder == w.reminder, _cases.c.workflow == w.workflow, _cases.c.state.in_(w.states))
            for w in wanted if w.states
        ))
        streams: list[list[DueTimer]] = []
        with self.engine.connect() as conn:
            for status in statuses:
                where = [_timers.c.status == status, _timers.c.due_at <= to_iso(due_by), which]
                if after is not None:
                    where.append(tuple_(_timers.c.due_at, _timers.c.id) > tuple_(to_iso(after[0]), after[1]))
                query = (
                    select(_timers.c.id, _timers.c.key, _timers.c.reminder, _timers.c.status, _timers.c.due_at,
                           _timers.c.appointment_id, *self._case_columns)
                    .select_from(_timers.join(_cases, _cases.c.id == _timers.c.case_id))
                    .where(and_(*where))
                    .order_by(_timers.c.status, _timers.c.due_at, _timers.c.id)
                    .limit(limit)
                )
                streams.append([
                    DueTimer(r.id, r.key, r.reminder, r.status, datetime.fromisoformat(r.due_at), r.appointment_id,
                             case)
                    for r, case in _with_cases(conn, conn.execute(query))
                ])
        merged = heapq.merge(*streams, key=lambda t: (t.due_at, t.id))
        return [t for _, t in zip(range(limit), merged, strict=False)]

    def clinician_appointments(self, clinician: str | None, start: datetime, end: datetime) -> list[HeldAppointment]:
        first, last = int(start.timestamp()), int(end.timestamp())
        with self.engine.connect() as conn:
            resources = [CLINICIAN + clinician] if clinician is not None else list(self._clinicians(conn))
            found: list[HeldAppointment] = []
            for resource in resources:
                query = (
                    select(_holds.c.appointment_id, _holds.c.resource, _holds.c.starts_at, *self._case_columns)
                    .select_from(_holds.join(_cases, _cases.c.id == _holds.c.case_id))
                    .where(and_(_holds.c.resource == resource, _holds.c.starts_at >= first,
                                _holds.c.starts_at < last))
                    .order_by(_holds.c.resource, _holds.c.starts_at)
                )
                found += [
                    HeldAppointment(r.appointment_id, r.resource[len(CLINICIAN):],
                                    datetime.fromtimestamp(r.starts_at, UTC), case)
                    for r, case in _with_cases(conn, conn.execute(query))
                ]
        return sorted(found, key=lambda h: (h.starts_at, h.case.id, h.appointment_id))

    def _clinicians(self, conn: Connection) -> list[str]:
        """Every clinician holding anything, one index seek each (not a walk over every hold)."""
        names: list[str] = []
        current = CLINICIAN
        while True:
            nxt = conn.execute(
                select(_holds.c.resource)
                .where(and_(_holds.c.resource > current, _holds.c.resource < _AFTER_CLINICIANS))
                .order_by(_holds.c.resource).limit(1)
            ).scalar()
            if nxt is None:
                return names
            names.append(nxt)
            current = nxt

    def dead_messages(self, after: tuple[datetime, int] | None, limit: int) -> list[DeadMessage]:
        if limit <= 0:
            return []
        where = [_outbox.c.status == "dead"]
        if after is not None:
            where.append(tuple_(_outbox.c.next_attempt_at, _outbox.c.id) > tuple_(to_iso(after[0]), after[1]))
        query = (
            select(_outbox.c.id, _outbox.c.channel, _outbox.c.audience, _outbox.c.subject, _outbox.c.next_attempt_at,
                   *self._case_columns)
            .select_from(_outbox.join(_cases, _cases.c.id == _outbox.c.case_id))
            .where(and_(*where))
            .order_by(_outbox.c.status, _outbox.c.next_attempt_at, _outbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                DeadMessage(r.id, r.channel, r.audience, r.subject, datetime.fromisoformat(r.next_attempt_at), case)
                for r, case in _with_cases(conn, conn.execute(query))
            ]

    def ledger_backlog(self, unbilled: bool, limit: int) -> list[LedgerBacklog]:
        if limit <= 0:
            return []
        oldest = _ledgers.c.oldest_unbilled if unbilled else _ledgers.c.oldest_open
        query = (  # a range of ix_ledger_summaries_unbilled (or _open): NULL, nothing to do, is not in it
            select(_ledgers.c.balance_cents, _ledgers.c.unbilled, oldest.label("oldest"), *self._case_columns)
            .select_from(_ledgers.join(_cases, _cases.c.id == _ledgers.c.case_id))
            .where(oldest.is_not(None))
            .order_by(oldest, _ledgers.c.case_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [LedgerBacklog(int(r.balance_cents), int(r.unbilled), date.fromisoformat(r.oldest), case)
                    for r, case in _with_cases(conn, conn.execute(query))]
