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
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from kapflow.domain.access import AccessRecord
from kapflow.domain.accounts import ConsoleSession, ConsoleUser, SignInAttempt
from kapflow.domain.audit_log import CheckpointRecord, LogRecord, LogSlot, LogSource
from kapflow.domain.billing import LedgerSummary
from kapflow.domain.case import AuditEvent, CaseRecord, Snapshot
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

    def load_case(self, case_id: str, *, current: bool = False) -> CaseRecord | None:
        """The case as this transaction may change it, or None. Unless ``current``, it may be the copy this
        store committed last, unread: proven current by the write that changes it, or by ``verify_copies``."""
        ...

    def verify_copies(self) -> None:
        """Prove current the copies loaded and not changed by this transaction; ``LostRace`` if one is stale."""
        ...

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

    def index_words(self, case_id: str, words: Collection[str], *, replacing: bool) -> None:
        """Index ``words``, those of the case's client name (``kapflow.domain.names``), for the case list's
        search; ``replacing``: instead of the words it had."""
        ...

    def put_ledger_summary(self, case_id: str, summary: LedgerSummary) -> None:
        """Keep ``summary`` as the case's ledger summary (billing's work list), instead of the one it had."""
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

    def accounts(self) -> AccountWrites:
        """The console's users, sessions and sign-in attempts, in this transaction."""
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
        self, *, state: str | None, workflow: str | None, after: tuple[str, str] | None, limit: int,
        starting: tuple[datetime, datetime] | None = None, overdue_before: datetime | None = None,
        name_words: Sequence[str] = (),
    ) -> Sequence[CaseRecord]:
        """Cases by opening time then id, after the case ``after`` names (its opened_at text and id); with
        ``starting`` (from, until), only those with an appointment holding its clinician (booked or attended)
        that starts in [from, until); with ``overdue_before``, only those with a timer pending or claimed and
        due before it, or missed or failed; with ``name_words`` (folded), only those each of whose words begins
        a word of the client's name. Each filter is an indexed range, not a scan of the cases."""
        ...

    def unindexed_cases(self, after_id: str, limit: int) -> Sequence[CaseRecord]:
        """Up to ``limit`` cases after ``after_id`` (by id) with no word of their client's name indexed."""
        ...

    def count_cases(self, *, state: str | None = None) -> int: ...

    def history(self, case_id: str) -> Sequence[AuditEvent]: ...

    def iter_audit(self, case_id: str | None = None) -> Iterator[AuditEvent]:
        """Every audit event (or one case's), streamed, ordered by case id then position in the case."""
        ...

    def iter_cases(self) -> Iterator[CaseRecord]:
        """Every case, streamed, ordered by id."""
        ...

    def entries_past_counts(self, case_id: str | None = None) -> list[tuple[str, int]]:
        """(case id, how many) projection entry rows no reader takes, in id order: past the counts the case row
        keeps, or of a case not in the cases table (one case's, or every case's). Only a hand edit leaves one."""
        ...

    def entries_mislabelled(self, case_id: str | None = None) -> list[tuple[str, int]]:
        """(case id, how many) projection entry rows whose kind (``case_entries.kind``) is not their entry's, in id
        order (one case's, or every case's): a command groups a case's entries by it, so only a hand edit differs."""
        ...

    def case_views(self, case_id: str | None = None) -> Iterator[tuple[str, str, Snapshot]]:
        """(case id, view name, snapshot) of the kept views' snapshots (``StoredView``), by case id and name (one
        case's, or every case's): what ``audit verify`` compares with a fold of the facts each covers."""
        ...

    def queue(self) -> Queue:
        """The worker's view of this store's timers and outbox."""
        ...

    def work(self) -> WorkReads:
        """The reads behind a staff member's work list (``kapflow.app.work``): bounded, index-ordered."""
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

    def accounts(self) -> AccountReads:
        """The console's users, sessions and sign-in attempts, outside any command."""
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

    def cases_of(self, subject_hash: str) -> list[str]:
        """The cases a client identity is bound to, by id."""
        ...

    def all(self, case_id: str | None = None) -> list[tuple[str, str]]:
        """Every binding (or one case's) as (case id, subject hash), ordered by case id."""
        ...


StoredUser = tuple[ConsoleUser, str, str | None]
"""A console user as stored: its record, its password's argon2id hash, its TOTP secret (None: no TOTP)."""

StoredSession = tuple[ConsoleSession, datetime | None]
"""A console session as stored: its record, and when it ended (None: open)."""


