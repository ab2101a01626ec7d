"""The API's appointments: list a case's, book one, reschedule, cancel, mark a no-show.

The fact kinds that carry appointments and the kinds of appointment are the case's workflow's
(``Workflow.appointments``). Listing needs a role that reads both appointment fact kinds; the writes are
the engine's commands, which check the role that may record them. Every write takes ``Idempotency-Key``
and ``If-Match`` (the case's ETag) like any other write of a case.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from kapflow.app.engine import Engine
from kapflow.domain.appointments import AppointmentFacts
from kapflow.domain.case import Actor
from kapflow.domain.workflow import Workflow
from kapflow.errors import InvalidInput
from kapflow.http.common import (
    PROBLEMS,
    V1,
    Acting,
    CaseId,
    IdempotencyKey,
    IfMatch,
    JSONObject,
    Name,
    expected,
    outcome_body,
    require_reads,
)
from kapflow.present import appointment_shape

StartsAt = Annotated[str, Body(
    description="The start, ISO 8601 with a UTC offset, e.g. 2026-03-06T15:00:00-05:00.")]
Reason = Annotated[str | None, Body(description="Why (required with late_entry).")]
LateEntry = Annotated[bool, Body(
    description="Record a time already past, after the fact; needs a reason. Audited as such.")]


def appointment_kinds(wf: Workflow) -> tuple[str, ...]:
    """The fact kinds that carry the workflow's appointments (none if it books none)."""
    return (wf.appointments.booking, wf.appointments.update) if wf.appointments else ()


def _carriers(wf: Workflow) -> AppointmentFacts:
    if wf.appointments is None:
        raise InvalidInput(f"workflow {wf.name!r} books no appointments", field="kind")
    return wf.appointments


def router(engine: Engine) -> APIRouter:
    api = APIRouter(prefix=V1)

    def write(case_id: CaseId, update: bool, data: dict[str, Any], actor: Actor, response: Response,
              key: str | None, if_match: str | None) -> JSONObject:
        """Record an appointment fact; through ``record`` so that ``If-Match`` is the command's own
        compare-and-swap, not a read before it."""
        carriers = _carriers(engine.workflow_of(engine.case(case_id)))
        outcome = engine.record(case_id, carriers.update if update else carriers.booking, data, actor=actor,
                                idempotency_key=key, expected_version=expected(if_match))
        return outcome_body(outcome, response)

    @api.get("/cases/{case_id}/appointments", tags=["appointments"], responses=PROBLEMS)
    def list_appointments(case_id: CaseId, actor: Acting) -> list[JSONObject]:
        """The case's appointments in booking order: id, kind, start and end (UTC), length, status, clinician,
        room and calendar uid. Only for a role that reads the workflow's appointment fact kinds (on the KAP
        pathway: the front desk, billing, clinicians, auditors); 403 for any other."""
        require_reads(engine, actor, case_id, appointment_kinds, "read appointments")
        shapes = [appointment_shape(a) for a in engine.appointments(case_id)]
        engine.record_access(actor, case_id, "appointments")
        return shapes

    @api.post("/cases/{case_id}/appointments", status_code=201, tags=["appointments"], responses=PROBLEMS)
    def book(
        case_id: CaseId, actor: Acting, response: Response,
        kind: Annotated[str, Body(description="A kind of appointment the case's workflow books.")],
        starts_at: StartsAt,
        clinician: Annotated[str | None, Body(description="The clinician's id (required), held for its time.")]
        = None,
        room: Annotated[str | None, Body(description="The room's id, for the kinds that take one.")] = None,
        minutes: Annotated[int | None, Body(description="Length, if not the kind's usual.")] = None,
        late_entry: LateEntry = False, reason: Reason = None,
        idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
    ) -> JSONObject:
        """Book an appointment; ``appointment`` in the answer is its id (a1, a2, ...). Its reminders and
        calendar event follow. A clinician or room already held at an overlapping time refuses it: 409
        ``transition_blocked`` with the blocker ``clinician_unavailable`` or ``room_unavailable``."""
        data: dict[str, Any] = {"kind": kind, "starts_at": starts_at}
        for name, value in (("clinician", clinician), ("room", room), ("minutes", minutes), ("reason", reason)):
            if value is not None:
                data[name] = value
        if late_entry:
            data["late_entry"] = True
        return write(case_id, False, data, actor, response, idempotency_key, if_match)

    @api.post("/cases/{case_id}/appointments/{appointment_id}/reschedule", tags=["appointments"],
              responses=PROBLEMS)
    def reschedule(
        case_id: CaseId, appointment_id: Name, actor: Acting, response: Response, starts_at: StartsAt,
        reason: Reason = None, late_entry: LateEntry = False,
        idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
    ) -> JSONObject:
        """Move an appointment; its reminders and calendar event move with it (409 if the new time is taken)."""
        data: dict[str, Any] = {"appointment": appointment_id, "action": "reschedule", "starts_at": starts_at,
                                "reason": reason}
        if late_entry:
            data["late_entry"] = True
        return write(case_id, True, data, actor, response, idempotency_key, if_match)

    @api.post("/cases/{case_id}/appointments/{appointment_id}/cancel", tags=["appointments"], responses=PROBLEMS)
    def cancel(
        case_id: CaseId, appointment_id: Name, actor: Acting, response: Response,
        reason: Annotated[str | None, Body(embed=True, description="Why.")] = None,
        idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
    ) -> JSONObject:
        """Cancel an appointment: its reminders stop, its calendar event is cancelled, its clinician and room
        are free again."""
        data = {"appointment": appointment_id, "action": "cancel", "reason": reason}
        return write(case_id, True, data, actor, response, idempotency_key, if_match)

    @api.post("/cases/{case_id}/appointments/{appointment_id}/no-show", tags=["appointments"], responses=PROBLEMS)
    def no_show(
        case_id: CaseId, appointment_id: Name, actor: Acting, response: Response,
        idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
    ) -> JSONObject:
        """Record that the client did not come to an appointment."""
        data = {"appointment": appointment_id, "action": "no_show"}
        return write(case_id, True, data, actor, response, idempotency_key, if_match)

    return api
