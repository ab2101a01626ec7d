"""The API's cases: open one, read it (its facts and history, as the caller's role may), check and fire its
triggers, record its facts. Every successful read is recorded in the access log."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from kapflow.app.engine import Engine
from kapflow.app.queries import CasePage
from kapflow.domain.case import Actor
from kapflow.domain.entries import to_iso
from kapflow.http.common import (
    PROBLEMS,
    V1,
    Acting,
    CaseId,
    IdempotencyKey,
    IfMatch,
    JSONObject,
    Name,
    etag,
    expected,
    outcome_body,
)
from kapflow.present import case_shape, verdict_shape


def page_body(page: CasePage, actor: Actor, engine: Engine) -> JSONObject:
    """A page of cases as JSON; ``client`` is null for a role that may not read the case's intake."""
    shapes = []
    for found in page.cases:
        wf = engine.workflow_of(found)
        shape = case_shape(found, wf)
        if wf.intake_fact not in wf.readable(actor.role):
            shape["client"] = None
        shapes.append(shape)
    return {"cases": shapes, "next_cursor": page.next_cursor}


def router(engine: Engine) -> APIRouter:
    api = APIRouter(prefix=V1)

    @api.post("/cases", status_code=201, tags=["cases"], responses=PROBLEMS)
    def open_case(
        actor: Acting, response: Response,
        intake: Annotated[JSONObject, Body(embed=True, description="The workflow's intake form.")],
        idempotency_key: IdempotencyKey = None, workflow: Annotated[str | None, Body(embed=True)] = None,
    ) -> JSONObject:
        """Open a case from its intake form (for KAP, the inquiry)."""
        outcome = engine.open_case(intake, actor=actor, idempotency_key=idempotency_key, workflow=workflow)
        response.headers["Location"] = f"/v1/cases/{outcome.case_id}"
        return outcome_body(outcome, response)

    @api.get("/cases/{case_id}", tags=["cases"], responses=PROBLEMS)
    def read_case(case_id: CaseId, actor: Acting, response: Response) -> JSONObject:
        """A case: its state, version and workflow. Its ``ETag`` is its version (send it as ``If-Match``).

        ``client`` (the name on the intake form) is null for a role that may not read the intake."""
        found = engine.case(case_id)
        wf = engine.workflow_of(found)
        response.headers["ETag"] = etag(found.version)
        shape = case_shape(found, wf)
        if wf.intake_fact not in wf.readable(actor.role):
            shape["client"] = None
        engine.record_access(actor, case_id, "case")
        return shape

    @api.get("/cases/{case_id}/facts", tags=["facts"], responses=PROBLEMS)
    def read_facts(case_id: CaseId, actor: Acting, kind: str | None = None) -> list[JSONObject]:
        """The case's facts, oldest first: only the kinds the caller's role may read (the minimum necessary
        its workflow declares: the front desk reads appointments and payments, not screenings or vitals)."""
        facts = [{"kind": f.kind, "at": to_iso(f.at), "by": f.by, "data": dict(f.data)}
                 for f in engine.readable_facts(case_id, actor.role, kind)]
        engine.record_access(actor, case_id, "facts")
        return facts

    @api.get("/cases/{case_id}/history", tags=["cases"], responses=PROBLEMS)
    def read_history(case_id: CaseId, actor: Acting) -> list[JSONObject]:
        """Who did what, when, in which role: every event of the case. The data of an event about a fact
        kind the caller's role may not read is withheld (``{"withheld": kind}``), its blockers too."""
        events = [ev.as_dict() for ev in engine.readable_history(case_id, actor.role)]
        engine.record_access(actor, case_id, "history")
        return events

    @api.get("/cases/{case_id}/triggers", tags=["triggers"], responses=PROBLEMS)
    def available(case_id: CaseId, actor: Acting) -> list[JSONObject]:
        """Every trigger leaving the case's state, each with whether it may fire now and every blocker."""
        verdicts = [verdict_shape(v) for v in engine.available(case_id, actor=actor)]
        engine.record_access(actor, case_id, "triggers")
        return verdicts

    @api.get("/cases/{case_id}/triggers/{trigger}", tags=["triggers"], responses=PROBLEMS)
    def check(case_id: CaseId, trigger: Name, actor: Acting) -> JSONObject:
        """Would ``trigger`` fire now? Every blocker, with its code and sentence. Writes nothing."""
        verdict = verdict_shape(engine.check(case_id, trigger, actor=actor))
        engine.record_access(actor, case_id, "check")
        return verdict

    @api.post("/cases/{case_id}/triggers/{trigger}", tags=["triggers"], responses=PROBLEMS)
    def fire(
        case_id: CaseId, trigger: Name, actor: Acting, response: Response, idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None, data: Annotated[JSONObject | None, Body(embed=True)] = None,
    ) -> JSONObject:
        """Fire ``trigger``: 200 with the new version, or 409 with every blocker (the refusal is audited)."""
        outcome = engine.fire(case_id, trigger, actor=actor, data=data, idempotency_key=idempotency_key,
                              expected_version=expected(if_match))
        return outcome_body(outcome, response)

    @api.post("/cases/{case_id}/facts/{kind}", tags=["facts"], responses=PROBLEMS)
    def record(
        case_id: CaseId, kind: Name, actor: Acting, response: Response,
        fact: Annotated[JSONObject, Body(description="The fact's fields.")],
        idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
    ) -> JSONObject:
        """Record a validated fact (a payment, vitals, consent, ...)."""
        outcome = engine.record(case_id, kind, fact, actor=actor, idempotency_key=idempotency_key,
                                expected_version=expected(if_match))
        return outcome_body(outcome, response)

    @api.get("/cases", tags=["cases"], responses=PROBLEMS)
    def list_cases(
        actor: Acting, state: str | None = None, workflow: str | None = None, cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        blocker: Annotated[str | None, Query(description=(
            "Only cases a guard with this code holds back now (e.g. evaluation_fee_unpaid). Each page looks at "
            "1,000 cases at most, so it may hold fewer than `limit`: follow `next_cursor` until it is null."))] = None,
        appointment_on: Annotated[date | None, Query(description=(
            "Only cases with an active appointment (booked or attended; not cancelled, not a no-show) starting "
            "on this date (YYYY-MM-DD) in the practice's time zone. A rescheduled appointment counts on its new "
            "date only."))] = None,
        overdue: Annotated[bool, Query(description=(
            "true: only cases with an overdue reminder: a timer still pending more than 15 minutes after its "
            "time (the worker is behind or down), or one the worker gave up on (missed or failed)."))] = False,
    ) -> JSONObject:
        """Cases, oldest first, optionally in one state and workflow, held back by one blocker, with an appointment
        on one date (``appointment_on``), or with an overdue reminder (``overdue=true``); the filters combine.
        ``next_cursor`` fetches the next page (a page deep in the list costs what the first does). ``client`` is
        null for a role that may not read the intake. A date that is not a date is 422."""
        page = engine.case_page(state=state, workflow=workflow, cursor=cursor, limit=limit, blocker=blocker,
                                appointment_on=appointment_on, overdue=overdue)
        return page_body(page, actor, engine)

    @api.post("/cases/search", tags=["cases"], responses=PROBLEMS)
    def search_cases(
        actor: Acting,
        name: Annotated[str, Body(description=(
            "Words of the client's name, each matching the start of a word of it, accents and case aside: "
            "`zoe o` finds Zoë O'Neil. Sent in the body, never in the URL, which servers and browsers log."))],
        state: Annotated[str | None, Body()] = None, workflow: Annotated[str | None, Body()] = None,
        cursor: Annotated[str | None, Body()] = None, limit: Annotated[int, Body(ge=1, le=500)] = 50,
    ) -> JSONObject:
        """Cases whose client's name matches ``name``, oldest first, optionally in one state and workflow; paged
        as ``GET /v1/cases``. Only roles that read the intake (the client's name) may search by it: 403 for the
        others. A name with no letter or digit is 422."""
        engine.check_name_search(actor.role, workflow)
        return page_body(engine.case_page(state=state, workflow=workflow, cursor=cursor, limit=limit, name=name),
                         actor, engine)

    @api.post("/cases/{case_id}/client-bindings", tags=["clients"], responses=PROBLEMS)
    def bind_client(
        case_id: CaseId, actor: Acting, subject: Annotated[str, Body(embed=True, description=(
            "The client's subject (`sub`) at the practice's identity provider; kept only as its SHA-256."))],
    ) -> JSONObject:
        """Bind a client's identity to this case (staff only, audited): that client's credential may then
        reach this case, and no other."""
        return {"bound": engine.bind_client(case_id, subject, actor=actor)}

    @api.post("/cases/{case_id}/client-invitations", status_code=201, tags=["clients"], responses=PROBLEMS)
    def invite_client(case_id: CaseId, actor: Acting) -> JSONObject:
        """A one-time invitation for the case's client (staff only, audited): give the client the code; signed in
        at the practice's identity provider, it redeems it (``POST /v1/client-invitations/accept``) and its
        identity is bound to this case. Valid 7 days; shown once, kept only as a hash."""
        code, expires = engine.invite_client(case_id, actor=actor)
        return {"code": code, "expires_at": to_iso(expires)}

    @api.post("/client-invitations/accept", tags=["clients"], responses=PROBLEMS)
    def accept_invitation(
        actor: Acting, code: Annotated[str, Body(embed=True, description="The invitation's code (kfi_...).")],
    ) -> JSONObject:
        """The signed-in client redeems its invitation: its identity is bound to the case, whose id is returned.
        An unknown, used or expired code is 401."""
        return {"case_id": engine.accept_invitation(code, actor=actor)}

    @api.post("/cases/{case_id}/client-bindings/remove", tags=["clients"], responses=PROBLEMS)
    def unbind_client(case_id: CaseId, actor: Acting, subject: Annotated[str, Body(embed=True)]) -> JSONObject:
        """Remove a client identity's binding to this case (staff only, audited)."""
        return {"unbound": engine.unbind_client(case_id, subject, actor=actor)}

    return api
