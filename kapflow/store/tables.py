"""The database tables, declared once with SQLModel.

Times are stored as ISO 8601 text in UTC with microseconds (``to_iso``): the
same bytes on SQLite and PostgreSQL, sortable as text, and exactly what the
audit hash covers. JSON columns are text written by ``canonical_json``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Index, LargeBinary, SmallInteger, String, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlmodel import Field, SQLModel


class CaseRow(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_state_opened", "state", "opened_at"), Index("ix_cases_opened", "opened_at", "id"))

    id: str = Field(primary_key=True, max_length=200)
    workflow: str = Field(max_length=200)
    workflow_version: str = Field(max_length=50)
    state: str = Field(max_length=100)
    previous_state: str | None = Field(default=None, max_length=100)
    version: int
    event_count: int
    head_hash: str = Field(max_length=64)
    # How many entries of each section of the projection (``case_entries``) are this row's: a read takes those,
    # so a case read while a command adds an entry is the case as of one commit, on any database.
    fact_count: int
    move_count: int
    opened_at: str = Field(max_length=40)
    updated_at: str = Field(max_length=40)


class CaseEntryRow(SQLModel, table=True):
    """One entry of a case's projection: a fact recorded, or a move made (its canonical JSON).

    A command adds the entries it folds and never rewrites one, so its write costs the same on a case of
    ten entries as on one of a thousand; a case's projection is its entries in order, section by section,
    read undecoded (``kapflow.domain.entries.Entries``) until something asks for them."""

    __tablename__ = "case_entries"

    case_id: str = Field(primary_key=True, max_length=200)
    section: str = Field(primary_key=True, max_length=5)  # facts | moves: the projection's list it belongs to
    n: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})  # its place in that list, from 0
    entry: str
    # The fact's kind, or the move's trigger, as its entry has it: a command's read groups the entries by it without
    # reading their texts (``audit verify`` checks it against them). NULL only on an entry a hand wrote.
    kind: str | None = Field(default=None, max_length=200)


class CaseViewRow(SQLModel, table=True):
    """A snapshot of one of a case's kept views (``kapflow.domain.case.StoredView``): its value after the case's
    first ``fact_count`` facts. A command on a case read cold starts from it and steps it by the facts since,
    rather than folding every one; commands write it again every few facts of its kinds. Derived, never the
    record: ``kapflow audit verify`` folds the facts it covers and compares."""

    __tablename__ = "case_views"

    case_id: str = Field(primary_key=True, max_length=200)
    name: str = Field(primary_key=True, max_length=200)
    fact_count: int
    body: str


def _unlogged(table: str, column: str) -> Index:
    """The rows the audit log's sequencer has not placed yet: a partial index, empty once it catches up."""
    return Index(f"ix_{table}_unlogged", column, sqlite_where=text("log_position IS NULL"),
                 postgresql_where=text("log_position IS NULL"))


def _log_position() -> Any:
    # Set once by the sequencer (kapflow.app.audit_log), never by a command: writers add no lock or shared row.
    return Field(default=None, sa_column=Column("log_position", BigInteger, nullable=True))


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("case_id", "case_seq", name="uq_audit_case_seq"),
        _unlogged("audit_events", "seq"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=200)
    case_seq: int
    at: str = Field(max_length=40)
    actor: str = Field(max_length=200)
    role: str = Field(max_length=50)
    kind: str = Field(max_length=20)
    trigger: str | None = Field(default=None, max_length=100)
    from_state: str | None = Field(default=None, max_length=100)
    to_state: str | None = Field(default=None, max_length=100)
    workflow: str = Field(max_length=200)
    workflow_version: str = Field(max_length=50)
    data: str
    blockers: str
    idempotency_key: str | None = Field(default=None, max_length=200)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    os_user: str | None = Field(default=None, max_length=200)  # hashed when set (AuditEvent.hashed_fields)
    log_position: int | None = _log_position()


