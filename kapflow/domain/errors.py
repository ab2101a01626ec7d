"""The domain's exceptions: cases, workflows, facts, commands.

The domain must import nothing outside the standard library, so its errors
are defined here; ``kapflow.errors`` exports them with the rest of the tree,
and its docstring draws the whole of it.

Messages name what was wrong and what to do. They never carry a client's
name, contact, clinical data or free text: only ids, codes, field names and
counts, so an exception can be logged or returned in an HTTP body safely.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Blocker:
    """One reason a transition may not happen now.

    ``code`` is stable for programs, ``message`` is a sentence front-desk
    staff can act on, ``facts`` names what the guard looked at (values are
    codes, counts, dates and thresholds, never free text).
    """

    code: str
    message: str
    guard: str = ""
    facts: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "guard": self.guard,
            "facts": dict(self.facts),
        }


class KapflowError(Exception):
    """The base of every error kapflow raises on purpose."""

    code = "kapflow_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready body: the code, the message and the structured attributes."""
        return {"error": self.code, "message": self.message}


class InvalidInput(KapflowError):
    """Bad input from a caller. Nothing was written."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "field": self.field}


class InvalidFact(InvalidInput):
    """A fact failed validation."""

    code = "invalid_fact"

    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(f"{kind}.{field}: {reason}", field=field)
        self.kind = kind
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "kind": self.kind, "reason": self.reason}


class UnknownTrigger(InvalidInput):
    """The workflow has no transition with this trigger."""

    code = "unknown_trigger"

    def __init__(self, trigger: str, known: Collection[str]) -> None:
        super().__init__(
            f"unknown trigger {trigger!r}; known triggers: {', '.join(sorted(known))}",
            field="trigger",
        )
        self.trigger = trigger
        self.known = tuple(sorted(known))

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "trigger": self.trigger, "known": list(self.known)}


class UnknownFactKind(InvalidInput):
    """The workflow records no fact of this kind."""

    code = "unknown_fact_kind"

    def __init__(self, kind: str, known: Collection[str]) -> None:
        super().__init__(
            f"unknown fact kind {kind!r}; known kinds: {', '.join(sorted(known))}",
            field="kind",
        )
        self.kind = kind
        self.known = tuple(sorted(known))

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "kind": self.kind, "known": list(self.known)}


class DocumentIncomplete(InvalidInput):
    """A billing document (a superbill, a good faith estimate) cannot be made: each thing it lacks is named,
    with what to do (record the client's address, set [billing.practice], ...). Nothing was written."""

    code = "document_incomplete"

    def __init__(self, document: str, missing: Collection[str]) -> None:
        items = list(missing)
        super().__init__(f"the {document} cannot be made ({len(items)}): " + "; ".join(items), field=document)
        self.document = document
        self.missing = tuple(items)

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "document": self.document, "missing": list(self.missing)}


class IdempotencyKeyReused(InvalidInput):
    """The idempotency key was used before for a different command."""

    code = "idempotency_key_reused"

    def __init__(self, key_digest: str) -> None:
        super().__init__(
            "this idempotency key was already used for a different command; "
            "send a new key for a new command",
            field="idempotency_key",
        )
        self.key_digest = key_digest

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "key_digest": self.key_digest}


class UnknownCase(KapflowError):
    """No case has this id."""

    code = "unknown_case"

    def __init__(self, case_id: str) -> None:
        super().__init__(f"no case with id {case_id!r}; list cases to find the right id")
        self.case_id = case_id

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "case_id": self.case_id}


class Refused(KapflowError):
    """A command was refused. The attempt is in the audit history."""

    code = "refused"

    def __init__(
        self, message: str, *, case_id: str, trigger: str, state: str, fact_kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.case_id = case_id
        self.trigger = trigger  # "" when the command recorded a fact (``fact_kind``) rather than fired
        self.state = state
        self.fact_kind = fact_kind

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            **super().as_dict(),
            "case_id": self.case_id,
            "trigger": self.trigger,
            "state": self.state,
        }
        if self.fact_kind is not None:
            body["fact_kind"] = self.fact_kind
        return body

    def audited_blockers(self) -> tuple[dict[str, object], ...]:
        """Every reason for the refusal, as its audit event records them."""
        return (Blocker(self.code, self.message).as_dict(),)


