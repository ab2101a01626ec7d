"""The one command runner: every write of the engine travels through it.

A command is a body, a function of a ``Transaction``. The runner owns what
every command shares:

- the transaction: one unit of work of the store, committed when the body
  returns, rolled back when it raises (nothing else in kapflow opens one);
- the retry on a lost race: a compare-and-swap that found the case changed
  (``LostRace``), or an idempotency key a concurrent duplicate stored first,
  runs the whole body again on the case as it is now, at most
  ``RetryPolicy.attempts`` times; then ``ConcurrencyConflict``, logged;
- the proof of kept copies: a body may start from the record its store
  committed last (``UnitOfWork.load_case``); before the commit, or before an
  error or a refusal is given, every such copy is proven current, and a stale
  one makes the body run again on the row (``_proven``);
- the audited refusal: ``Transaction.refuse`` appends the refused attempt to
  the case's chain, commits that alone, and raises the refusal;
- the idempotency key (``run_command``): a repeated key answers with the first
  result; the same key for another command raises ``IdempotencyKeyReused``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from kapflow.app.command_input import outcome_from_json
from kapflow.app.events import note_event
from kapflow.app.workflows import WorkflowSet
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
from kapflow.domain.case import Actor, AuditEvent, CaseRecord, Outcome
from kapflow.domain.effects import effects_of
from kapflow.domain.errors import (
    ConcurrencyConflict,
    IdempotencyKeyReused,
    KapflowError,
    Refused,
    TransitionBlocked,
    UnknownCase,
)
from kapflow.domain.events import EventKind
from kapflow.domain.names import client_words
from kapflow.domain.payload import JSONObject, canonical_json
from kapflow.domain.slots import hold_changes, taken_blockers, wanted_holds
from kapflow.domain.stored_views import work_out
from kapflow.domain.superbill import billing_summary
from kapflow.domain.verdict import blocker_reads, for_reader
from kapflow.domain.workflow import Workflow
from kapflow.errors import DuplicateIdempotencyKey, LostRace
from kapflow.logging import get_logger
from kapflow.ports import Clock, Store, UnitOfWork

T = TypeVar("T")
_log = get_logger("kapflow.commands")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a command that lost a race runs before ``ConcurrencyConflict`` (1: no retry)."""

    attempts: int = 5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a command runs at least once: attempts must be 1 or more")


ONCE = RetryPolicy(attempts=1)


