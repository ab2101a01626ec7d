"""Moving cases in flight to another version of their workflow: a plan (the dry run), then the move.

A command like any other: it travels through the command runner (a
compare-and-swap on the case, its audit event, timers re-planned under the
new version, all in one transaction), and a refusal is audited like any
other. Whether a case may move is ``kapflow.domain.versions.can_migrate``;
this module adds who may ask. ``Engine.plan_migration`` and
``Engine.migrate_case`` call it.

Only staff may migrate: the target workflow's ``staff_roles``, or the roles a
caller passes; never an auditor: auditors read the history, they do not
change cases.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace

from kapflow.app.command_input import check_actor_shape, check_version_arg
from kapflow.app.context import AppContext
from kapflow.app.events import note_event
from kapflow.app.runner import Transaction
from kapflow.domain.case import Actor, CaseRecord, Outcome
from kapflow.domain.errors import (
    Blocker,
    ConcurrencyConflict,
    InvalidInput,
    MigrationRefused,
    NotPermitted,
    WorkflowDefinitionError,
)
from kapflow.domain.events import EventKind
from kapflow.domain.payload import check_identifier
from kapflow.domain.versions import MigrationVerdict, can_migrate
from kapflow.domain.workflow import Workflow
from kapflow.logging import get_logger

NEVER_MIGRATE = frozenset({"auditor"})
TRIGGER = "migrate"  # the name migrations and their refusals carry in the audit history
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


def iter_migration_plans(app: AppContext, to: Workflow) -> Iterator[CaseMigrationPlan]:
    """A plan for every non-final case on another version of ``to``'s workflow, streamed. Writes nothing."""
    for case in app.store.iter_cases():
        if case.workflow == to.name and case.workflow_version != to.version:
            plan = _plan(app, case, to)
            if plan is not None:
                yield plan


def _plan(app: AppContext, case: CaseRecord, to: Workflow) -> CaseMigrationPlan | None:
    target = _target(app, to)
    try:
        old = app.workflows.of(case)
    except WorkflowDefinitionError:
        # Its version is not loaded, so nothing can be judged; list it rather than hide it.
        reason = Blocker("version_not_loaded", f"version {case.workflow_version} is not loaded; load it to judge")
        return CaseMigrationPlan(case.id, case.state, case.version,
                                 MigrationVerdict(case.id, case.workflow_version, target.version, (reason,)))
    if old.state(case.state).final:
        return None
    verdict = can_migrate(case, old, target, app.practice)
    return CaseMigrationPlan(case.id, case.state, case.version, verdict)


def migrate_case(
    app: AppContext, case_id: str, to: Workflow, actor: Actor, *,
    expected_version: int | None = None, roles: Collection[str] | None = None,
) -> Outcome:
    """Move one case to version ``to`` in one transaction, audited; raises ``Refused`` (audited) if it may not.

    ``MigrationRefused`` carries every reason ``can_migrate`` found, ``NotPermitted``
    a role outside ``roles`` (by default the target's ``staff_roles``). Bad input (an
    unknown case, a case of another workflow or already on ``to``, a workflow that
    names no staff and no ``roles`` given) raises ``InvalidInput`` and writes nothing.
    """
    check_identifier(case_id, "case_id")
    check_actor_shape(actor)
    check_version_arg(expected_version)
    if roles is None and not to.staff_roles:
        raise InvalidInput(
            f"workflow {to.name!r} version {to.version!r} names no staff_roles: say which roles may migrate "
            "its cases (Workflow(staff_roles=...)) or pass roles=...",
            field="roles",
        )
    allowed = frozenset(to.staff_roles if roles is None else roles) - NEVER_MIGRATE

    def body(tx: Transaction) -> Outcome:
        case, old = tx.load(case_id)
        _check_case(case, to)
        target = _target(app, to)
        if actor.role not in old.roles | target.roles:
            raise InvalidInput(f"unknown role {actor.role!r}; roles: {', '.join(sorted(old.roles))}",
                               field="actor.role")
        if expected_version is not None and case.version != expected_version:
            raise ConcurrencyConflict(case.id, expected_version, case.version)
        versions = {"from_version": case.workflow_version, "to_version": target.version}
        if actor.role not in allowed:
            refusal = NotPermitted(case_id=case.id, trigger=TRIGGER, state=case.state, role=actor.role,
                                   allowed=allowed)
            tx.refuse(case, actor, refusal, trigger=TRIGGER, data=versions)
        verdict = can_migrate(case, old, target, app.practice)
        if not verdict.ok:
            tx.refuse(case, actor, MigrationRefused(
                case_id=case.id, state=case.state, from_version=case.workflow_version,
                to_version=target.version, reasons=verdict.reasons), trigger=TRIGGER, data=versions)
        # The event carries the new version: the version whose rules judged the move, as for any transition.
        event = note_event(replace(case, workflow_version=target.version), actor, EventKind.MIGRATED,
                           at=tx.now(), data=versions, trigger=TRIGGER)
        updated = replace(
            case, workflow_version=target.version, version=case.version + 1, event_count=case.event_count + 1,
            head_hash=event.hash, updated_at=event.at,
        )
        tx.change(case, updated, event, expected_version)
        return Outcome(case.id, EventKind.MIGRATED, case.state, updated.version, updated.event_count,
                       trigger=TRIGGER, from_state=case.state, extra=versions)

    outcome = app.runner.run(body, case_id=case_id)
    _log.info("migrated", case_id=case_id, workflow=to.name, version=to.version)
    return outcome


def _target(app: AppContext, to: Workflow) -> Workflow:
    """The engine's own copy of version ``to`` (the one its timers and machine use), or a clear error."""
    found = app.workflows.get(to.name, to.version)
    if found is None:
        raise WorkflowDefinitionError(to.name, [
            f"version {to.version!r} is not loaded by this engine; pass it to the Engine "
            "(or list it in the settings' workflows) before migrating to it"
        ])
    return found


def _check_case(case: CaseRecord, to: Workflow) -> None:
    if case.workflow != to.name:
        raise InvalidInput(f"case {case.id!r} is on workflow {case.workflow!r}, not {to.name!r}", field="to")
    if case.workflow_version == to.version:
        raise InvalidInput(f"case {case.id!r} is already on version {to.version!r}", field="to")
