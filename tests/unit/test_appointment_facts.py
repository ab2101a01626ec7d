"""Appointments are folded from the fact kinds a workflow declares, and guards look through those."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kapflow.domain.appointments import STANDARD, AppointmentFacts, appointments
from kapflow.domain.case import CaseFacts, fold_fact
from kapflow.domain.workflow import GuardContext
from kapflow.workflows.clinical_guards import AppointmentBooked, AppointmentOpen

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
VISITS = AppointmentFacts(kinds=("scan",), booking="visit", update="visit_change")


def _facts(booking: str, update: str | None = None) -> CaseFacts:
    raw: dict[str, object] = {"facts": [], "moves": []}
    starts = (T0 + timedelta(days=2)).isoformat()
    raw = fold_fact(raw, booking, T0, "tester", {"kind": "scan", "starts_at": starts, "minutes": 30})
    if update is not None:
        raw = fold_fact(raw, update, T0, "tester", {"appointment": "a1", "action": "cancel"})
    return CaseFacts(raw)


def _ctx(facts: CaseFacts, carriers: AppointmentFacts, data: dict[str, object] | None = None) -> GuardContext:
    return GuardContext("case-1", "s", "t", facts, T0, {}, data or {}, UTC, carriers)


def test_the_fold_reads_the_declared_fact_kinds() -> None:
    """A workflow booking with ``visit`` facts has its appointments; the usual names find none of them."""
    facts = _facts("visit", "visit_change")
    (appt,) = appointments("case-1", facts, VISITS).values()
    assert (appt.kind, appt.status) == ("scan", "cancelled")
    assert appointments("case-1", facts, STANDARD) == {}


def test_shared_guards_look_through_the_workflows_carriers() -> None:
    """AppointmentBooked and AppointmentOpen see a booking made with the workflow's own fact kinds."""
    facts = _facts("visit")
    assert AppointmentBooked("scan")(_ctx(facts, VISITS)) is None
    blocked = AppointmentBooked("scan")(_ctx(facts, STANDARD))
    assert blocked is not None and blocked.code == "scan_not_booked"
    assert AppointmentOpen()(_ctx(facts, VISITS, {"appointment": "a1"})) is None
    unknown = AppointmentOpen()(_ctx(facts, STANDARD, {"appointment": "a1"}))
    assert unknown is not None and unknown.code == "appointment_unknown"