class NotPermitted(Refused):
    """The actor's role may not fire this trigger or record this fact."""

    code = "not_permitted"

    def __init__(
        self, *, case_id: str, trigger: str, state: str, role: str, allowed: Collection[str],
        fact_kind: str | None = None,
    ) -> None:
        what = f"record {_a(fact_kind)}" if fact_kind is not None else f"do {trigger!r}"
        super().__init__(
            f"role {role!r} may not {what}; allowed roles: {', '.join(sorted(allowed))}",
            case_id=case_id,
            trigger=trigger,
            state=state,
            fact_kind=fact_kind,
        )
        self.role = role
        self.allowed = tuple(sorted(allowed))

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "role": self.role, "allowed": list(self.allowed)}


class TransitionNotAvailable(Refused):
    """The trigger exists but does not leave the case's current state."""

    code = "transition_not_available"

    def __init__(
        self, *, case_id: str, trigger: str, state: str, available: Collection[str],
        blockers: Sequence[Blocker] = (),
    ) -> None:
        listed = ", ".join(sorted(available)) or "none"
        pending = "".join(f"; {b.code}: {b.message}" for b in blockers)
        super().__init__(
            f"{trigger!r} cannot be fired from state {state!r}{pending}; triggers from here: {listed}",
            case_id=case_id,
            trigger=trigger,
            state=state,
        )
        self.available = tuple(sorted(available))
        self.blockers = tuple(blockers)  # what the case waits for in its state (the state's pending guards)

    def as_dict(self) -> dict[str, object]:
        return {
            **super().as_dict(), "available": list(self.available), "blockers": [b.as_dict() for b in self.blockers],
        }

    def audited_blockers(self) -> tuple[dict[str, object], ...]:
        return (*super().audited_blockers(), *(b.as_dict() for b in self.blockers))


class TransitionBlocked(Refused):
    """One or more guards failed. Every blocker is listed."""

    code = "transition_blocked"

    def __init__(
        self, *, case_id: str, trigger: str, state: str, blockers: Sequence[Blocker],
        fact_kind: str | None = None,
    ) -> None:
        lines = "; ".join(f"{b.code}: {b.message}" for b in blockers)
        what = f"recording {_a(fact_kind)}" if fact_kind is not None else repr(trigger)
        super().__init__(
            f"{what} is blocked ({len(blockers)}): {lines}",
            case_id=case_id,
            trigger=trigger,
            state=state,
            fact_kind=fact_kind,
        )
        self.blockers = tuple(blockers)

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "blockers": [b.as_dict() for b in self.blockers]}

    def audited_blockers(self) -> tuple[dict[str, object], ...]:
        return tuple(b.as_dict() for b in self.blockers)


def _a(kind: str) -> str:
    """A fact kind in a sentence: "an appointment", "a prescription"."""
    words = kind.replace("_", " ")
    return f"{'an' if words[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {words}"


class MigrationRefused(Refused):
    """The case cannot move to another workflow version. Every reason is listed (see ``domain.versions``)."""

    code = "migration_refused"

    def __init__(
        self, *, case_id: str, state: str, from_version: str, to_version: str, reasons: Sequence[Blocker]
    ) -> None:
        lines = "; ".join(f"{r.code}: {r.message}" for r in reasons)
        super().__init__(
            f"case cannot move from version {from_version!r} to {to_version!r} ({len(reasons)}): {lines}",
            case_id=case_id,
            trigger="migrate",
            state=state,
        )
        self.from_version = from_version
        self.to_version = to_version
        self.reasons = tuple(reasons)

    def as_dict(self) -> dict[str, object]:
        return {
            **super().as_dict(),
            "from_version": self.from_version,
            "to_version": self.to_version,
            "reasons": [r.as_dict() for r in self.reasons],
        }

    def audited_blockers(self) -> tuple[dict[str, object], ...]:
        return tuple(r.as_dict() for r in self.reasons)


