"""Drive KAP cases through the pathway with synthetic data, for tests at every level; checks and a
reminder recorder that tests of any workflow share."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from kapflow.app.engine import Engine
from kapflow.app.events import note_event
from kapflow.app.runner import Transaction
from kapflow.domain.case import Actor, CaseRecord, replay_events
from kapflow.domain.events import EventKind
from kapflow.errors import TransitionNotAvailable
from kapflow.ports import UnitOfWork
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock, ReminderKit

CLIENT = Actor("client-portal", "client")
FRONT_DESK = Actor("fd-avery", "front_desk")
PRESCRIBER = Actor("np-rowan", "prescriber")
THERAPIST = Actor("th-jordan", "therapist")
BILLING = Actor("billing-1", "billing")
AUDITOR = Actor("auditor-1", "auditor")

INQUIRY = {
    "first_name": "Sample",
    "last_name": "Client-One",
    "date_of_birth": "1988-04-12",
    "email": "sample.client@example.org",
    "phone": "+1 555 010 0101",
    "concerns": ["depression"],
    "message": "Looking for options after several medications.",
}


def open_case(engine: Engine, **changes: object) -> str:
    return engine.open_case({**INQUIRY, **changes}, actor=FRONT_DESK).case_id


def clinician_of(case_id: str) -> str:
    """A clinician id of the case's own, so the bookings of many cases at one time never collide."""
    return "np-" + re.sub(r"[^A-Za-z0-9._@-]", "-", case_id)[:90]


def who(case_id: str, kind: str = "") -> dict[str, str]:
    """The case's own clinician (and room, for a KAP session), for a booking of ``kind``."""
    found = {"clinician": clinician_of(case_id)}
    if kind == "kap_session":
        found["room"] = "room-" + clinician_of(case_id)
    return found


def booking(case_id: str, kind: str, starts: datetime | str, **extra: Any) -> dict[str, Any]:
    """A booking of ``kind`` at ``starts`` with the case's own clinician (and room, for a KAP session)."""
    when = starts if isinstance(starts, str) else starts.isoformat()
    return {"kind": kind, "starts_at": when, **who(case_id, kind), **extra}


def to_evaluating(engine: Engine, clock: FakeClock, case_id: str) -> None:
    engine.record(case_id, "appointment", booking(case_id, "evaluation", clock.now() + timedelta(days=3)),
                  actor=FRONT_DESK)
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    engine.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    clock.advance(days=3)
    engine.fire(case_id, "start_evaluation", actor=PRESCRIBER)


def to_ready(engine: Engine, clock: FakeClock, case_id: str, sessions: int = 3) -> None:
    """From a new case to ready_for_kap: evaluated suitable, prescription, consent, plan, intentions."""
    to_evaluating(engine, clock, case_id)
    engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    engine.fire(case_id, "find_suitable", actor=PRESCRIBER)
    today = clock.now().date()
    engine.record(
        case_id,
        "prescription",
        {"prescriber": "NP Rowan Sample", "issued_on": today.isoformat(),
         "expires_on": (today + timedelta(days=180)).isoformat()},
        actor=PRESCRIBER,
    )
    engine.record(case_id, "consent", {"form_version": "2026-01", "signed_on": today.isoformat()}, actor=THERAPIST)
    engine.record(case_id, "treatment_plan", {"action": "set", "sessions": sessions}, actor=PRESCRIBER)
    engine.fire(case_id, "start_intention_setting", actor=THERAPIST)
    engine.fire(case_id, "complete_intention_setting", actor=THERAPIST, data={"intentions": "ground; rest"})


def prepare_dosing(engine: Engine, case_id: str, systolic: int = 122, diastolic: int = 78) -> None:
    """Record the pre-dose checklist: vitals, fasting, escort, clinician present."""
    engine.record(case_id, "vitals", {"phase": "pre_dose", "systolic": systolic, "diastolic": diastolic},
                  actor=THERAPIST)
    engine.record(case_id, "fasting", {"attested": True, "hours": 6}, actor=CLIENT)
    engine.record(case_id, "escort", {"name": "Escort Sample", "phone": "+1 555 010 0199"}, actor=FRONT_DESK)
    engine.record(case_id, "clinician_present", {"clinician": "Jordan Sample, LCSW"}, actor=THERAPIST)


def dose_and_discharge(engine: Engine, clock: FakeClock, case_id: str) -> None:
    """A KAP session up to its integration: checklist, dosing, 2 h observation, discharge."""
    prepare_dosing(engine, case_id)
    engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    clock.advance(minutes=120)
    engine.record(case_id, "vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76}, actor=THERAPIST)
    engine.record(case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True}, actor=THERAPIST)
    engine.fire(case_id, "discharge", actor=THERAPIST)


