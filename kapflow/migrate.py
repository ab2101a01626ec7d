"""Moving cases in flight to another version of their workflow: a plan (the dry run), then the move.

A friend of the engine, like ``kapflow.reminders``: a migration is written
through ``Engine.write_change`` (compare-and-swap on the case, its audit
event, timers re-planned under the new version, all in one transaction) and
a refusal through ``Engine.append_note``, so it is audited like any other.
Whether a case may move is ``kapflow.domain.versions.can_migrate``; this
module adds who may ask, and the transaction.

Only staff may migrate: the target workflow's ``staff_roles``, or the roles a
caller passes; never an auditor: auditors read the history, they do not
change cases.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from kapflow.audit import link_hash
from kapflow.domain.case import Actor, AuditEvent, CaseRecord, Outcome
from kapflow.domain.errors import (
    Blocker,
    ConcurrencyConflict,
    InvalidInput,
    MigrationRefused,
    NotPermitted,
    Refused,
    UnknownCase,
    WorkflowDefinitionError,
)
from kapflow.domain.payload import check_identifier
from kapflow.domain.versions import MigrationVerdict, can_migrate
from kapflow.domain.workflow import Workflow
from kapflow.engine import Engine, LostRace
from kapflow.logging import get_logger
from kapflow.ports import UnitOfWork

NEVER_MIGRATE = frozenset({"auditor"})
TRIGGER = "migrate"  # the name migrations and their refusals carry in the audit history
_RETRIES = 5
_log = get_logger("kapflow.migrate")


@dataclass(frozen=True)
class CaseMigrationPlan:
    """One in-flight case: can it move to the target version, and if not, why.

    ``version`` is the case's version when planned: pass it as ``expected_version``
    to move exactly the case that was shown, or get ``ConcurrencyConflict``.
    """

    case_id: str
    state: str
    version: int
    verdict: MigrationVerdict

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    def as_dict(self) -> dict[str, object]:
        return {"case_id": self.case_id, "state": self.state, "version": self.version, **self.verdict.as_dict()}


def iter_migration_plans(engine: Engine, to: Workflow) -> Iterator[CaseMigrationPlan]:
    """A plan for every non-final case on another version of ``to``'s workflow, streamed. Writes nothing."""
    for case in engine.store.iter_cases():
        if case.workflow == to.name and case.workflow_version != to.version:
            plan = _plan(engine, case, to)
            if plan is not None:
                yield plan


def plan_migration(engine: Engine, to: Workflow) -> list[CaseMigrationPlan]:
    """Every in-flight case that could move to ``to``, each with its verdict (the dry run)."""
    return list(iter_migration_plans(engine, to))


def _plan(engine: Engine, case: CaseRecord, to: Workflow) -> CaseMigrationPlan | None:
    target = _target(engine, case, to)
    try:
        old = engine.workflow_of(case)
    except WorkflowDefinitionError:
        # Its version is not loaded, so nothing can be judged; list it rather than hide it.
        reason = Blocker("version_not_loaded", f"version {case.workflow_version} is not loaded; load it to judge")
        return CaseMigrationPlan(case.id, case.state, case.version,
                                 MigrationVerdict(case.id, case.workflow_version, target.version, (reason,)))
    if old.state(case.state).final:
        return None
    verdict = can_migrate(case, old, target, engine.timezone)
    return CaseMigrationPlan(case.id, case.state, case.version, verdict)


def migrate_case(
    engine: Engine,
    case_id: str,
    to: Workflow,
    actor: Actor,
    *,
    expected_version: int | None = None,
    roles: Collection[str] | None = None,
) -> Outcome:
    """Move one case to version ``to`` in one transaction, audited; raises ``Refused`` (audited) if it may not.

    ``MigrationRefused`` carries every reason ``can_migrate`` found, ``NotPermitted``
    a role outside ``roles`` (by default the target's ``staff_roles``). Bad input (an
    unknown case, a case of another workflow or already on ``to``, a workflow that
    names no staff and no ``roles`` given) raises ``InvalidInput`` and writes nothing.
    """
    check_identifier(case_id, "case_id")
    _check_arguments(actor, expected_version)
    if roles is None and not to.staff_roles:
        raise InvalidInput(
            f"workflow {to.name!r} version {to.version!r} names no staff_roles: say which roles may migrate "
            "its cases (Workflow(staff_roles=...)) or pass roles=...",
            field="roles",
        )
    allowed = frozenset(to.staff_roles if roles is None else roles) - NEVER_MIGRATE
    for _attempt in range(_RETRIES):
        try:
            outcome = _migrate_once(engine, case_id, to, actor, expected_version, allowed)
        except LostRace:  # a refusal lost the compare-and-swap: judge the case again as it is now
            continue
        _log.info("migrated", case_id=case_id, workflow=to.name, version=to.version)
        return outcome
    raise ConcurrencyConflict(case_id, expected_version, None)