class Transaction:
    """What a command's body may do in its one transaction. The runner commits it."""

    def __init__(
        self, uow: UnitOfWork, workflows: WorkflowSet, clock: Clock, *, calendar_sync: bool,
        practice: PracticeCalendar = UTC_CALENDAR,
    ) -> None:
        self.uow = uow
        self.workflows = workflows
        self.clock = clock
        self.calendar_sync = calendar_sync
        self.practice = practice  # the practice's calendar: timers count its days
        self.read_only = False

    def load(self, case_id: str) -> tuple[CaseRecord, Workflow]:
        """The case and its workflow version; ``UnknownCase`` if none. The case is its row, locked for this
        transaction, or the record this store committed last, proven current before the commit
        (``UnitOfWork.load_case``)."""
        case = self.uow.load_case(case_id)
        if case is None:
            raise UnknownCase(case_id)
        return case, self.workflows.of(case)

    def insert(self, case: CaseRecord, event: AuditEvent) -> None:
        """A new case with the event that opened it, and what entering its first state plans."""
        self.uow.insert_case(case)
        self.uow.append_event(event)
        self.uow.index_words(case.id, client_words(case.projection, self.workflows.of(case)), replacing=False)
        self.uow.apply_effects(
            effects_of(self.workflows.of(case), None, case, calendar=self.calendar_sync, cal=self.practice),
            case.updated_at,
        )

    def change(self, case: CaseRecord, updated: CaseRecord, event: AuditEvent, expected: int | None = None) -> None:
        """``case`` becomes ``updated`` with ``event``, and its timers and calendar follow, or raise.

        A compare-and-swap on the event count: a concurrent change raises ``ConcurrencyConflict``.
        ``updated`` may be on another workflow version (a migration): its timers follow the new one.
        """
        wf = self._keep_views(updated)
        if not self.uow.update_and_append(updated, event, expected_event_count=case.event_count):
            current = self.uow.load_case(case.id, current=True)
            raise ConcurrencyConflict(
                case.id, expected if expected is not None else case.version, current.version if current else None
            )
        # The client's name may have changed: a new intake fact, or a version naming other fields of it.
        renamed = event.kind == EventKind.FACT and event.data.get("kind") == wf.intake_fact
        if renamed or event.kind == EventKind.MIGRATED:
            self.uow.index_words(updated.id, client_words(updated.projection, wf), replacing=True)
        if wf.billing is not None and event.kind == EventKind.FACT and event.data.get("kind") in (
                wf.billing.summary_kinds):  # the ledger changed: billing's work list follows it
            self.uow.put_ledger_summary(updated.id, billing_summary(updated.projection, wf.billing))
        holds = hold_changes(updated.id, case.projection, updated.projection, wf.appointments)
        if not holds.empty:  # the clinician and room its appointments hold follow them (``slots_refusal`` checked)
            self.uow.apply_holds(holds)
        effects = effects_of(wf, case, updated, calendar=self.calendar_sync,
                             before_wf=self.workflows.of(case), cal=self.practice)
        self.uow.apply_effects(effects, updated.updated_at)

    def slots_refusal(self, case: CaseRecord, wf: Workflow, kind: str, parsed: JSONObject) -> Refused | None:
        """The refusal of recording ``parsed`` (a booking or a reschedule) because its clinician or room is
        already held at an overlapping time by another appointment, or None.

        Read before writing, and the answer holds until the commit: SQLite's writers take turns, and on
        PostgreSQL ``find_taken`` first takes a lock per resource that bookings of it wait for. Should an
        overlapping hold be committed meanwhile all the same, the exclusion constraint fails this
        command's commit with ``LostRace``: the runner runs it again, and it is refused here.
        """
        wanted = wanted_holds(case.id, case.projection, wf.appointments, kind, parsed, self.now())
        if not wanted:
            return None
        blockers = taken_blockers(wanted, self.uow.find_taken(wanted), self.practice.time_text)
        if not blockers:
            return None
        return TransitionBlocked(case_id=case.id, trigger="", state=case.state, blockers=blockers, fact_kind=kind)

    def _keep_views(self, updated: CaseRecord) -> Workflow:
        """The record's workflow, with every view the store keeps worked out on it when the store writes the index
        of its facts with it: their snapshots are written with the index (``domain.stored_views.work_out``)."""
        wf = self.workflows.of(updated)
        if updated.index_due():
            work_out(wf, updated.id, updated.projection)
        return wf

    def note(self, case: CaseRecord, event: AuditEvent) -> CaseRecord:
        """Append an event that changes neither state nor version; ``LostRace`` if the case moved meanwhile."""
        updated = replace(case, event_count=case.event_count + 1, head_hash=event.hash)
        self._keep_views(updated)
        if not self.uow.update_and_append(updated, event, expected_event_count=case.event_count):
            raise LostRace(case.id)
        return updated

    def refuse(
        self, case: CaseRecord, actor: Actor, refusal: Refused, *,
        trigger: str | None, data: Mapping[str, Any], key: str | None = None,
    ) -> NoReturn:
        """Append the refused attempt (every blocker) to the case's chain, commit it alone, and raise it."""
        event = note_event(case, actor, EventKind.REFUSED, at=self.clock.now(), trigger=trigger, data=data,
                           blockers=refusal.audited_blockers(), key=key)
        self.note(case, event)
        self.uow.commit()
        _log.info("refused", case_id=case.id, trigger=refusal.trigger, fact_kind=refusal.fact_kind, code=refusal.code)
        raise _as_actor_reads(refusal, self.workflows.of(case), actor)

    def now(self) -> datetime:
        return self.clock.now()