def one_kap_session(engine: Engine, clock: FakeClock, case_id: str) -> None:
    """A whole KAP session: checklist, dosing, 2 h observation, discharge, integration."""
    dose_and_discharge(engine, clock, case_id)
    clock.advance(minutes=60)
    engine.fire(case_id, "complete_integration", actor=THERAPIST)


# ------------------------------------------------------------------ checks, for cases of any workflow


def transitions_of(engine: Engine, case_id: str) -> list[str]:
    """The triggers of the case's transitions, in order."""
    return [ev.trigger or "" for ev in engine.history(case_id) if ev.kind == "transition"]


def assert_replays(engine: Engine, case_id: str) -> None:
    """The case's audit history replays to its row: state, previous state, version and facts."""
    case = engine.case(case_id)
    assert replay_events(engine.history(case_id)) == (case.state, case.previous_state, case.version, case.facts)


def assert_audited(engine: Engine, case_id: str) -> None:
    """The audit chain verifies, and the case's history replays to its row."""
    assert engine.verify_audit().ok
    assert_replays(engine, case_id)


def assert_ended(
    engine: Engine, case_id: str, state: str, *, tried: tuple[str, ...] = (), actor: Actor = FRONT_DESK,
    data: dict[str, Any] | None = None,
) -> None:
    """The case rests in final ``state``: no transition is available, each trigger ``tried`` (by ``actor``,
    with ``data``) is refused as not available, it is still in ``state``, and the audit chain verifies."""
    assert engine.case(case_id).state == state
    assert engine.available(case_id) == []
    for trigger in tried:
        with pytest.raises(TransitionNotAvailable):
            engine.fire(case_id, trigger, actor=actor, data=data)
    assert engine.case(case_id).state == state
    assert engine.verify_audit().ok


# ------------------------------------------------------------------ reminders, for any workflow

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
"""When the reminder tests' clock starts."""
CONTACTS = {"front_desk": {"email": "desk@example.org"}, "therapist": {"email": "therapist@example.org"}}
"""The staff the reminder tests' worker emails."""


def at(day: int, hour: int = 9) -> datetime:
    """``hour`` o'clock ``day`` days after T0."""
    return T0.replace(hour=hour) + timedelta(days=day)


class Recorder:
    """Advances the kit's clock an hour at a time, running the worker, noting when each email went out."""

    def __init__(self, kit: ReminderKit) -> None:
        self.kit = kit
        self.seen: list[tuple[str, str, str]] = []

    def until(self, moment: datetime) -> None:
        self.note()
        while self.kit.clock.now() < moment:
            self.kit.clock.advance(min(timedelta(hours=1), moment - self.kit.clock.now()))
            self.note()

    def note(self) -> None:
        before = len(self.kit.email.sent)
        self.kit.run()
        for m in self.kit.email.sent[before:]:
            self.seen.append((f"{self.kit.clock.now():%m-%d %H:%M}", m.key.split(":")[-2], m.recipient))


# ------------------------------------------------------------------ the database, raw


def query(url: str, sql: str, **params: object) -> list[tuple[Any, ...]]:
    """Rows of one raw SQL query, on either backend, outside kapflow (as an auditor's tool would read)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def cold_read(url: str, case_id: str) -> CaseRecord:
    """The case as a command in another process reads it (nothing of it kept): its row, its entries with their
    kinds, and its kept views' snapshots."""
    store = SqlStore(url, recent_cases=0)
    try:
        with store.write() as uow:
            found = uow.load_case(case_id)
    finally:
        store.close()
    assert found is not None
    return found


_SQLITE_SCHEMA = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
_PG_SCHEMA = [
    "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default "
    "FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1, 2",
]


def dump_database(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in primary-key order, and the schema itself (``"schema"``), on either backend."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            queries = [_SQLITE_SCHEMA] if conn.dialect.name == "sqlite" else _PG_SCHEMA
            schema = [tuple(r) for q in queries for r in conn.execute(text(q))]
            out: dict[str, list[tuple[Any, ...]]] = {"schema": schema}
            for name in sorted(inspect(conn).get_table_names()):
                table = SQLModel.metadata.tables.get(name)
                keys = [c.name for c in table.primary_key.columns] if table is not None else []
                order = ", ".join(f'"{k}"' for k in keys) or "1"
                out[name] = [tuple(r) for r in conn.execute(text(f'SELECT * FROM "{name}" ORDER BY {order}'))]
        return out
    finally:
        engine.dispose()


def append_note(engine: Engine, uow: UnitOfWork, case: CaseRecord, actor: Actor, data: dict[str, Any]) -> CaseRecord:
    """Append a reminder note to ``case`` inside ``uow``, as the worker's commands do (``LostRace`` on a miss)."""
    tx = Transaction(uow, engine.workflows, engine.clock, calendar_sync=False)
    return tx.note(case, note_event(case, actor, EventKind.REMINDER, at=engine.clock.now(), data=data))
