"""A command's transaction on one DBAPI connection: the precompiled hot statements, nothing else.

``SqlUnitOfWork`` runs each statement and waits for it (SQLite: every call is
local). On PostgreSQL through psycopg 3, ``PipelinedUnitOfWork`` sends a
command's writes and its COMMIT together in psycopg's pipeline mode, so the
command waits for the server when it reads, when it needs a row count, and once
at the commit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NoReturn

from kapflow.domain.billing import LedgerSummary
from kapflow.domain.case import AuditEvent, CaseRecord, Snapshot
from kapflow.domain.effects import Effects, OutboxMessage
from kapflow.domain.entries import ENTRY_INDEX, INDEX_FROM, SNAPSHOT_EVERY, Entries, EntryIndex, EntryLoader, to_iso
from kapflow.domain.events import DeliveryOutcome, TimerStatus
from kapflow.domain.payload import canonical_json
from kapflow.domain.slots import Hold, HoldChanges
from kapflow.domain.timers import PlannedTimer
from kapflow.errors import DuplicateIdempotencyKey, LostRace, StorageError
from kapflow.ports import OutboxClaim
from kapflow.store.access import AccessWriter
from kapflow.store.access import statements_for as access_statements
from kapflow.store.accounts import AccountWriter
from kapflow.store.accounts import statements_for as account_statements
from kapflow.store.api_keys import ApiKeyWriter, statements_for
from kapflow.store.audit_log import LogStatements, LogWriter
from kapflow.store.client_bindings import BindingWriter
from kapflow.store.client_bindings import statements_for as binding_statements
from kapflow.store.prepared import HotStatements, places_value
from kapflow.store.recent import RecentProjections
from kapflow.store.rows import (
    ENTRY_KEYS,
    FACT_COUNT_COLUMN,
    ID_COLUMN,
    case_values,
    entry_rows,
    event_values,
    read_entries,
)
from kapflow.store.tables import AuditRow, IdempotencyRow, ResourceHoldRow

_idem = IdempotencyRow.__table__  # type: ignore[attr-defined]
_holds = ResourceHoldRow.__table__  # type: ignore[attr-defined]
_audit = AuditRow.__table__  # type: ignore[attr-defined]

_CANCELLED = "the case left the state or the appointment changed"
_MAX_ERROR = 500


class SqlUnitOfWork:
    """One transaction on one pooled DBAPI connection, running the precompiled hot statements.

    ``loader_for(case_id)``: where a case read in part (``Entries.partial``: a long case's facts past the store's
    index of them) reads its other facts' texts when a query reaches them, in this transaction or a later one
    (the store's); without it, cases are read whole.
    """

    def __init__(
        self, conn: Any, hot: HotStatements, recent: RecentProjections, log: LogStatements | None = None,
        loader_for: Callable[[str], EntryLoader] | None = None,
    ) -> None:
        self._conn = conn
        self._hot = hot
        self._recent = recent
        self._log = log
        self._loader_for = loader_for
        self._read_entries = hot.select_entries if loader_for is not None else hot.select_all_entries
        self._cur = self._new_cursor()
        self.committed = False
        self.written: dict[str, CaseRecord] = {}  # each case's last record written here, for ``recent``
        self._holding = ""  # the case whose holds this transaction adds, if any (a lost race names it)
        # Cases loaded from the store's kept records, not yet proven current: id -> the copy's event count.
        self._copies: dict[str, int] = {}
        # Each case's projection as its entries in the store hold it (read or written here): a write adds what
        # the case's new record appended to it (``rows.entry_rows``).
        self._stored: dict[str, Mapping[str, Any]] = {}

    def _new_cursor(self) -> Any:
        return self._conn.cursor()

    def begin_immediate(self) -> None:
        """SQLite: take the write lock before reading, so a read-then-write never races."""
        self._cur.execute("BEGIN IMMEDIATE")

    def load_case(self, case_id: str, *, current: bool = False) -> CaseRecord | None:
        """The case, locked for this transaction on PostgreSQL; None if there is none.

        Unless ``current`` is asked, a case this store committed last is not read at all: its kept record
        is returned, and the write that changes it proves it current (the compare-and-swap on the event
        count), or ``verify_copies`` does before the commit. A copy found stale raises ``LostRace``: the
        runner runs the command again, on the row this time.
        """
        if not current:
            kept = self._recent.latest(case_id)
            if kept is not None:
                self._copies[case_id] = kept.event_count
                self._stored[case_id] = kept.facts
                return kept
        self._copies.pop(case_id, None)
        return self._case_of(*self._queue_read(case_id))

    def _queue_read(self, case_id: str) -> tuple[Any, Any, Any]:
        """Send (PostgreSQL: queue) the read of the case row, locked, and then of its entries: their cursors, and
        one for its kept views' snapshots where reading them with the row saves a wait (None: read if need be)."""
        row = self._hot.select_case.run(self._new_cursor(), {"id": case_id})
        return row, self._read_entries.run(self._new_cursor(), {"id": case_id}), None

    def _case_of(self, row_cursor: Any, entries_cursor: Any, views_cursor: Any) -> CaseRecord | None:
        """The record of a case read in this transaction (``_queue_read``), its projection joined from its entries
        (of a long case's facts, those past the store's index of them) and, for a case with enough facts to have
        any, its kept views' snapshots."""
        row = self._arrived_row(row_cursor)  # on PostgreSQL: the wait for both
        entries = entries_cursor.fetchall()
        views = views_cursor.fetchall() if views_cursor is not None else None
        for cursor in (row_cursor, entries_cursor, views_cursor):
            if cursor is not None:
                cursor.close()
        if row is None:
            return None
        case_id, fact_count = row[ID_COLUMN], row[FACT_COUNT_COLUMN]
        read = None
        loader = self._loader_for
        if loader is not None and fact_count >= INDEX_FROM and _facts_read(entries, fact_count) < fact_count:
            views = views if views is not None else self._views(case_id)
            index = _entry_index(views)  # the facts read start past it
            read = read_entries(row, entries, index, loader(case_id)) if index is not None else None
            if read is None:  # not as its index says (a hand's edit): all read
                entries = self._all_rows(self._hot.select_all_entries.run(self._new_cursor(), {"id": case_id}))
        if read is None:
            read = read_entries(row, entries, None, None)
            assert read is not None  # a whole read always is
        case = self._recent.case(row, read)
        self._stored[case.id] = case.facts
        # A case of fewer facts has no snapshot; nor is one needed for a projection kept parsed.
        if case.parsed_projection() is None and fact_count >= SNAPSHOT_EVERY:
            views = views if views is not None else self._views(case_id)
            case = replace(case, views={str(name): Snapshot(int(count), str(body)) for name, count, body in views})
        return case

    def _views(self, case_id: str) -> list[Any]:
        return self._all_rows(self._hot.select_views.run(self._new_cursor(), {"id": case_id}))

    def entry_texts(self, case_id: str, places: Sequence[int], holding: str | None = None) -> list[str | None]:
        """The texts of the case's facts at ``places``, in that order (with ``holding``, None for each that holds
        neither it nor a backslash: ``Entries.holding``); ``StorageError`` if a row is missing (only a hand deletes
        one: the command that asked is not committed)."""
        values = {"id": case_id, "places": places_value(self._hot.dialect, places)}
        if holding is None:
            rows = self._all_rows(self._hot.select_entry_texts.run(self._new_cursor(), values))
        else:
            rows = self._all_rows(self._hot.select_entry_texts_holding.run(self._new_cursor(),
                                                                            {**values, "holding": holding}))
        found = {int(n): None if text is None else str(text) for n, text in rows}
        if len(found) != len(set(places)):
            raise StorageError(f"{len(set(places)) - len(found)} of the projection entries of case {case_id} are "
                               "missing from the database (deleted by hand): run kapflow audit verify, and restore "
                               "the database from a backup")
        return [found[n] for n in places]

    def verify_copies(self) -> None:
        """Prove current every kept copy this transaction used and did not swap: ``LostRace`` if one is stale.

        Its row is read (and locked, on PostgreSQL, until the commit), so what the command decided from the
        copy holds when it commits; a stale copy is forgotten, so the command's next run reads the row.
        """
        if self.committed:
            return
        for case_id, count in list(self._copies.items()):
            row = self._first_row(self._hot.select_event_count.run(self._cur, {"id": case_id}))
            if row is None or int(row[0]) != count:
                self._stale(case_id)
        self._copies.clear()

    def _stale(self, case_id: str) -> NoReturn:
        self._copies.pop(case_id, None)
        self._recent.forget(case_id)
        raise LostRace(case_id)

    def _swapped(self, case_id: str, matched: bool) -> bool:
        """A compare-and-swap's verdict on ``case_id``: it proves a kept copy current, or stale (``LostRace``)."""
        if case_id in self._copies:
            if not matched:
                self._stale(case_id)
            del self._copies[case_id]
        return matched

    def prefetch_case(self, case_id: str) -> None:
        """Nothing to gain where every statement is waited for: ``load_case`` reads it when asked."""

    def insert_case(self, case: CaseRecord) -> None:
        values = {
            "id": case.id,
            "workflow": case.workflow,
            "workflow_version": case.workflow_version,
            "opened_at": to_iso(case.opened_at),
            **case_values(case),
        }
        self._hot.insert_case.run(self._cur, values)
        self._hot.insert_entry.run_many(self._cur, entry_rows(case.id, None, case.facts) or [])
        self._stored[case.id] = case.facts
        self.written[case.id] = case

    def update_case(self, case: CaseRecord, *, expected_event_count: int) -> bool:
        values = {"b_id": case.id, "b_expected": expected_event_count, **case_values(case)}
        matched = self._row_count(self._hot.update_case.run(self._cur, values)) == 1
        return self._wrote(case, self._swapped(case.id, matched))

    def append_event(self, event: AuditEvent) -> None:
        self._hot.insert_event.run(self._cur, event_values(event))

    def update_and_append(self, case: CaseRecord, event: AuditEvent, *, expected_event_count: int) -> bool:
        combined = self._hot.update_and_append
        if combined is None:  # SQLite: two local calls cost nothing to combine
            if not self.update_case(case, expected_event_count=expected_event_count):
                return False
            self.append_event(event)
            return True
        cursor = combined.run(self._cur, _swap_values(case, event, expected_event_count))
        return self._wrote(case, self._swapped(case.id, self._row_count(cursor) == 1))

    def apply_effects(self, effects: Effects, now: datetime) -> None:
        if effects.empty:
            return
        stamp = to_iso(now)
        if effects.cancel:
            rows = [{"b_key": k, "updated_at": stamp, "outcome": _CANCELLED} for k in effects.cancel]
            self._hot.cancel_timer.run_many(self._cur, rows)
        if effects.plan or effects.skip:
            rows = [_timer_values(t, stamp) for t in effects.plan]
            rows += [_timer_values(s.timer, stamp, TimerStatus.SKIPPED, s.reason) for s in effects.skip]
            self._hot.plan_timer.run_many(self._cur, rows)
        if effects.retime:
            rows = [{"b_key": t.key, "due_at": to_iso(t.due_at), "updated_at": stamp} for t in effects.retime]
            self._hot.retime_timer.run_many(self._cur, rows)
        for message in effects.outbox:  # a key already queued is skipped; nobody needs to know here
            self._hot.insert_outbox.run(self._cur, _outbox_values(message, now))

    def add_outbox(self, message: OutboxMessage, now: datetime) -> bool:
        return self._row_count(self._hot.insert_outbox.run(self._cur, _outbox_values(message, now))) == 1

    def finish_timer(self, timer_id: int, worker: str, status: str, outcome: str, now: datetime) -> bool:
        values = {"b_id": timer_id, "b_worker": worker, "status": status, "outcome": outcome[:500],
                  "updated_at": to_iso(now)}
        return self._row_count(self._hot.finish_timer.run(self._cur, values)) == 1

    def fail_timer(
        self, timer_id: int, worker: str, attempts: int, outcome: str, now: datetime, retry_at: datetime | None
    ) -> bool:
        values = {
            "b_id": timer_id, "b_worker": worker, "status": "claimed" if retry_at else TimerStatus.FAILED.value,
            "outcome": outcome[:500], "updated_at": to_iso(now), "attempts": attempts,
            "lease_until": to_iso(retry_at) if retry_at else None,
        }
        return self._row_count(self._hot.fail_timer.run(self._cur, values)) == 1

    def settle_outbox(
        self, claim: OutboxClaim, worker: str, now: datetime, outcome: DeliveryOutcome, *,
        detail: str = "", retry_at: datetime | None = None,
    ) -> bool:
        status = {DeliveryOutcome.SENT: "sent", DeliveryOutcome.FAILED: "pending", DeliveryOutcome.GAVE_UP: "dead",
                  DeliveryOutcome.DROPPED: "dropped"}
        sent = outcome == DeliveryOutcome.SENT
        values = {
            "b_id": claim.id, "b_worker": worker, "status": status[outcome],
            "sent_at": to_iso(now) if sent else None, "last_error": None if sent else detail[:_MAX_ERROR],
            "next_attempt_at": to_iso(retry_at) if retry_at is not None else None,
        }
        if self._row_count(self._hot.settle_outbox.run(self._cur, values)) != 1:
            return False
        self._hot.insert_attempt.run(self._cur, {
            "outbox_id": claim.id, "attempt": claim.attempts, "at": to_iso(now), "worker": worker,
            "outcome": str(outcome), "detail": detail[:_MAX_ERROR] or None,
        })
        return True

    def find_taken(self, holds: Sequence[Hold]) -> list[Hold]:
        lock = self._hot.lock_resource
        if lock is not None:  # PostgreSQL: one booking of a resource at a time (prepared.py), in a fixed order
            for resource in sorted({h.resource for h in holds}):
                lock.run(self._cur, {"resource": resource})
        found: list[Hold] = []
        for hold in holds:
            values = {"b_resource": hold.resource, "b_starts": _seconds(hold.starts_at),
                      "b_ends": _seconds_up(hold.ends_at), "b_case": hold.case_id, "b_appointment": hold.appointment_id}
            found += [_hold_from_row(row) for row in self._all_rows(self._hot.select_taken.run(self._cur, values))]
        return found

    def apply_holds(self, changes: HoldChanges) -> None:
        if changes.release:
            self._hot.release_holds.run_many(
                self._cur, [{"b_case": changes.case_id, "b_appointment": a} for a in changes.release]
            )
        if not changes.hold:
            return
        self._holding = changes.case_id
        try:
            self._hot.insert_hold.run_many(self._cur, [_hold_values(h) for h in changes.hold])
        except Exception as exc:
            if _is_integrity_error(exc):  # PostgreSQL's exclusion constraint: another command took it first
                raise LostRace(changes.case_id) from None
            raise

    def index_words(self, case_id: str, words: Collection[str], *, replacing: bool) -> None:
        """The words of the case's client name (``replacing``: instead of those it had)."""
        if replacing:
            self._hot.delete_words.run(self._cur, {"b_case": case_id})
        if words:
            self._hot.insert_word.run_many(self._cur, [{"word": w, "case_id": case_id} for w in sorted(words)])

    def put_ledger_summary(self, case_id: str, summary: LedgerSummary) -> None:
        """The case's ledger summary, instead of the one it had."""
        self._hot.put_ledger.run(self._cur, {
            "case_id": case_id, "balance_cents": summary.balance_cents, "unbilled": summary.unbilled,
            "oldest_unbilled": summary.oldest_unbilled.isoformat() if summary.oldest_unbilled else None,
            "oldest_open": summary.oldest_open.isoformat() if summary.oldest_open else None,
        })

    def log(self) -> LogWriter:
        """The audit log's writes (the sequencer's), in this transaction."""
        if self._log is None:
            raise RuntimeError("this unit of work was opened without the audit log's statements")
        return LogWriter(self._log, self._cur, self._all_rows)

    def api_keys(self) -> ApiKeyWriter:
        """The API keys' reads and writes, in this transaction."""
        if self._log is None:
            raise RuntimeError("this unit of work was opened without its dialect's statements")
        return ApiKeyWriter(statements_for(self._log.dialect), self._cur, self._all_rows, self._row_count)

    def access(self) -> AccessWriter:
        """The access log's insert, in this transaction (reads and locks nothing else)."""
        if self._log is None:
            raise RuntimeError("this unit of work was opened without its dialect's statements")
        return AccessWriter(access_statements(self._log.dialect), self._cur)

    def client_bindings(self) -> BindingWriter:
        """The client bindings' writes, in this transaction."""
        if self._log is None:
            raise RuntimeError("this unit of work was opened without its dialect's statements")
        return BindingWriter(binding_statements(self._log.dialect), self._cur, self._all_rows)

    def accounts(self) -> AccountWriter:
        """The console's users, sessions and sign-in attempts, in this transaction."""
        if self._log is None:
            raise RuntimeError("this unit of work was opened without its dialect's statements")
        return AccountWriter(account_statements(self._log.dialect), self._cur, self._all_rows, self._row_count)

    def find_idempotent(self, key: str) -> tuple[str, str] | None:
        row = self._first_row(self._hot.select_idem.run(self._cur, {"key": key}))
        return (str(row[0]), str(row[1])) if row is not None else None

    def save_idempotent(self, key: str, case_id: str, fingerprint: str, result: str) -> None:
        try:
            self._hot.insert_idem.run(self._cur, _idempotency_values(key, case_id, fingerprint, result))
        except Exception as exc:
            if _is_integrity_error(exc):
                raise DuplicateIdempotencyKey from None
            raise

    def commit(self) -> None:
        self._conn.commit()
        self.committed = True

    def abandon(self) -> bool:
        """Before a rollback: True if the connection can take it (always, without a pipeline)."""
        return True

    def _wrote(self, case: CaseRecord, matched: bool) -> bool:
        if matched:
            self._write_entries(case)
            self.written[case.id] = case
        return matched

    def _write_entries(self, case: CaseRecord) -> None:
        """Add the entries ``case`` appended to its stored projection; a record not folded from the one stored
        (or whose stored one this transaction did not read) has its entries written anew."""
        stored = self._stored.get(case.id)
        rows = entry_rows(case.id, stored, case.facts) if stored is not None else None
        if rows is None:
            rows = entry_rows(case.id, None, case.facts) or []  # first: texts not read yet are read from there
            self._hot.delete_entries.run(self._cur, {"b_case": case.id})
            self._hot.delete_views.run(self._cur, {"b_case": case.id})  # they covered the entries that were
        if rows:
            self._hot.insert_entry.run_many(self._cur, rows)
        self._stored[case.id] = case.facts
        projection = case.parsed_projection()  # none: no command read it, so no view of it was worked out
        indexing = case.index_due()  # the command worked out every kept view for it (``Transaction``)
        due = projection.snapshots_due(with_index=indexing) if projection is not None else {}
        facts = case.facts["facts"]
        if indexing and isinstance(facts, Entries):
            index = facts.next_index(ENTRY_KEYS["facts"])
            due[ENTRY_INDEX] = Snapshot(index.size, index.body())
            facts.indexed(index)
            # Every snapshot left then covers the facts up to the index at least (those written now, all of them):
            # a read past it steps each by facts it read.
            self._hot.delete_views_before.run(self._cur, {"b_case": case.id, "b_count": index.size})
        if due:
            self._hot.put_view.run_many(self._cur, [
                {"case_id": case.id, "name": name, "fact_count": snapshot.fact_count, "body": snapshot.body}
                for name, snapshot in due.items()])

    def _row_count(self, cursor: Any) -> int:
        return int(cursor.rowcount)

    def _first_row(self, cursor: Any) -> Any:
        return cursor.fetchone()

    def _arrived_row(self, cursor: Any) -> Any:
        """The row of a read sent earlier (``_queue_read``)."""
        return cursor.fetchone()

    def _all_rows(self, cursor: Any) -> list[Any]:
        return list(cursor.fetchall())


class PipelinedUnitOfWork(SqlUnitOfWork):
    """PostgreSQL on psycopg 3: a command waits for the server when it reads, and once at the commit.

    The whole transaction runs in psycopg's pipeline mode, BEGIN included. The connection is in
    autocommit mode while a unit of work has it, so psycopg sends no BEGIN of its own (it would
    wait for that one even in a pipeline); the unit of work queues BEGIN first instead. A read
    (the case row FOR UPDATE, an idempotency key) sends what is queued and waits for its row, so
    BEGIN and the read share one round trip. Statements queue in libpq's buffer and leave
    together at each wait (``batched_cursor``) and when a compare-and-swap is queued (``_send_queued``:
    the server starts on it while the client works out the rest). Writes are queued without waiting,
    and ``commit`` queues COMMIT and leaves the pipeline, whose Sync is the one wait for all of them:
    a fire waits for the server twice. If any statement fails, the server skips everything after it,
    COMMIT included, and the error is raised by the next call that reads results (``commit`` at
    the latest). A write whose row count the caller needs (``finish_timer``, ``add_outbox``, a
    compare-and-swap on a row not locked here) waits for it. ``SqlStore`` turns autocommit off
    again before a connection goes back to its pool.

    The compare-and-swap does not wait: ``load_case`` reads the case row FOR UPDATE, so until
    this transaction ends nobody else can change it, and the swap matches exactly when the
    expected count is the one read (``_held`` tracks it through this transaction's own writes).
    Its statement also makes a miss abort the transaction, so a wrong prediction commits nothing.
    """

    def __init__(
        self, conn: Any, hot: HotStatements, recent: RecentProjections, log: LogStatements | None = None,
        loader_for: Callable[[str], EntryLoader] | None = None,
    ) -> None:
        super().__init__(conn, hot, recent, log, loader_for)
        self._held: dict[str, int] = {}  # case id -> its event count, for rows locked by this transaction
        # Kept copies whose compare-and-swap was queued without waiting: the commit proves them, or fails.
        self._queued_copies: set[str] = set()
        self._ahead: tuple[str, Any, Any, Any] | None = None  # a case read queued by prefetch_case, and its cursors
        driver = conn.driver_connection
        if not driver.autocommit:
            driver.autocommit = True
        self._leave_pipeline: Any = driver.pipeline()  # the context manager of pipeline mode
        self._pipeline: Any = self._leave_pipeline.__enter__()  # psycopg's Pipeline, until the end
        self._cur.execute("BEGIN", prepare=False)  # queued: sent with the first read or at the commit

    def _new_cursor(self) -> Any:
        # Statements wait in libpq's buffer and leave together at the next wait (batched_cursor.py).
        # psycopg is the postgres extra's: imported only where a store runs on it.
        from kapflow.store.batched_cursor import batched_cursor

        return batched_cursor(self._conn.driver_connection)

    def _queue_read(self, case_id: str) -> tuple[Any, Any, Any]:
        """The row and its entries, and its kept views' snapshots in the same round trip: read after the row, they
        would cost a wait of their own on a case with any (one statement more, and no rows, on a new case)."""
        row, entries, _none = super()._queue_read(case_id)
        return row, entries, self._hot.select_views.run(self._new_cursor(), {"id": case_id})

    def load_case(self, case_id: str, *, current: bool = False) -> CaseRecord | None:
        ahead, self._ahead = self._ahead, None
        if not current and (ahead is None or ahead[0] != case_id) and case_id in self._recent:
            case = super().load_case(case_id)  # the kept copy: its swap is queued as if the row were held
            if case is not None:
                self._held[case_id] = case.event_count
            return case
        if ahead is not None and ahead[0] == case_id:
            case = self._case_of(*ahead[1:])
        else:
            case = super().load_case(case_id, current=True)
        if case is not None:
            self._held[case_id] = case.event_count
        return case

    def prefetch_case(self, case_id: str) -> None:
        """Queue the read of the case row (on a cursor of its own), to travel with the next read; nothing
        for a case whose kept copy the command will start from."""
        if case_id in self._recent:
            return
        self._ahead = (case_id, *self._queue_read(case_id))

    def update_case(self, case: CaseRecord, *, expected_event_count: int) -> bool:
        matched = super().update_case(case, expected_event_count=expected_event_count)
        if matched:
            self._held[case.id] = case.event_count
        return matched

    def update_and_append(self, case: CaseRecord, event: AuditEvent, *, expected_event_count: int) -> bool:
        if self._held.get(case.id) != expected_event_count or event.case_id != case.id:
            return self._update_and_append_waiting(case, event, expected_event_count)
        assert self._hot.update_and_append_locked is not None
        self._hot.update_and_append_locked.run(self._cur, _swap_values(case, event, expected_event_count))
        self._held[case.id] = case.event_count
        if self._copies.pop(case.id, None) is not None:
            self._queued_copies.add(case.id)  # a miss fails the commit: then the copy was stale
        wrote = self._wrote(case, True)
        self._send_queued()
        return wrote

    def _update_and_append_waiting(self, case: CaseRecord, event: AuditEvent, expected_event_count: int) -> bool:
        """A row this transaction has not locked (or not at this count): the row count is the verdict."""
        matched = super().update_and_append(case, event, expected_event_count=expected_event_count)
        if matched:
            self._held[case.id] = case.event_count  # the UPDATE locked the row
        return matched

    def save_idempotent(self, key: str, case_id: str, fingerprint: str, result: str) -> None:
        # Queued: a key stored meanwhile fails it at the commit, which raises DuplicateIdempotencyKey
        # (not here: an error read now could be an earlier statement's).
        self._hot.insert_idem.run(self._cur, _idempotency_values(key, case_id, fingerprint, result))

    def commit(self) -> None:
        # COMMIT as the pipeline's last statement: leaving the pipeline sends the Sync that runs
        # it and waits for every result. A failed statement before it makes the server skip it.
        failure: Exception | None = None
        try:
            self._cur.execute("COMMIT", prepare=False)
        except Exception as exc:  # an earlier statement's error, read while COMMIT was sent
            failure = exc
        try:
            self._exit_pipeline()
        except Exception as exc:
            failure = failure or exc
        if failure is not None:
            if _is_integrity_error(failure) and _failed_table(failure) == _idem.name:
                raise DuplicateIdempotencyKey from None  # only save_idempotent writes that table
            if _is_integrity_error(failure) and _failed_table(failure) == _holds.name:
                # The exclusion constraint: a concurrent command held an overlapping slot and committed
                # first. Run again, the command finds that hold before writing and is refused cleanly.
                raise LostRace(self._holding) from None
            self._stale_copy_raised(failure)
            raise failure
        self._held.clear()  # the locks are gone with the transaction
        self.committed = True

    def abandon(self) -> bool:
        """Roll back in the pipeline, as ``commit`` commits; False if the connection should be dropped instead.

        ROLLBACK is queued like COMMIT, so ending without a commit (a replayed idempotency key, a
        lost race) costs one round trip, and psycopg, finding the transaction over, keeps its
        prepared statements (its own rollback would deallocate them all). The server's errors are
        dropped unread here: their text can quote the values of a failing row, and psycopg would
        log them if the pipeline were left while an exception is raised.
        """
        if self._pipeline is None:
            return True
        clean = True
        try:
            self._cur.execute("ROLLBACK", prepare=False)
        except Exception:  # an earlier statement's error, read while ROLLBACK was sent
            clean = False
        try:
            self._exit_pipeline()
        except Exception:
            clean = False
        return clean  # else a queued statement failed or the connection broke: drop it, as for any error

    def _send_queued(self) -> None:
        """Hand what is queued to the server now, waiting for nothing: the swap (with BEGIN, the case's entries,
        whatever came before) runs while the client works out the command's other writes (its timers, holds,
        ledger, a second command of the same fire), which wait for the commit as before.

        Without it, the server idles until the commit and then does all of the command's work while the client
        idles (measured, one writer: ``postgres.ratio`` 0.56 to 0.63 before, 0.73 to 0.77 after; 4 workers on
        2 cores, where both cores are busy either way: the same fires/s within the noise, one more wake of the
        server a command). libpq writes what the socket takes and keeps any rest for the next send.
        """
        self._conn.driver_connection.pgconn.flush()

    def _exit_pipeline(self) -> None:
        leave, self._pipeline, self._leave_pipeline = self._leave_pipeline, None, None
        leave.__exit__(None, None, None)  # Sync, read every result (raising the first error), leave

    def _stale_copy_raised(self, failure: Exception) -> None:
        """``LostRace`` if ``failure`` is a queued compare-and-swap on a kept copy that missed (its audit row's
        case_id came out NULL): the copy was stale. It is forgotten, so the command's next run reads the row."""
        if self._queued_copies and _is_integrity_error(failure) and _failed_table(failure) == _audit.name:
            for case_id in self._queued_copies:
                self._recent.forget(case_id)
            raise LostRace(next(iter(self._queued_copies))) from None

    def _sync(self) -> None:
        """Send what is queued and wait for every result (raising the first error)."""
        try:
            self._pipeline.sync()
        except Exception as exc:
            self._stale_copy_raised(exc)
            raise

    def _row_count(self, cursor: Any) -> int:
        self._sync()  # the statement's result, and those queued before it
        return int(cursor.rowcount)

    def _first_row(self, cursor: Any) -> Any:
        self._sync()  # BEGIN, the read, and whatever was queued before it
        return cursor.fetchone()

    def _arrived_row(self, cursor: Any) -> Any:
        if cursor.pgresult is None:  # not here yet (a prefetched read may be): send what is queued and wait for it
            self._sync()
        return cursor.fetchone()

    def _all_rows(self, cursor: Any) -> list[Any]:
        self._sync()
        return list(cursor.fetchall())


def _facts_read(entries: Sequence[Any], fact_count: int) -> int:
    """How many of the facts a row counts a read of its entries (section, place, ...) holds: all of them unless the
    read took those past the store's index of them."""
    return sum(1 for entry in entries if entry[0] == "facts" and entry[1] < fact_count)


def _entry_index(views: Sequence[Any]) -> EntryIndex | None:
    """The store's index of a case's facts among its kept views' snapshots (name, fact count, body), if it has one
    this code reads."""
    for name, count, body in views:
        if name == ENTRY_INDEX:
            try:
                return EntryIndex.decode(ENTRY_KEYS["facts"], int(count), str(body))
            except (ValueError, TypeError, KeyError, AttributeError):
                return None
    return None


def _swap_values(case: CaseRecord, event: AuditEvent, expected_event_count: int) -> dict[str, Any]:
    values = {"b_id": case.id, "b_expected": expected_event_count, **case_values(case)}
    values.update({f"a_{k}": v for k, v in event_values(event).items()})
    return values


def _idempotency_values(key: str, case_id: str, fingerprint: str, result: str) -> dict[str, Any]:
    return {"key": key, "case_id": case_id, "fingerprint": fingerprint, "result": result}


def _outbox_values(message: OutboxMessage, now: datetime) -> dict[str, Any]:
    stamp = to_iso(now)
    return {
        "key": message.key, "case_id": message.case_id, "channel": message.channel,
        "audience": message.audience, "recipient": message.recipient, "subject": message.subject,
        "body": message.body, "payload": canonical_json(dict(message.payload)), "status": "pending",
        "attempts": 0, "next_attempt_at": stamp, "created_at": stamp,
    }


def _timer_values(t: PlannedTimer, stamp: str, status: str = "pending", outcome: str | None = None) -> dict[str, Any]:
    return {
        "key": t.key, "case_id": t.case_id, "reminder": t.reminder, "appointment_id": t.appointment_id,
        "due_at": to_iso(t.due_at), "status": status, "outcome": outcome, "created_at": stamp, "updated_at": stamp,
        "b_now": stamp, "attempts": 0,
    }


def _seconds(moment: datetime) -> int:
    return math.floor(moment.timestamp())


def _seconds_up(moment: datetime) -> int:
    return math.ceil(moment.timestamp())


def _hold_values(hold: Hold) -> dict[str, Any]:
    return {"resource": hold.resource, "starts_at": _seconds(hold.starts_at), "ends_at": _seconds_up(hold.ends_at),
            "case_id": hold.case_id, "appointment_id": hold.appointment_id}


def _hold_from_row(row: Any) -> Hold:
    resource, starts, ends, case_id, appointment_id = row
    return Hold(str(resource), datetime.fromtimestamp(int(starts), UTC), datetime.fromtimestamp(int(ends), UTC),
                str(case_id), str(appointment_id))


def _is_integrity_error(exc: Exception) -> bool:
    # The DBAPI's own class (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) under PEP 249's name.
    return any(cls.__name__ == "IntegrityError" for cls in type(exc).__mro__)


def _failed_table(exc: Exception) -> str | None:
    """The table a psycopg error names (its diagnostics), if any."""
    return getattr(getattr(exc, "diag", None), "table_name", None)
