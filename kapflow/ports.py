"""The ports: small Protocols the engine depends on, implemented by infrastructure and adapters.

- ``Clock``: where time comes from (``SystemClock``; ``kapflow.testing.FakeClock`` in tests).
- ``Store`` and ``UnitOfWork``: persistence, one database transaction per command.
- ``Notifier``: delivers one ``Message`` over one channel (email, SMS, chat, webhook).
- ``Calendar``: keeps one calendar event per appointment (create, update, cancel).

Adapters import this module and ``kapflow.errors`` only, never the engine's insides.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from kapflow.domain.access import AccessRecord
from kapflow.domain.audit_log import CheckpointRecord, LogRecord, LogSlot, LogSource
from kapflow.domain.case import AuditEvent, CaseRecord
from kapflow.domain.effects import Effects, OutboxMessage
from kapflow.domain.events import DeliveryOutcome
from kapflow.domain.identity import ApiKey
from kapflow.domain.slots import Hold, HoldChanges


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, time-zone aware, in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class UnitOfWork(Protocol):
    """One database transaction. Nothing is visible to others until ``commit``."""

    def load_case(self, case_id: str) -> CaseRecord | None: ...

    def prefetch_case(self, case_id: str) -> None:
        """Say that this command will load ``case_id``: a backend may send that read with the next one."""
        ...

    def insert_case(self, case: CaseRecord) -> None: ...

    def update_case(self, case: CaseRecord, *, expected_event_count: int) -> bool:
        """Write ``case`` only if the stored row still has ``expected_event_count``; False if not."""
        ...

    def update_and_append(self, case: CaseRecord, event: AuditEvent, *, expected_event_count: int) -> bool:
        """``update_case`` and, only if it matched, ``append_event``; False if the case moved meanwhile."""
        ...

    def append_event(self, event: AuditEvent) -> None:
        """Append an audit event (the database numbers it: its global ``seq``)."""
        ...

    def apply_effects(self, effects: Effects, now: datetime) -> None:
        """Write a change's timers (planned and cancelled) and outbox messages."""
        ...

    def add_outbox(self, message: OutboxMessage, now: datetime) -> bool:
        """Queue a message unless its key is already queued."""
        ...

    def finish_timer(self, timer_id: int, worker: str, status: str, outcome: str, now: datetime) -> bool:
        """Close a timer this worker holds; False if another worker took it over."""
        ...

    def fail_timer(
        self, timer_id: int, worker: str, attempts: int, outcome: str, now: datetime, retry_at: datetime | None
    ) -> bool:
        """Record a failed attempt at a timer this worker holds: claimable again at ``retry_at``, or parked
        as ``failed`` when None. False if another worker took it over."""
        ...

    def settle_outbox(
        self, claim: OutboxClaim, worker: str, now: datetime, outcome: DeliveryOutcome, *,
        detail: str = "", retry_at: datetime | None = None,
    ) -> bool:
        """Record one delivery attempt of a message this worker holds; False if another worker took it over.

        ``sent``; ``failed``: pending again from ``retry_at``; ``gave_up``: dead, retried no more.
        """
        ...

    def find_taken(self, holds: Sequence[Hold]) -> list[Hold]:
        """The holds of other appointments (any case) overlapping any of ``holds``, as committed now.

        A backend whose writers do not take turns (PostgreSQL) locks each resource asked about until the
        transaction ends, so the answer still holds when this command commits its own holds.
        """
        ...

    def apply_holds(self, changes: HoldChanges) -> None:
        """Drop the holds of the appointments ``changes`` releases and add its new ones.

        A hold overlapping another appointment's that a concurrent command committed first raises
        ``LostRace`` (at the latest when committing): run the command again, it then finds that hold.
        """
        ...

    def find_idempotent(self, key: str) -> tuple[str, str] | None:
        """The (fingerprint, result JSON) stored under an idempotency key, if any."""
        ...

    def log(self) -> LogWrites:
        """The audit log's writes in this transaction (the sequencer's and the checkpoint's)."""
        ...

    def save_idempotent(self, key: str, case_id: str, fingerprint: str, result: str) -> None:
        """Store a command's result under its key; ``DuplicateIdempotencyKey`` if the key is taken."""
        ...

    def api_keys(self) -> ApiKeyWrites:
        """The API keys' reads and writes in this transaction."""
        ...

    def access(self) -> AccessWrites:
        """The access log's insert in this transaction."""
        ...

    def client_bindings(self) -> BindingWrites:
        """The client bindings' writes in this transaction."""
        ...

    def commit(self) -> None: ...