class ConcurrencyConflict(KapflowError):
    """The case changed between reading and writing. Reload it and retry."""

    code = "concurrency_conflict"

    def __init__(self, case_id: str, expected_version: int | None, actual_version: int | None) -> None:
        if expected_version is None:
            detail = "changed while the command ran"
        else:
            detail = f"changed (expected version {expected_version}, found {actual_version})"
        super().__init__(f"case {case_id!r} {detail}; reload the case and retry")
        self.case_id = case_id
        self.expected_version = expected_version
        self.actual_version = actual_version

    def as_dict(self) -> dict[str, object]:
        return {
            **super().as_dict(),
            "case_id": self.case_id,
            "expected_version": self.expected_version,
            "actual_version": self.actual_version,
        }


class WorkflowDefinitionError(KapflowError):
    """A workflow definition failed validation. Every problem is listed."""

    code = "workflow_definition_error"

    def __init__(self, workflow: str, problems: Sequence[str]) -> None:
        super().__init__(
            f"workflow {workflow!r} is invalid ({len(problems)} problems): " + "; ".join(problems)
        )
        self.workflow = workflow
        self.problems = tuple(problems)

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "workflow": self.workflow, "problems": list(self.problems)}


class StorageError(KapflowError):
    """The database failed or could not be reached. Nothing was committed."""

    code = "storage_error"


class AuditChainBroken(KapflowError):
    """Audit verification found a row that was edited, deleted or reordered."""

    code = "audit_chain_broken"

    def __init__(self, case_id: str, seq: int | None, reason: str) -> None:
        where = f"row {seq}" if seq is not None else "the case's head"
        super().__init__(f"audit chain of case {case_id!r} is broken at {where}: {reason}")
        self.case_id = case_id
        self.seq = seq
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {
            **super().as_dict(),
            "case_id": self.case_id,
            "seq": self.seq,
            "reason": self.reason,
        }


class CheckpointFormatError(KapflowError):
    """A checkpoint, signed note or key text is malformed, so nothing in it can be trusted.

    Raised by the parsers in ``kapflow.audit.note`` (and ``signing``) before any signature is
    checked. ``part`` names what was being read (``checkpoint``, ``signed note``, ``verifier key``,
    ``signer key``), ``reason`` what was wrong with it. Messages never quote key material: a signer
    key is a secret, and a message may be logged.
    """

    code = "checkpoint_format_error"

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"malformed {part}: {reason}")
        self.part = part
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "part": self.part, "reason": self.reason}


class SignatureInvalid(KapflowError):
    """A signed note has no signature that verifies with a known key.

    ``key_name`` and ``key_id`` (8 hex digits) name the key that signed it; ``reason`` is
    ``unknown_key`` (no verifier key of that name and id was given: pass its public key) or
    ``bad_signature`` (the note was changed after signing, or signed by another key of the same id).
    """

    code = "signature_invalid"

    def __init__(self, key_name: str, key_id: str, reason: str) -> None:
        key = f"{key_name}+{key_id}"
        if reason == "unknown_key":
            message = (
                f"the note is signed by key {key}, which is not among the verifier keys given; "
                "pass that key's public (verifier) key to check it"
            )
        else:
            message = (
                f"the signature by key {key} does not verify: the note was changed after it was signed, "
                "or signed by another key with the same name and id; do not trust it"
            )
        super().__init__(message)
        self.key_name = key_name
        self.key_id = key_id
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "key_name": self.key_name, "key_id": self.key_id, "reason": self.reason}


class Unauthenticated(KapflowError):
    """A request carried no credential, or one that does not verify: a bearer token (signature, issuer,
    audience, lifetime, algorithm) or an API key (unknown, revoked, malformed).

    ``reason`` is a stable code (``missing``, ``expired``, ``bad_signature``, ``wrong_audience``,
    ``unknown_key``, ``revoked``, ...). The message says what to fix and never repeats the credential.
    """

    code = "unauthenticated"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "reason": self.reason}