class IdempotencyRow(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    key: str = Field(primary_key=True, max_length=200)
    case_id: str = Field(max_length=200)
    fingerprint: str = Field(max_length=64)
    result: str


class TimerRow(SQLModel, table=True):
    """A reminder due at a time; the durable truth the worker polls (never APScheduler's job store)."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_status_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    case_id: str = Field(max_length=200, index=True)
    reminder: str = Field(max_length=100)
    appointment_id: str | None = Field(default=None, max_length=50)
    due_at: str = Field(max_length=40)
    status: str = Field(max_length=20)  # pending | claimed | done | skipped | missed | cancelled | failed
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: str | None = Field(default=None, max_length=40)
    outcome: str | None = Field(default=None, max_length=500)
    created_at: str = Field(max_length=40)
    updated_at: str = Field(max_length=40)
    # Failed attempts to settle it; a failed attempt leaves it claimed until its backoff (the lease) ends.
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class OutboxRow(SQLModel, table=True):
    """A message or calendar change to deliver, written in the transaction that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"), _unlogged("outbox", "id"))

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    case_id: str = Field(max_length=200, index=True)
    channel: str = Field(max_length=50)
    audience: str = Field(max_length=50)
    recipient: str = Field(max_length=500)
    subject: str
    body: str
    payload: str
    status: str = Field(max_length=20)  # pending | sending | sent | dead | dropped
    attempts: int = 0
    next_attempt_at: str = Field(max_length=40)
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: str | None = Field(default=None, max_length=40)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: str = Field(max_length=40)
    sent_at: str | None = Field(default=None, max_length=40)
    log_position: int | None = _log_position()


class DeliveryAttemptRow(SQLModel, table=True):
    """One try at delivering one outbox row, and how it went."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (_unlogged("delivery_attempts", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(index=True)
    attempt: int
    at: str = Field(max_length=40)
    worker: str = Field(max_length=200)
    outcome: str = Field(max_length=20)  # sent | failed | gave_up | dropped
    detail: str | None = Field(default=None, max_length=500)
    log_position: int | None = _log_position()


class ResourceHoldRow(SQLModel, table=True):
    """A clinician or a room held by one appointment over [starts_at, ends_at), while it is booked or attended.

    Times are whole seconds since the epoch (UTC), not ISO text: on PostgreSQL an exclusion
    constraint refuses two overlapping holds of one resource, and it needs an immutable range
    (``int8range``; a text time cast to a timestamp is not immutable). SQLite has no such
    constraint, and needs none: its writers take turns (``BEGIN IMMEDIATE``), and each checks first.
    """

    __tablename__ = "resource_holds"
    __table_args__ = (
        Index("ix_resource_holds_resource_starts", "resource", "starts_at"),
        Index("ix_resource_holds_appointment", "case_id", "appointment_id"),
        # Every appointment starting in a time range, whoever holds it (the case list's appointment day);
        # case_id too, so that range is read from the index alone.
        Index("ix_resource_holds_starts", "starts_at", "case_id"),
        ExcludeConstraint(
            ("resource", "="), (func.int8range(Column("starts_at"), Column("ends_at")), "&&"),
            name="ex_resource_holds_overlap", using="gist",
        ).ddl_if(dialect="postgresql"),
    )

    id: int | None = Field(default=None, primary_key=True)
    resource: str = Field(max_length=250)  # "clinician:<id>" or "room:<id>"
    starts_at: int = Field(sa_column=Column("starts_at", BigInteger, nullable=False))
    ends_at: int = Field(sa_column=Column("ends_at", BigInteger, nullable=False))
    case_id: str = Field(max_length=200)
    appointment_id: str = Field(max_length=50)


# PostgreSQL compares text by its database's collation, which need not be code point order; the name index's
# prefix ranges (``kapflow.domain.names.prefix_bound``) need byte order, which "C" is (and SQLite's BINARY).
_WORD = String(100).with_variant(String(100, collation="C"), "postgresql")


class NameWordRow(SQLModel, table=True):
    """A word of a case's client name, folded (``kapflow.domain.names``): the case list's search by name.

    Derived from the case's intake fact and written in the same transaction; a prefix of a word is a
    range of the primary key. ``ix_name_words_case`` finds a case's words to replace them.
    """

    __tablename__ = "name_words"
    __table_args__ = (Index("ix_name_words_case", "case_id"),)

    word: str = Field(sa_column=Column("word", _WORD, primary_key=True))
    case_id: str = Field(primary_key=True, max_length=200)


class LedgerSummaryRow(SQLModel, table=True):
    """What billing's work list needs of one case's ledger (``kapflow.domain.billing.summary``), written in the
    command that changes the ledger: its balance in cents, its insurance lines not yet on a superbill, and the
    dates of service of the oldest of those and of the oldest charge left open (NULL: none). Each index holds
    only the cases with something to do, by how long it has waited."""

    __tablename__ = "ledger_summaries"
    __table_args__ = (
        Index("ix_ledger_summaries_unbilled", "oldest_unbilled", "case_id"),
        Index("ix_ledger_summaries_open", "oldest_open", "case_id"),
    )

    case_id: str = Field(primary_key=True, max_length=200)
    balance_cents: int = Field(sa_column=Column("balance_cents", BigInteger, nullable=False))
    unbilled: int
    oldest_unbilled: str | None = Field(default=None, max_length=10)
    oldest_open: str | None = Field(default=None, max_length=10)


class LogEntryRow(SQLModel, table=True):
    """One position of the audit log: which row (an event, a queued message, a delivery attempt) sits there.

    The sequencer appends these, one transaction at a time across processes; the tree over them is in
    ``log_nodes`` and its signed heads in ``checkpoints`` (kapflow.audit.merkle, kapflow.app.audit_log).
    """

    __tablename__ = "log_entries"
    __table_args__ = (UniqueConstraint("source", "source_id", name="uq_log_entries_source"),)

    position: int = Field(sa_column=Column("position", BigInteger, primary_key=True, autoincrement=False))
    source: str = Field(max_length=20)  # event | message | delivery | access | sign_in
    source_id: int = Field(sa_column=Column("source_id", BigInteger, nullable=False))
    case_id: str | None = Field(default=None, max_length=200)  # so a deleted row's case can still be named
    case_seq: int | None = Field(default=None)


class LogNodeRow(SQLModel, table=True):
    """The hash of one perfect subtree of the audit log: ``2**level`` leaves from ``index * 2**level``."""

    __tablename__ = "log_nodes"

    level: int = Field(sa_column=Column("level", SmallInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column("idx", BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column("hash", LargeBinary(32), nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A signed tree head of the audit log (its size and root), as the signed note the sequencer wrote."""

    __tablename__ = "checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    size: int = Field(sa_column=Column("size", BigInteger, nullable=False))
    root: bytes = Field(sa_column=Column("root", LargeBinary(32), nullable=False))
    at: str = Field(max_length=40)
    key_name: str = Field(max_length=200)
    key_id: str = Field(max_length=8)
    signed_note: str


class ApiKeyRow(SQLModel, table=True):
    """An API key of a service (a practice management system, an intake form): never its secret.

    ``key_hash`` is the hex HMAC-SHA256 of the whole key text under the pepper (``kapflow.app.api_keys``);
    ``last4`` is the secret's last four characters, for telling keys apart on a screen. A revoked key
    keeps its row (the audit history names it), so a name is never reused.
    """

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("name", name="uq_api_keys_name"),)

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    role: str = Field(max_length=50)
    delegate_roles: str  # a canonical JSON list of role names
    key_hash: str = Field(max_length=64)
    created_at: str = Field(max_length=40)
    created_by: str = Field(max_length=200)
    revoked_at: str | None = Field(default=None, max_length=40)
    revoked_by: str | None = Field(default=None, max_length=200)
    last4: str = Field(max_length=4)