def _migrate_once(
    engine: Engine, case_id: str, to: Workflow, actor: Actor, expected: int | None, allowed: frozenset[str]
) -> Outcome:
    with engine.store.write() as uow:
        case = uow.load_case(case_id)
        if case is None:
            raise UnknownCase(case_id)
        _check_case(case, to)
        old, target = engine.workflow_of(case), _target(engine, case, to)
        if actor.role not in old.roles | target.roles:
            raise InvalidInput(f"unknown role {actor.role!r}; roles: {', '.join(sorted(old.roles))}",
                               field="actor.role")
        if expected is not None and case.version != expected:
            raise ConcurrencyConflict(case.id, expected, case.version)
        if actor.role not in allowed:
            _refuse(engine, uow, case, actor, target, NotPermitted(
                case_id=case.id, trigger=TRIGGER, state=case.state, role=actor.role, allowed=allowed))
        verdict = can_migrate(case, old, target, engine.timezone)
        if not verdict.ok:
            _refuse(engine, uow, case, actor, target, MigrationRefused(
                case_id=case.id, state=case.state, from_version=case.workflow_version,
                to_version=target.version, reasons=verdict.reasons))
        return _write(engine, uow, case, actor, target, expected)


def _write(
    engine: Engine, uow: UnitOfWork, case: CaseRecord, actor: Actor, target: Workflow, expected: int | None
) -> Outcome:
    versions = {"from_version": case.workflow_version, "to_version": target.version}
    # The event carries the new version: the version whose rules judged the move, as for any transition.
    event = engine.audit_event(replace(case, workflow_version=target.version), actor, "migrated",
                               data=versions, trigger=TRIGGER)
    updated = replace(
        case, workflow_version=target.version, version=case.version + 1, event_count=case.event_count + 1,
        head_hash=event.hash, updated_at=event.at,
    )
    engine.write_change(uow, case, updated, event, expected)
    uow.commit()
    return Outcome(case.id, "migrated", case.state, updated.version, updated.event_count,
                   trigger=TRIGGER, from_state=case.state, extra=versions)


def _refuse(
    engine: Engine, uow: UnitOfWork, case: CaseRecord, actor: Actor, target: Workflow, refusal: Refused
) -> NoReturn:
    """Append the refusal to the case's audit history (with every reason as a blocker), commit, raise it."""
    if isinstance(refusal, MigrationRefused):
        blockers = tuple(r.as_dict() for r in refusal.reasons)
    else:
        blockers = ({"code": refusal.code, "message": refusal.message, "guard": "", "facts": {}},)
    data = {"from_version": case.workflow_version, "to_version": target.version}
    event = _with_blockers(engine.audit_event(case, actor, "refused", data=data, trigger=TRIGGER), blockers)
    engine.append_note(uow, case, event)
    uow.commit()
    _log.info("refused", case_id=case.id, trigger=TRIGGER, code=refusal.code)
    raise refusal


def _with_blockers(event: AuditEvent, blockers: tuple[dict[str, Any], ...]) -> AuditEvent:
    # audit_event writes no blockers; the hash covers them, so it is computed again.
    unsigned = replace(event, blockers=blockers, hash="")
    return replace(unsigned, hash=link_hash(unsigned))


def _target(engine: Engine, case: CaseRecord, to: Workflow) -> Workflow:
    """The engine's own copy of version ``to`` (the one its timers and machine use), or a clear error."""
    try:
        return engine.workflow_of(replace(case, workflow=to.name, workflow_version=to.version))
    except WorkflowDefinitionError:
        raise WorkflowDefinitionError(to.name, [
            f"version {to.version!r} is not loaded by this engine; pass it to the Engine "
            "(or list it in the settings' workflows) before migrating to it"
        ]) from None


def _check_case(case: CaseRecord, to: Workflow) -> None:
    if case.workflow != to.name:
        raise InvalidInput(f"case {case.id!r} is on workflow {case.workflow!r}, not {to.name!r}", field="to")
    if case.workflow_version == to.version:
        raise InvalidInput(f"case {case.id!r} is already on version {to.version!r}", field="to")


def _check_arguments(actor: object, expected: object) -> None:
    if not isinstance(actor, Actor):
        raise InvalidInput("actor must be an Actor(id, role)", field="actor")
    check_identifier(actor.id, "actor.id")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 1):
        raise InvalidInput("expected_version must be a whole number from 1, the version you read",
                           field="expected_version")
