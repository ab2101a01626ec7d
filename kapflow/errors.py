"""kapflow's exceptions: one base, structured attributes, no protected health information.

Every exception kapflow raises on purpose is a ``KapflowError`` and is
exported here. The tree:

    KapflowError
    ├── InvalidInput                 bad input from a caller; nothing was written
    │   ├── InvalidFact              a fact failed validation (kind, field, reason)
    │   ├── UnknownTrigger           the workflow has no such trigger
    │   ├── UnknownFactKind          the workflow records no such fact
    │   ├── DocumentIncomplete       a superbill or estimate lacks something; each is named
    │   └── IdempotencyKeyReused     the same key came with a different command
    ├── UnknownCase                  no case has that id
    ├── Refused                      a command was refused; the refusal is audited
    │   ├── NotPermitted             the actor's role may not do this
    │   ├── TransitionNotAvailable   the trigger does not leave the case's current state
    │   ├── TransitionBlocked        guards failed; carries every blocker
    │   └── MigrationRefused         the case cannot move to another workflow version; carries every reason
    ├── ConcurrencyConflict          the case changed under the command; retry
    │   └── LostRace                 a write's compare-and-swap missed (internal: the runner retries it)
    ├── WorkflowDefinitionError      a workflow failed validation; carries every problem
    ├── StorageError                 the database failed or is unreachable
    │   └── DuplicateIdempotencyKey  a concurrent command stored the same key first (internal: retried)
    ├── AuditChainBroken             verification found an edited, deleted or reordered row
    ├── CheckpointFormatError        a checkpoint, signed note or key text is malformed
    ├── SignatureInvalid             a signed note has no signature that verifies with a known key
    ├── Unauthenticated              a request's credential is missing or does not verify (HTTP 401)
    ├── ConfigError                  the settings are unreadable or wrong; carries every problem
    ├── AdapterConfigError           an adapter's configuration is unusable
    ├── DeliveryFailed               one delivery attempt failed (``permanent`` when retrying cannot help)
    ├── WebhookVerificationError     a received webhook failed verification
    ├── DiagramUnavailable           a diagram format needs an optional dependency
    └── MoveUndefined                the compiled machine has no such move (a kapflow bug if reached)

The errors of the domain (cases, workflows, facts) are defined in
``kapflow.domain.errors``, which must import nothing outside the standard
library; the others here. Messages name what was wrong and what to do. They
never carry a client's name, contact, clinical data or free text: only ids,
codes, field names and counts, so an exception can be logged or returned in an
HTTP body safely.
"""

from __future__ import annotations

from kapflow.domain.errors import (
    AuditChainBroken,
    Blocker,
    CheckpointFormatError,
    ConcurrencyConflict,
    DocumentIncomplete,
    IdempotencyKeyReused,
    InvalidFact,
    InvalidInput,
    KapflowError,
    MigrationRefused,
    NotPermitted,
    Refused,
    SignatureInvalid,
    StorageError,
    TransitionBlocked,
    TransitionNotAvailable,
    Unauthenticated,
    UnknownCase,
    UnknownFactKind,
    UnknownTrigger,
    WorkflowDefinitionError,
)


class LostRace(ConcurrencyConflict):
    """A write's compare-and-swap found the case changed. The command runner runs the command again."""

    code = "lost_race"

    def __init__(self, case_id: str) -> None:
        super().__init__(case_id, None, None)


class DuplicateIdempotencyKey(StorageError):
    """A concurrent command stored the same idempotency key first; the engine answers from it."""

    code = "duplicate_idempotency_key"

    def __init__(self) -> None:
        super().__init__("a concurrent command used the same idempotency key; retry to get its result")


class ConfigError(KapflowError):
    """The settings file is unreadable or wrong; ``problems`` lists every issue."""

    code = "config_error"

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = tuple(problems)

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "source": self.source, "problems": list(self.problems)}


class AdapterConfigError(KapflowError):
    """An adapter's configuration is unusable (bad URL, unreachable host at start-up, ...)."""

    code = "adapter_config_error"

    def __init__(self, adapter: str, problem: str) -> None:
        super().__init__(f"{adapter}: {problem}")
        self.adapter = adapter
        self.problem = problem

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "adapter": self.adapter, "problem": self.problem}


def missing_extra(exc: ModuleNotFoundError, extra: str, adapter: str | None = None) -> Exception:
    """The error for a part whose optional dependency is not installed: an ``AdapterConfigError`` naming the
    extra to install; ``exc`` itself when kapflow's own module is missing (kapflow is broken, not an extra)."""
    if exc.name is None or exc.name.startswith("kapflow"):
        return exc
    return AdapterConfigError(
        adapter or extra, f"needs the {exc.name} package: install kapflow[{extra}] (pip install 'kapflow[{extra}]')"
    )


class DeliveryFailed(KapflowError):
    """One delivery attempt failed. ``permanent`` failures are not retried."""

    code = "delivery_failed"

    def __init__(self, channel: str, reason: str, *, permanent: bool = False) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.permanent = permanent

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "channel": self.channel, "reason": self.reason, "permanent": self.permanent}


class WebhookVerificationError(KapflowError):
    """A received webhook failed verification; ``reason`` is one of the codes below.

    ``missing_header``, ``bad_timestamp``, ``timestamp_too_old``,
    ``timestamp_too_new``, ``bad_signature``, ``bad_secret``.
    """

    code = "webhook_verification_failed"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "reason": self.reason}


class DiagramUnavailable(KapflowError):
    """A diagram format needs an optional dependency that is not installed."""

    code = "diagram_unavailable"


class MoveUndefined(KapflowError):
    """The compiled machine has no move for this trigger from this state (a kapflow bug if reached)."""

    code = "move_undefined"

    def __init__(self, trigger: str, state: str) -> None:
        super().__init__(f"no move for {trigger!r} from {state!r}")
        self.trigger = trigger
        self.state = state

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "trigger": self.trigger, "state": self.state}


__all__ = [
    "AdapterConfigError",
    "AuditChainBroken",
    "Blocker",
    "CheckpointFormatError",
    "ConcurrencyConflict",
    "ConfigError",
    "DeliveryFailed",
    "DiagramUnavailable",
    "DocumentIncomplete",
    "DuplicateIdempotencyKey",
    "IdempotencyKeyReused",
    "InvalidFact",
    "InvalidInput",
    "KapflowError",
    "LostRace",
    "MigrationRefused",
    "MoveUndefined",
    "NotPermitted",
    "Refused",
    "SignatureInvalid",
    "StorageError",
    "TransitionBlocked",
    "TransitionNotAvailable",
    "Unauthenticated",
    "UnknownCase",
    "UnknownFactKind",
    "UnknownTrigger",
    "WebhookVerificationError",
    "WorkflowDefinitionError",
]