class Store(Protocol):
    """A database of cases and their audit history."""

    def write(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work holding the write lock (SQLite) or a transaction (PostgreSQL)."""
        ...

    def get_case(self, case_id: str) -> CaseRecord | None: ...

    def list_cases(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Sequence[CaseRecord]: ...

    def case_page(
        self, *, state: str | None, workflow: str | None, after: tuple[str, str] | None, limit: int
    ) -> Sequence[CaseRecord]:
        """Cases by opening time then id, after the case ``after`` names (its opened_at text and id)."""
        ...

    def count_cases(self, *, state: str | None = None) -> int: ...

    def history(self, case_id: str) -> Sequence[AuditEvent]: ...

    def iter_audit(self, case_id: str | None = None) -> Iterator[AuditEvent]:
        """Every audit event (or one case's), streamed, ordered by case id then position in the case."""
        ...

    def iter_cases(self) -> Iterator[CaseRecord]:
        """Every case, streamed, ordered by id."""
        ...

    def queue(self) -> Queue:
        """The worker's view of this store's timers and outbox."""
        ...

    def log(self) -> LogReads:
        """The audit log's reads: its size, a proof's nodes, the checkpoints, verification's stream."""
        ...

    def api_keys(self) -> ApiKeyReads:
        """The API keys' reads outside any command (verifying a request's key, the listing)."""
        ...

    def access(self) -> AccessReads:
        """The access log's queries outside any command."""
        ...

    def client_bindings(self) -> BindingReads:
        """Which case a client identity may reach."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Message:
    """One outgoing message. ``key`` is stable: the receiver can deduplicate on it.

    Messages carry the minimum: no diagnosis or clinical detail in an SMS or an
    email subject (the body says what to do next, and where to ask).
    """

    key: str
    channel: str
    recipient: str
    subject: str
    body: str
    case_id: str = ""
    audience: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


class Notifier(Protocol):
    """Delivers messages of one channel."""

    @property
    def channel(self) -> str:
        """The channel name messages are routed by (``email``, ``sms``, ``webhook``, ...)."""
        ...

    def check(self) -> None:
        """Validate configuration at start-up; raise ``AdapterConfigError`` with what to fix."""
        ...

    def send(self, message: Message) -> None:
        """Deliver once; raise ``DeliveryFailed`` (``permanent`` when retrying cannot help)."""
        ...


@dataclass(frozen=True)
class CalendarEvent:
    """One appointment as a calendar event (RFC 5545 VEVENT). ``uid`` is stable per appointment."""

    uid: str
    summary: str
    starts_at: datetime
    ends_at: datetime
    location: str = ""
    description: str = ""
    alarms: tuple[timedelta, ...] = ()
    sequence: int = 0
    cancelled: bool = False


class Calendar(Protocol):
    """A calendar kapflow writes appointments to."""

    def check(self) -> None:
        """Validate configuration at start-up; raise ``AdapterConfigError`` with what to fix."""
        ...

    def upsert(self, event: CalendarEvent) -> None:
        """Create the event, or replace the one with the same ``uid``."""
        ...

    def cancel(self, uid: str) -> None:
        """Mark the event cancelled (STATUS:CANCELLED); unknown uids are ignored."""
        ...

    def get(self, uid: str) -> CalendarEvent | None:
        """The stored event, or None."""
        ...


@dataclass(frozen=True)
class TimerClaim:
    """A due timer held by one worker until its lease ends."""

    id: int
    key: str
    case_id: str
    reminder: str
    appointment_id: str | None
    due_at: datetime
    attempts: int = 0  # failed attempts to settle it so far


@dataclass(frozen=True)
class OutboxClaim:
    """An outbox row held by one worker while it delivers it: the queued message and its attempt number."""

    id: int
    message: OutboxMessage
    attempts: int

    @property
    def key(self) -> str:
        return self.message.key

    @property
    def case_id(self) -> str:
        return self.message.case_id

    @property
    def channel(self) -> str:
        return self.message.channel


Node = tuple[int, int]
"""A perfect subtree of the audit log's Merkle tree: ``(level, index)``."""


class LogWrites(Protocol):
    """The audit log's writes, inside one command's transaction."""

    def lock(self) -> bool:
        """Take the one-sequencer-at-a-time lock for this transaction; False if another process holds it."""
        ...

    def size(self) -> int:
        """How many positions the log has."""
        ...

    def nodes(self, keys: Collection[Node]) -> dict[Node, bytes]:
        """The stored hashes of these perfect subtrees (those found)."""
        ...

    def unlogged(self, limit: int) -> list[LogRecord]:
        """Committed rows waiting for a position, oldest first within each source, at most ``limit`` each."""
        ...

    def append(self, start: int, records: Sequence[LogRecord], nodes: Sequence[tuple[Node, bytes]]) -> None:
        """Place ``records`` at positions ``start``, ``start + 1``, ... and store the subtrees they completed."""
        ...

    def add_checkpoint(self, checkpoint: CheckpointRecord) -> None: ...

    def latest_checkpoint(self) -> CheckpointRecord | None: ...


class LogReads(Protocol):
    """The audit log's reads, outside any command."""

    def size(self) -> int: ...

    def nodes(self, keys: Collection[Node]) -> dict[Node, bytes]: ...

    def checkpoints(self) -> list[CheckpointRecord]:
        """Every checkpoint stored, oldest first."""
        ...

    def unlogged(self) -> dict[LogSource, int]:
        """How many rows of each source wait for a position."""
        ...

    def misplaced(self, size: int) -> dict[LogSource, int]:
        """Rows that say they sit at a position at or past ``size``."""
        ...

    def slots(self, start: int = 0) -> Iterator[LogSlot]:
        """Every position from ``start`` in order, with the row it names (streamed)."""
        ...

    def case_positions(self, case_id: str) -> dict[int, int]:
        """One case's placed events: its place in the case to its log position."""
        ...

    def outbox_outcomes(self) -> Iterator[tuple[int, str, str, frozenset[str]]]:
        """Each queued message (id, case id, status) with the outcomes of its delivery attempts."""
        ...


class Signer(Protocol):
    """Signs the audit log's checkpoints (an Ed25519 key: ``kapflow.audit.signing``)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, message: bytes) -> bytes: ...


class Queue(Protocol):
    """Timers and outbox as the worker sees them: claimed with leases, settled one by one."""

    def claim_timers(self, worker: str, now: datetime, lease_until: datetime, limit: int) -> list[TimerClaim]: ...

    def claim_outbox(self, worker: str, now: datetime, lease_until: datetime, limit: int) -> list[OutboxClaim]: ...

    def outbox(self, case_id: str | None = None) -> Sequence[dict[str, Any]]: ...

    def timers(self, case_id: str | None = None) -> Sequence[dict[str, Any]]: ...

    def attempts(self, outbox_id: int) -> Sequence[dict[str, Any]]: ...


StoredApiKey = tuple[ApiKey, str]
"""An API key as stored: its record and the hex HMAC-SHA256 of its text (never the text)."""


class ApiKeyWrites(Protocol):
    """The API keys' reads and writes inside one command's transaction."""

    def find(self, key_id: str) -> StoredApiKey | None: ...

    def find_by_name(self, name: str) -> StoredApiKey | None: ...

    def add(self, key: ApiKey, key_hash: str) -> None: ...

    def revoke(self, key_id: str, at: datetime, by: str) -> bool:
        """Mark an active key revoked; False if no active key has that id."""
        ...


class ApiKeyReads(Protocol):
    """The API keys' reads outside any command."""

    def find(self, key_id: str) -> StoredApiKey | None: ...

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        ...


class AccessWrites(Protocol):
    """The access log's write inside one command's transaction: one INSERT, no read, no lock on the case."""

    def add(self, record: AccessRecord) -> None: ...


class AccessReads(Protocol):
    """The access log's queries outside any command."""

    def find(
        self, *, case_id: str | None, actor: str | None, since: datetime | None, until: datetime | None, limit: int,
    ) -> list[AccessRecord]:
        """Reads of ``case_id`` (None: any case) by ``actor`` (None: anyone) in [since, until), oldest first."""
        ...


class BindingWrites(Protocol):
    """A client binding's writes, inside the command that audits it on the case."""

    def bound(self, case_id: str, subject_hash: str) -> bool: ...

    def bind(self, case_id: str, subject_hash: str, bound_at: str, bound_by: str) -> None: ...

    def unbind(self, case_id: str, subject_hash: str) -> None: ...

    def invite(self, code_hash: str, case_id: str, created_at: str, created_by: str, expires_at: str) -> None: ...

    def redeem(self, code_hash: str, now: str) -> str | None:
        """Use an invitation once: its case, or None if it is unknown, used or expired."""
        ...


class BindingReads(Protocol):
    """The lookup a client's every request makes, and verification's list."""

    def bound(self, case_id: str, subject_hash: str) -> bool: ...

    def all(self, case_id: str | None = None) -> list[tuple[str, str]]:
        """Every binding (or one case's) as (case id, subject hash), ordered by case id."""
        ...
