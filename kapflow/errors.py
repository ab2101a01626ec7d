"""The public home of kapflow's exceptions; the tree is drawn in ``kapflow.domain.errors``."""

from kapflow.domain.errors import (
    AuditChainBroken,
    Blocker,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    InvalidFact,
    InvalidInput,
    KapflowError,
    NotPermitted,
    Refused,
    StorageError,
    TransitionBlocked,
    TransitionNotAvailable,
    UnknownCase,
    UnknownFactKind,
    UnknownTrigger,
    WorkflowDefinitionError,
)

__all__ = [
    "AuditChainBroken",
    "Blocker",
    "ConcurrencyConflict",
    "IdempotencyKeyReused",
    "InvalidFact",
    "InvalidInput",
    "KapflowError",
    "NotPermitted",
    "Refused",
    "StorageError",
    "TransitionBlocked",
    "TransitionNotAvailable",
    "UnknownCase",
    "UnknownFactKind",
    "UnknownTrigger",
    "WorkflowDefinitionError",
]
