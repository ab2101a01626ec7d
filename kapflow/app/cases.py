"""The case commands: open a case from its intake, fire a trigger, record a fact.

Each is one transaction through the command runner: the state change (or
fact), the case's new projection, its audit event and its timers commit
together or not at all. Bad input is rejected before the transaction opens,
so it writes nothing. A refused command (wrong role, trigger not available
here, guards failing) commits only its audited refusal and raises. Writes are
compare-and-swap on the case's event count, so a concurrent change is never
overwritten.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kapflow.app.command_input import check_actor_shape, check_command, fingerprint_of
from kapflow.app.context import AppContext
from kapflow.app.events import new_event
from kapflow.app.runner import Transaction
from kapflow.domain.appointments import appointments
from kapflow.domain.billing import Billing, Completion, FeePolicy, check_billed_minutes, due_charges
from kapflow.domain.case import Actor, CaseRecord, Outcome, fold_fact, fold_move, stored_projection
from kapflow.domain.decision import check_required_text, fact_refusal, fire_refusal
from kapflow.domain.errors import ConcurrencyConflict, InvalidInput, NotPermitted, UnknownFactKind, UnknownTrigger
from kapflow.domain.estimate import due_estimate
from kapflow.domain.events import EventKind
from kapflow.domain.payload import JSONObject, check_identifier, check_payload
from kapflow.domain.slots import check_room
from kapflow.domain.workflow import Transition, Workflow
from kapflow.logging import get_logger
from kapflow.machine import compiled

_log = get_logger("kapflow.engine")


def new_case_id() -> str:
    return f"case-{uuid.uuid4().hex[:16]}"


def open_case(
    app: AppContext, intake: Mapping[str, Any], *, actor: Actor, idempotency_key: str | None,
    workflow: Workflow | str | None, new_id: Any = new_case_id,
) -> Outcome:
    """Open a case from its intake on the current version of its workflow (or on the version given)."""
    wf = workflow if isinstance(workflow, Workflow) else app.workflows.current(workflow)
    check_actor(actor, wf)
    intake_kind = wf.facts[wf.intake_fact]
    parsed = intake_kind.spec(check_payload(intake, wf.intake_fact), app.clock.now())
    key = None if idempotency_key is None else check_identifier(idempotency_key, "idempotency_key")
    if actor.role not in intake_kind.roles:
        raise NotPermitted(case_id="", trigger="open_case", state="", role=actor.role, allowed=intake_kind.roles)
    # A retry after a deploy must replay its case: only a version the caller chose is part of the command.
    chosen = workflow.version if isinstance(workflow, Workflow) else ""
    fingerprint = fingerprint_of("open", "", wf.name, chosen, actor, parsed)

    def body(tx: Transaction) -> Outcome:
        now = tx.now()
        # Its lists keep their entries' texts (serialized once: stored, kept, and appended to by later folds).
        facts = fold_fact(stored_projection([], []), wf.intake_fact, now, actor.id, parsed)
        case = CaseRecord(
            id=new_id(), workflow=wf.name, workflow_version=wf.version, state=wf.initial, previous_state=None,
            version=0, event_count=0, head_hash="", facts=facts, opened_at=now, updated_at=now,
        )
        opened = {"intake_kind": wf.intake_fact, "intake": parsed}
        event = new_event(case, actor, EventKind.OPENED, to_state=wf.initial, data=opened, key=key, at=now)
        case = replace(case, version=1, event_count=1, head_hash=event.hash)
        tx.insert(case, event)
        return Outcome(case.id, EventKind.OPENED, case.state, case.version, 1)

    outcome = app.runner.run_command(body, case_id="", key=key, fingerprint=fingerprint)
    _log.info("case_opened", case_id=outcome.case_id, workflow=wf.name, version=wf.version)
    return outcome


def fire(
    app: AppContext, case_id: str, trigger: str, *, actor: Actor, data: Mapping[str, Any] | None,
    idempotency_key: str | None, expected_version: int | None,
) -> Outcome:
    """Move a case with ``trigger``; raises ``Refused`` (audited) or ``InvalidInput`` (nothing written)."""
    payload, key, fingerprint = check_command("fire", case_id, trigger, actor, data, idempotency_key, expected_version)

    def body(tx: Transaction) -> Outcome:
        case, wf = tx.load(case_id)
        if trigger not in wf.triggers():
            raise UnknownTrigger(trigger, wf.triggers())
        check_actor(actor, wf)
        check_required_text(wf, trigger, payload)
        check_expected(case, expected_version)
        transition = wf.transition_from(case.state, trigger)
        if wf.billing is not None and wf.billing.completing(trigger) is not None:
            check_billed_minutes(payload)
        refusal = fire_refusal(case, wf, transition, trigger, actor.role, payload, tx.now(), app.practice)
        if refusal is not None:
            tx.refuse(case, actor, refusal, trigger=trigger, data=payload, key=key)
        assert transition is not None
        return _move(tx, case, wf, transition, actor, payload, key, expected_version, app.fees)

    outcome = app.runner.run_command(body, case_id=case_id, key=key, fingerprint=fingerprint)
    _log.info("transition", case_id=case_id, trigger=trigger, source=outcome.from_state, dest=outcome.state)
    return outcome


def record(
    app: AppContext, case_id: str, kind: str, data: Mapping[str, Any], *, actor: Actor,
    idempotency_key: str | None, expected_version: int | None,
) -> Outcome:
    """Record a validated fact on a case (a payment, vitals, consent, ...)."""
    payload, key, fingerprint = check_command("record", case_id, kind, actor, data, idempotency_key, expected_version)

    def body(tx: Transaction) -> Outcome:
        case, wf = tx.load(case_id)
        if kind not in wf.facts:
            raise UnknownFactKind(kind, list(wf.facts))
        check_actor(actor, wf)
        parsed = wf.facts[kind].spec(payload, tx.now())
        check_room(wf.appointments, kind, parsed)
        check_expected(case, expected_version)
        refusal = fact_refusal(case, wf, kind, actor.role, parsed, tx.now(), app.practice)
        if refusal is None:
            refusal = tx.slots_refusal(case, wf, kind, parsed)
        if refusal is not None:
            tx.refuse(case, actor, refusal, trigger=None, data={"fact_kind": kind}, key=key)
        return _add_fact(tx, case, wf, actor, kind, parsed, key, expected_version, app.fees)

    outcome = app.runner.run_command(body, case_id=case_id, key=key, fingerprint=fingerprint)
    _log.info("fact_recorded", case_id=case_id, kind=kind)
    return outcome


def _move(
    tx: Transaction, case: CaseRecord, wf: Workflow, transition: Transition, actor: Actor, payload: JSONObject,
    key: str | None, expected_version: int | None, fees: FeePolicy,
) -> Outcome:
    dest = compiled(wf).next_state(case.state, transition.trigger, case.previous_state)
    now = tx.now()
    event = new_event(case, actor, EventKind.TRANSITION, trigger=transition.trigger, from_state=case.state,
                      to_state=dest, data=payload, key=key, at=now)
    facts = fold_move(case.facts, transition.trigger, case.state, dest, now)
    updated = replace(
        case, state=dest, previous_state=case.state, version=case.version + 1, event_count=case.event_count + 1,
        head_hash=event.hash, facts=facts, updated_at=now,
    )
    updated.projection_after(case, "moves")
    tx.change(case, updated, event, expected_version)
    updated = _cancel_on_entry(tx, updated, wf, transition, actor)
    updated = _post_charges(tx, case, updated, wf, actor, Completion(transition.trigger, payload, case.event_count),
                            fees)
    return Outcome(case.id, EventKind.TRANSITION, dest, updated.version, updated.event_count,
                   trigger=transition.trigger, from_state=case.state)


def _cancel_on_entry(
    tx: Transaction, case: CaseRecord, wf: Workflow, transition: Transition, actor: Actor
) -> CaseRecord:
    """Cancel the active appointments of the kinds ``transition`` names, and, when the case has just
    closed (a final state), every appointment still ahead: in the move's transaction.

    Each cancellation is an appointment change fact of its own (audited after the move, by the same
    actor, with the trigger as its reason), so the projection, the timers and the calendar follow it
    exactly as they follow a cancellation recorded by hand, and a replay of the history finds it.
    """
    closed = wf.state(case.state).final
    if (not transition.cancels and not closed) or wf.appointments is None:
        return case
    update, now = wf.appointments.update, tx.now()
    for appt in appointments(case.id, case.projection, wf.appointments).values():
        if appt.active and (appt.kind in transition.cancels or (closed and appt.starts_at > now)):
            change = {"appointment": appt.id, "action": "cancel", "reason": transition.trigger.replace("_", " ")}
            parsed = wf.facts[update].spec(change, tx.now())
            case = append_fact(tx, case, actor, update, parsed, None)
    return case


def _post_charges(
    tx: Transaction, before: CaseRecord, after: CaseRecord, wf: Workflow, actor: Actor, done: Completion,
    fees: FeePolicy, kind: str | None = None,
) -> CaseRecord:
    """Post the charge lines the command owes (a visit completed or attended, a missed one the practice
    charges for), each a fact of its own after the command's event, in its transaction: audited, replayed
    as any fact is, and posted once per visit and service (``kapflow.domain.billing.due_charges``)."""
    billing = wf.billing
    if billing is None or not _may_complete(billing, wf, done, kind):
        return after
    lines = due_charges(billing, wf.appointments, after.id, before.projection, after.projection, done, tx.now(),
                        tx.practice, fees)
    for line in lines:
        after = append_fact(tx, after, actor, billing.facts.charge, line, None)
        _log.info("charge_posted", case_id=after.id, service=line["service"])
    return after


def _post_estimate(
    tx: Transaction, case: CaseRecord, wf: Workflow, actor: Actor, kind: str, parsed: JSONObject
) -> CaseRecord:
    """Record the good faith estimate a plan fact asks for (``kapflow.domain.estimate``), after it, in its
    transaction: on the case before any service it lists, at the fees of the case's workflow version."""
    billing = wf.billing
    if billing is None or billing.estimate is None or kind != billing.estimate.fact:
        return case
    record = due_estimate(billing, kind, parsed, case.projection, case_id=case.id,
                          issued_on=tx.practice.local_date(tx.now()))
    if record is None:
        return case
    _log.info("estimate_recorded", case_id=case.id)
    return append_fact(tx, case, actor, billing.estimate.kind, record.as_fact(), None)


