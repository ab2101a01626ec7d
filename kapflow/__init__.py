"""kapflow: an embeddable, audited clinical workflow engine.

    from kapflow import Actor, build_engine
    from kapflow.workflows.kap import KAP_PATHWAY

    engine = build_engine("sqlite:///practice.db", KAP_PATHWAY)
    case = engine.open_case({...inquiry...}, actor=Actor("fd-1", "front_desk"))
    engine.fire(case.case_id, "book_evaluation", actor=Actor("fd-1", "front_desk"))
"""

from pathlib import Path as _Path

from kapflow import _source_tree

_source_tree.install(_Path(__file__).parent)  # before anything imports kapflow.workflows

from kapflow.app.engine import Engine
from kapflow.app.runner import RetryPolicy
from kapflow.audit import AuditProblem, AuditReport
from kapflow.bootstrap import build_engine
from kapflow.clocks import ManualClock, SteppingClock
from kapflow.domain.appointments import Appointment, AppointmentFacts
from kapflow.domain.case import PREVIOUS_STATE, Actor, AuditEvent, CaseRecord, FactEntry, Outcome
from kapflow.domain.events import DeliveryOutcome, EventKind, TimerStatus
from kapflow.domain.facts import FactSpec
from kapflow.domain.verdict import Verdict
from kapflow.domain.workflow import (
    ClientFields,
    FactKind,
    GuardContext,
    ReadingMoment,
    Reminder,
    State,
    Transition,
    Workflow,
    moment_reading,
)
from kapflow.errors import (
    AdapterConfigError,
    AuditChainBroken,
    Blocker,
    ConcurrencyConflict,
    ConfigError,
    DeliveryFailed,
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
from kapflow.ports import Clock, SystemClock

__all__ = [
    "PREVIOUS_STATE",
    "Actor",
    "AdapterConfigError",
    "Appointment",
    "AppointmentFacts",
    "AuditChainBroken",
    "AuditEvent",
    "AuditProblem",
    "AuditReport",
    "Blocker",
    "CaseRecord",
    "ClientFields",
    "Clock",
    "ConcurrencyConflict",
    "ConfigError",
    "DeliveryFailed",
    "DeliveryOutcome",
    "Engine",
    "EventKind",
    "FactEntry",
    "FactKind",
    "FactSpec",
    "GuardContext",
    "IdempotencyKeyReused",
    "InvalidFact",
    "InvalidInput",
    "KapflowError",
    "ManualClock",
    "MigrationRefused",
    "NotPermitted",
    "Outcome",
    "ReadingMoment",
    "Refused",
    "Reminder",
    "RetryPolicy",
    "State",
    "SteppingClock",
    "StorageError",
    "SystemClock",
    "TimerStatus",
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
    "moment_reading",
]
__version__ = "0.1.0"
