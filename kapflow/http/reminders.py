"""The API's view of what a case sends: its reminders (timers) and its messages (the outbox).

Both are reads of the Engine facade (``timers``, ``outbox``), recorded in the access log. A reminder
follows an appointment or a step of the case, so its times say when the client is seen: it is shown to
the roles that read the workflow's appointment fact kinds (the intake, for a workflow that books none).
A message's subject may name the client and the time of a visit: messages are shown to the roles that
read the intake fact (where the client's contact details are), and never with the recipient's address,
the body or the payload, to anyone.
"""

from __future__ import annotations

from fastapi import APIRouter

from kapflow.app.engine import Engine
from kapflow.domain.workflow import Workflow
from kapflow.http.appointments import appointment_kinds
from kapflow.http.common import PROBLEMS, V1, Acting, CaseId, JSONObject, require_reads
from kapflow.present import message_shape, reminder_shape


def _reminder_kinds(wf: Workflow) -> tuple[str, ...]:
    return appointment_kinds(wf) or (wf.intake_fact,)


def _intake(wf: Workflow) -> tuple[str, ...]:
    return (wf.intake_fact,)


def router(engine: Engine) -> APIRouter:
    api = APIRouter(prefix=V1)

    @api.get("/cases/{case_id}/reminders", tags=["reminders"], responses=PROBLEMS)
    def reminders(case_id: CaseId, actor: Acting) -> list[JSONObject]:
        """The case's reminders, soonest first: which reminder (and which appointment), when due, and its
        status (pending, claimed, done: queued or fired, skipped, missed, undeliverable, cancelled,
        failed) with the reason (``outcome``). Only for a role that reads the workflow's appointment fact
        kinds (the intake, for a workflow that books none): on the KAP pathway the front desk, billing,
        clinicians and auditors."""
        require_reads(engine, actor, case_id, _reminder_kinds, "read reminders")
        rows = [reminder_shape(r) for r in engine.timers(case_id)]
        engine.record_access(actor, case_id, "reminders")
        return rows

    @api.get("/cases/{case_id}/messages", tags=["reminders"], responses=PROBLEMS)
    def messages(case_id: CaseId, actor: Acting) -> list[JSONObject]:
        """The case's messages and calendar changes, oldest first: channel, audience, subject, delivery status,
        attempts, times and the last error. Never the recipient's address, the body or the payload. Only for a
        role that reads the workflow's intake fact, which holds the client's contact details (a subject may
        name the client and a visit's time); 403 for any other."""
        require_reads(engine, actor, case_id, _intake, "read messages")
        rows = [message_shape(r) for r in engine.outbox(case_id)]
        engine.record_access(actor, case_id, "messages")
        return rows

    return api