def _may_complete(billing: Billing, wf: Workflow, done: Completion, kind: str | None) -> bool:
    """Whether the command can have completed or missed a visit: a trigger completing one, or a change of
    an appointment (most commands are neither, and read no appointment here)."""
    if done.trigger is not None:
        return billing.completing(done.trigger) is not None
    return wf.appointments is not None and kind == wf.appointments.update


def append_fact(
    tx: Transaction, case: CaseRecord, actor: Actor, kind: str, parsed: JSONObject, key: str | None,
    expected_version: int | None = None,
) -> CaseRecord:
    """``case`` with the fact ``parsed`` of ``kind`` recorded and audited (written in ``tx``)."""
    now = tx.now()
    event = new_event(case, actor, EventKind.FACT, from_state=case.state, to_state=case.state,
                      data={"kind": kind, "fact": parsed}, key=key, at=now)
    facts = fold_fact(case.facts, kind, now, actor.id, parsed)
    updated = replace(
        case, version=case.version + 1, event_count=case.event_count + 1, head_hash=event.hash,
        facts=facts, updated_at=now,
    )
    updated.projection_after(case, "facts")
    tx.change(case, updated, event, expected_version)
    return updated


def _add_fact(
    tx: Transaction, case: CaseRecord, wf: Workflow, actor: Actor, kind: str, parsed: JSONObject,
    key: str | None, expected_version: int | None, fees: FeePolicy,
) -> Outcome:
    updated = append_fact(tx, case, actor, kind, parsed, key, expected_version)
    updated = _post_charges(tx, case, updated, wf, actor, Completion(None, parsed, case.event_count), fees, kind)
    updated = _post_estimate(tx, updated, wf, actor, kind, parsed)
    extra: dict[str, Any] = {"fact_kind": kind}
    if wf.appointments is not None and kind == wf.appointments.booking:
        extra["appointment"] = f"a{updated.projection.count(kind)}"
    return Outcome(case.id, EventKind.FACT, case.state, updated.version, updated.event_count, extra=extra)


def check_actor(actor: Actor, wf: Workflow) -> None:
    """An ``Actor`` of the right shape whose role ``wf`` knows."""
    check_actor_shape(actor)
    if actor.role not in wf.roles:
        raise InvalidInput(f"unknown role {actor.role!r}; roles: {', '.join(sorted(wf.roles))}", field="actor.role")


def check_expected(case: CaseRecord, expected_version: int | None) -> None:
    if expected_version is not None and case.version != expected_version:
        raise ConcurrencyConflict(case.id, expected_version, case.version)
