"""The vocabularies commands and the worker speak: audit event kinds, timer and delivery outcomes.

String enums: each member is its text, so a value read back from the database
(plain text) compares equal to its member, and JSON shows the text.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """What an audit event records (``AuditEvent.kind``; ``Outcome.kind`` for the changes among them)."""

    OPENED = "opened"  # a case was opened from its intake
    TRANSITION = "transition"  # a trigger moved the case
    FACT = "fact"  # a fact was recorded
    MIGRATED = "migrated"  # the case moved to another version of its workflow
    REFUSED = "refused"  # an attempt was refused; its blockers say why
    REMINDER = "reminder"  # a due reminder's fate (queued, skipped, missed, ...)
    DELIVERY_FAILED = "delivery_failed"  # a message the worker gave up delivering
    MESSAGE_DROPPED = "message_dropped"  # a queued message found stale before an attempt, never sent
    CLIENT_INVITED = "client_invited"  # staff made a one-time invitation for the client to bind its identity
    CLIENT_BOUND = "client_bound"  # staff bound a client's identity (its hash) to the case: it may reach it
    CLIENT_UNBOUND = "client_unbound"  # that binding was removed


NOTE_KINDS = frozenset({EventKind.REFUSED, EventKind.REMINDER, EventKind.DELIVERY_FAILED, EventKind.MESSAGE_DROPPED,
                        EventKind.CLIENT_INVITED, EventKind.CLIENT_BOUND, EventKind.CLIENT_UNBOUND})
"""Events that change neither the case's state nor its version."""


class TimerStatus(StrEnum):
    """How a due timer was settled (the timers table's ``status`` once closed)."""

    DONE = "done"  # its message was queued, or its trigger fired
    SKIPPED = "skipped"  # its rule already holds (the fee was paid), or its trigger was refused
    MISSED = "missed"  # overdue beyond its grace: the worker was down too long
    UNDELIVERABLE = "undeliverable"  # no address for its audience on its channel
    CANCELLED = "cancelled"  # no longer planned: the case moved on
    LOST = "lost"  # another worker holds it now, or the case kept changing: it will be settled again
    FAILED = "failed"  # settling it raised on every attempt: parked, audited on its case (kapflow timers --failed)


class DeliveryOutcome(StrEnum):
    """One attempt to deliver an outbox message."""

    SENT = "sent"
    FAILED = "failed"  # to be retried after a backoff
    GAVE_UP = "gave_up"  # permanent, or out of attempts: audited on the case
    DROPPED = "dropped"  # stale before an attempt (its appointment changed, its deadline passed): never sent