def _as_actor_reads(refusal: Refused, wf: Workflow, actor: Actor) -> Refused:
    """The refusal as its actor is told it: the audit event keeps every sentence, but a guard's sentence
    may quote a fact the actor's role may not read, and then it is given as its code in words."""
    if not isinstance(refusal, TransitionBlocked):
        return refusal
    readable = wf.readable(actor.role)
    shown = tuple(for_reader(b, readable, blocker_reads(wf, b.guard)) for b in refusal.blockers)
    if shown == refusal.blockers:
        return refusal
    return TransitionBlocked(case_id=refusal.case_id, trigger=refusal.trigger, state=refusal.state, blockers=shown,
                             fact_kind=refusal.fact_kind)


class CommandRunner:
    """Runs command bodies in transactions of one store (see the module's docstring)."""

    def __init__(
        self, store: Store, workflows: WorkflowSet, clock: Clock, *,
        calendar_sync: bool = False, policy: RetryPolicy | None = None, practice: PracticeCalendar = UTC_CALENDAR,
    ) -> None:
        """``practice``: the practice's calendar (reminders counted in days follow it)."""
        self._store = store
        self._workflows = workflows
        self._clock = clock
        self._calendar_sync = calendar_sync
        self._practice = practice
        self.policy = policy or RetryPolicy()

    def run(self, body: Callable[[Transaction], T], *, case_id: str = "", policy: RetryPolicy | None = None) -> T:
        """``body``'s result, committed; run again on a lost race, then ``ConcurrencyConflict``."""
        attempts = (policy or self.policy).attempts
        for _attempt in range(attempts):
            try:
                with self._store.write() as uow:
                    tx = Transaction(uow, self._workflows, self._clock, calendar_sync=self._calendar_sync,
                                     practice=self._practice)
                    result = _proven(body, tx)
                    if not tx.read_only:
                        uow.commit()
                    return result
            except (LostRace, DuplicateIdempotencyKey):
                continue
        _log.warning("command_lost_every_race", case_id=case_id, attempts=attempts)
        raise ConcurrencyConflict(case_id, None, None)

    def run_command(
        self, body: Callable[[Transaction], Outcome], *, case_id: str, key: str | None, fingerprint: str
    ) -> Outcome:
        """``run`` for a command an idempotency key may guard: a known key replays its first outcome."""
        if key is None:
            return self.run(body, case_id=case_id)

        def keyed(tx: Transaction) -> Outcome:
            if case_id:
                tx.uow.prefetch_case(case_id)  # read with the key: one wait for both
            replayed = _replay(tx.uow, key, fingerprint)
            if replayed is not None:
                tx.read_only = True
                return replayed
            outcome = body(tx)
            tx.uow.save_idempotent(key, outcome.case_id, fingerprint, canonical_json(outcome.as_dict()))
            return outcome

        return self.run(keyed, case_id=case_id)


def _proven(body: Callable[[Transaction], T], tx: Transaction) -> T:
    """``body``'s result or error, given only once every kept copy of a case it started from is proven current.

    A command may start from the record its store committed last instead of reading the row
    (``UnitOfWork.load_case``); a copy another process has left behind raises ``LostRace`` here, and the
    runner runs the command again on the row. So every answer, a refusal or an error included, is the
    one the state the command before it left would give.
    """
    try:
        result = body(tx)
    except (LostRace, DuplicateIdempotencyKey):
        raise
    except KapflowError as answer:
        try:
            tx.uow.verify_copies()
        except LostRace:
            raise
        except Exception:  # the transaction cannot say (a failed statement): the answer stands as it was
            raise answer from None
        raise
    tx.uow.verify_copies()
    return result


def _replay(uow: UnitOfWork, key: str, fingerprint: str) -> Outcome | None:
    found = uow.find_idempotent(key)
    if found is None:
        return None
    stored_fingerprint, result = found
    if stored_fingerprint != fingerprint:
        raise IdempotencyKeyReused(hashlib.sha256(key.encode()).hexdigest()[:12])
    return outcome_from_json(result)