class AccessRow(SQLModel, table=True):
    """One read of a case through the API: who (and the service that carried it), which case, which view, when.

    Ids, a role and a view name only, never what was read. Written by its own small command that
    neither reads nor locks the case row (``kapflow.app.access``), and placed in the audit log like
    an audit event, so a signed checkpoint covers it.
    """

    __tablename__ = "access_log"
    __table_args__ = (
        Index("ix_access_log_case_at", "case_id", "at"),  # who looked at this case this month
        Index("ix_access_log_actor_at", "actor", "at"),  # what this person looked at
        _unlogged("access_log", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: str = Field(max_length=40)
    actor: str = Field(max_length=200)
    role: str = Field(max_length=50)
    via: str | None = Field(default=None, max_length=200)  # the API key's name, when a service read for a person
    case_id: str = Field(max_length=200)
    view: str = Field(max_length=50)  # case | facts | history | triggers | ...: the route's view
    log_position: int | None = _log_position()


class ClientBindingRow(SQLModel, table=True):
    """A client identity bound to a case by the practice: the only case that identity reaches over the network.

    ``subject_hash`` is the SHA-256 of the identity provider's subject (no address or name is kept here);
    the binding and its removal are audited on the case (``client_bound``, ``client_unbound``).
    """

    __tablename__ = "client_bindings"

    case_id: str = Field(primary_key=True, max_length=200)
    subject_hash: str = Field(primary_key=True, max_length=64)
    bound_at: str = Field(max_length=40)
    bound_by: str = Field(max_length=200)


class ClientInvitationRow(SQLModel, table=True):
    """A one-time invitation for a case's client to bind its identity: staff hand it over, the client
    redeems it signed in. Only the code's SHA-256 is kept; it expires, and it is used once."""

    __tablename__ = "client_invitations"

    code_hash: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(max_length=200)
    created_at: str = Field(max_length=40)
    created_by: str = Field(max_length=200)
    expires_at: str = Field(max_length=40)
    used_at: str | None = Field(default=None, max_length=40)


class ConsoleUserRow(SQLModel, table=True):
    """A local account of the web console: a login name, a role, an argon2id hash (``kapflow.secrets.passwords``).

    ``totp_secret`` is the base32 TOTP secret when a second factor is set up (a code is never kept, only the
    time step of the last one accepted).
    A disabled account keeps its row, so a name is never reused and the audit history's actor stays one person.
    """

    __tablename__ = "console_users"
    __table_args__ = (UniqueConstraint("name", name="uq_console_users_name"),)

    user_id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=64)
    role: str = Field(max_length=50)
    password_hash: str = Field(max_length=200)
    totp_secret: str | None = Field(default=None, max_length=64)
    # The time step of the last TOTP code accepted: a code is used once (RFC 6238 section 5.2).
    totp_last_step: int | None = Field(default=None, sa_column=Column("totp_last_step", BigInteger, nullable=True))
    created_at: str = Field(max_length=40)
    created_by: str = Field(max_length=200)
    disabled_at: str | None = Field(default=None, max_length=40)


class ConsoleSessionRow(SQLModel, table=True):
    """A signed-in browser of the console (local account or OpenID): the SHA-256 of its token, never the token."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_actor", "actor", "via"),)  # ending a disabled account's sessions

    token_hash: str = Field(primary_key=True, max_length=64)
    actor: str = Field(max_length=200)  # the login name, or the OpenID subject
    role: str = Field(max_length=50)
    via: str = Field(max_length=10)  # local | oidc
    csrf: str = Field(max_length=64)
    created_at: str = Field(max_length=40)
    last_seen_at: str = Field(max_length=40)
    ended_at: str | None = Field(default=None, max_length=40)


class SignInAttemptRow(SQLModel, table=True):
    """One sign-in attempt, or a session's end: when, which name, from which address, what became of it.

    Never a password or a code. Placed in the audit log like an audit event (``log_position``), so a
    signed checkpoint covers it; the rate limit counts recent failures through the two indexes.
    """

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_name_at", "name", "at"),
        Index("ix_sign_in_attempts_source_at", "source", "at"),
        Index("ix_sign_in_attempts_at", "at"),
        _unlogged("sign_in_attempts", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: str = Field(max_length=40)
    name: str = Field(max_length=200)
    source: str | None = Field(default=None, max_length=100)  # the client's address, when known
    outcome: str = Field(max_length=30)
    log_position: int | None = _log_position()
