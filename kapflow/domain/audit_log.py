"""The audit log's records: what sits at a position, and a signed tree head. Pure data.

The log puts every row the audit history is made of in one order: audit events (transitions,
facts, refusals, notes, migrations), queued messages (who a reminder goes to) and delivery
attempts (what became of it), the access log's reads of cases (who looked at which case), and the
console's sign-in attempts (who tried to sign in, from where, and what became of it).
``kapflow.audit.leaves`` turns a record into its Merkle leaf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class LogSource(StrEnum):
    """The tables whose rows the audit log covers, and the order a batch places them in."""

    EVENT = "event"  # audit_events: the per-case chains
    MESSAGE = "message"  # outbox: each message as queued (channel, recipient, text)
    DELIVERY = "delivery"  # delivery_attempts: each try and its outcome (the message's status follows)
    ACCESS = "access"  # access_log: each read of a case through the API (who, which case, which view)
    SIGN_IN = "sign_in"  # sign_in_attempts: each console sign-in attempt and session end (name, address, outcome)


@dataclass(frozen=True)
class LogRecord:
    """One row as the log covers it: its table, its id there, and the fields its leaf hashes.

    For an event, ``fields`` are the event's hashed fields (its chain hash is recomputed from them,
    so a row edited without its hash, or with it, changes the leaf either way).
    """

    source: LogSource
    id: int
    fields: Mapping[str, object]
    case_id: str = ""
    case_seq: int | None = None  # an event's place in its case


@dataclass(frozen=True)
class LogSlot:
    """What the database holds at one position of the log, for verification.

    ``record`` is None when the row the position names is gone; ``row_position`` is the position the
    row itself says it has (they must agree).
    """

    position: int
    source: str
    source_id: int
    record: LogRecord | None
    row_position: int | None
    stored_leaf: bytes | None
    case_id: str = ""  # as placed: names the case of a row since deleted
    case_seq: int | None = None


@dataclass(frozen=True)
class CheckpointRecord:
    """A signed tree head as kept in the database: the log's size and root, and the signed note."""

    size: int
    root: bytes
    at: datetime
    key_name: str
    key_id: str
    note: str
    id: int | None = None