class AccountWrites(Protocol):
    """The console's users, sessions and sign-in attempts inside one command's transaction."""

    def find_user(self, name: str) -> StoredUser | None: ...

    def add_user(self, user: ConsoleUser, password_hash: str, totp_secret: str | None) -> None: ...

    def disable_user(self, name: str, at: datetime) -> bool:
        """Mark an active user disabled; False if no active user has that name."""
        ...

    def set_password(self, name: str, password_hash: str) -> bool: ...

    def set_totp(self, name: str, secret: str | None) -> bool:
        """Set (or clear) the TOTP secret; the last step used is forgotten with the old secret."""
        ...

    def use_totp_step(self, name: str, step: int) -> bool:
        """Record that a code of ``step`` was accepted; False if one of this step or a later one was already."""
        ...

    def add_session(self, token_hash: str, session: ConsoleSession) -> None: ...

    def find_session(self, token_hash: str) -> StoredSession | None: ...

    def touch_session(self, token_hash: str, at: datetime) -> bool:
        """Move an open session's last-seen time forward to ``at`` (never back)."""
        ...

    def end_session(self, token_hash: str, at: datetime) -> bool:
        """End an open session; False if it is unknown or ended already."""
        ...

    def end_sessions_of(self, actor: str, via: str, at: datetime) -> int:
        """End every open session of ``actor`` signed in ``via``; how many."""
        ...

    def add_attempt(self, attempt: SignInAttempt) -> None: ...


class AccountReads(Protocol):
    """The console's accounts outside any command: a request's session, the rate limit's count, listings."""

    def find_user(self, name: str) -> StoredUser | None: ...

    def users(self) -> list[ConsoleUser]:
        """Every user, disabled ones too, by name."""
        ...

    def find_session(self, token_hash: str) -> StoredSession | None: ...

    def failures(self, name: str, source: str | None, since: datetime) -> tuple[list[datetime], list[datetime]]:
        """The times of the failed attempts after ``since`` for ``name``, and from ``source`` (none if None)."""
        ...

    def attempts(
        self, *, name: str | None, since: datetime | None, until: datetime | None, limit: int,
    ) -> list[SignInAttempt]:
        """Attempts for ``name`` (None: any) in [since, until), oldest first, at most ``limit``."""
        ...


@dataclass(frozen=True)
class WantedTimer:
    """A reminder of one workflow whose timers matter while its case is in one of ``states``."""

    workflow: str
    reminder: str
    states: tuple[str, ...]


@dataclass(frozen=True)
class DueTimer:
    """A timer row that came due, with its case as stored now (read in the same query)."""

    id: int
    key: str
    reminder: str
    status: str
    due_at: datetime
    appointment_id: str | None
    case: CaseRecord


@dataclass(frozen=True)
class HeldAppointment:
    """An appointment holding a clinician at ``starts_at`` (its hold), with its case as stored now."""

    appointment_id: str
    clinician: str
    starts_at: datetime
    case: CaseRecord


@dataclass(frozen=True)
class DeadMessage:
    """An outbox message whose delivery failed for good (``dead``), with its case as stored now."""

    id: int
    channel: str
    audience: str
    subject: str
    at: datetime  # when its last attempt was due
    case: CaseRecord


@dataclass(frozen=True)
class LedgerBacklog:
    """A case with billing work: its ledger summary's row, with the case as stored now."""

    balance_cents: int
    unbilled: int
    oldest: date  # the oldest unbilled or open line's date of service, as the query asked
    case: CaseRecord


class WorkReads(Protocol):
    """What a work list reads: each a bounded query ordered by an index, never a scan of every case."""

    def due_timers(
        self, wanted: Sequence[WantedTimer], statuses: Sequence[str], due_by: datetime,
        after: tuple[datetime, int] | None, limit: int,
    ) -> list[DueTimer]:
        """Timers of the ``wanted`` reminders, in one of ``statuses``, due by ``due_by``, whose case is in one of
        the reminder's states now; by (due_at, id), after ``after``, at most ``limit``."""
        ...

    def clinician_appointments(self, clinician: str | None, start: datetime, end: datetime) -> list[HeldAppointment]:
        """Appointments holding ``clinician`` (None: any clinician) that start in [start, end), by start."""
        ...

    def dead_messages(self, after: tuple[datetime, int] | None, limit: int) -> list[DeadMessage]:
        """Messages whose delivery failed for good, oldest first, after ``after``, at most ``limit``."""
        ...

    def ledger_backlog(self, unbilled: bool, limit: int) -> list[LedgerBacklog]:
        """Cases with insurance lines on no superbill (``unbilled``) or with a balance due, the longest
        waiting first, at most ``limit``."""
        ...
