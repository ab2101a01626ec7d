"""kapflow: an embeddable, audited clinical workflow engine.

    from kapflow import Actor, build_engine
    from kapflow.workflows.kap import KAP_PATHWAY

    engine = build_engine("sqlite:///practice.db", KAP_PATHWAY)
    case = engine.open_case({...inquiry...}, actor=Actor("fd-1", "front_desk"))
    engine.fire(case.case_id, "book_evaluation", actor=Actor("fd-1", "front_desk"))
"""

from kapflow.audit import AuditProblem, AuditReport
from kapflow.bootstrap import build_engine
from kapflow.domain.case import PREVIOUS_STATE, Actor, AuditEvent, CaseRecord, FactEntry, Outcome
from kapflow.domain.errors import (
    AuditChainBroken,
    Blocker,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    InvalidFact,
    InvalidInput,
    KapflowError,
    MigrationRefused,
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
from kapflow.domain.facts import FactSpec
from kapflow.domain.verdict import Verdict
from kapflow.domain.workflow import FactKind, GuardContext, Reminder, State, Transition, Workflow
from kapflow.engine import Engine
from kapflow.ports import Clock, SystemClock

__all__ = [
    "PREVIOUS_STATE",
    "Actor",
    "AuditChainBroken",
    "AuditEvent",
    "AuditProblem",
    "AuditReport",
    "Blocker",
    "CaseRecord",
    "Clock",
    "ConcurrencyConflict",
    "Engine",
    "FactEntry",
    "FactKind",
    "FactSpec",
    "GuardContext",
    "IdempotencyKeyReused",
    "InvalidFact",
    "InvalidInput",
    "KapflowError",
    "MigrationRefused",
    "NotPermitted",
    "Outcome",
    "Refused",
    "Reminder",
    "State",
    "StorageError",
    "SystemClock",
    "Transition",
    "TransitionBlocked",
    "TransitionNotAvailable",
    "UnknownCase",
    "UnknownFactKind",
    "UnknownTrigger",
    "Verdict",
    "Workflow",
    "WorkflowDefinitionError",
    "build_engine",
]
__version__ = "0.1.0"
