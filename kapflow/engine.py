"""The engine: open cases, fire triggers, record facts, read cases and their history.

Every command is one database transaction: the state change (or fact), the
case's new projection and its audit event commit together or not at all.
Bad input is rejected before the transaction opens, so it writes nothing. A
refused command (wrong role, trigger not available here, guards failing)
commits only its audited refusal and raises. Writes are compare-and-swap on
the case's event count, so a concurrent change is never overwritten.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NoReturn

from kapflow.audit import GENESIS, AuditReport, link_hash, verify_chain
from kapflow.command_input import check_actor_shape, check_command, fingerprint_of, instant_text, outcome_from_json
from kapflow.domain.appointments import BOOKING, UPDATE, Appointment, appointments
from kapflow.domain.case import (
    Actor,
    AuditEvent,
    CaseRecord,
    FactEntry,
    Outcome,
    ProjectionText,
    fold_fact,
    fold_move,
    text_after_fold,
)
from kapflow.domain.case import replay_events as replay_events  # re-exported: the engine's readers use it
from kapflow.domain.decision import fact_refusal, fire_refusal, guard_context, not_available_blocker
from kapflow.domain.effects import effects_of
from kapflow.domain.errors import (
    Blocker,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    InvalidInput,
    NotPermitted,
    Refused,
    TransitionBlocked,
    UnknownCase,
    UnknownFactKind,
    UnknownTrigger,
    WorkflowDefinitionError,
)
from kapflow.domain.messages import Contacts, practice_timezone
from kapflow.domain.payload import JSONObject, canonical_json, check_identifier, check_payload
from kapflow.domain.verdict import Verdict, evaluate
from kapflow.domain.workflow import GuardContext, Transition, Workflow
from kapflow.logging import get_logger
from kapflow.machine import compiled
from kapflow.ports import Clock, DuplicateIdempotencyKey, Store, SystemClock, UnitOfWork

_RETRIES = 5
_log = get_logger("kapflow.engine")


class LostRace(Exception):
    """A refusal lost the compare-and-swap to a concurrent change: evaluate again."""


def _new_case_id() -> str:
    return f"case-{uuid.uuid4().hex[:16]}"


class Engine:
    """kapflow's command and query API over one store and a set of workflow versions."""

    def __init__(
        self,
        store: Store,
        workflows: Workflow | Sequence[Workflow],
        *,
        clock: Clock | None = None,
        new_case_id: Callable[[], str] = _new_case_id,
        contacts: Contacts | None = None,
        timezone: str = "UTC",
        calendar_sync: bool = False,
    ) -> None:
        versions = [workflows] if isinstance(workflows, Workflow) else list(workflows)
        if not versions:
            raise WorkflowDefinitionError("<none>", ["the engine needs at least one workflow"])
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.contacts: Contacts = contacts or {}
        self.timezone = practice_timezone(timezone)
        self.calendar_sync = calendar_sync
        self.workflow = versions[-1]
        self._workflows = {wf.key: wf for wf in versions}
        self._new_case_id = new_case_id
        for wf in versions:
            compiled(wf)

    # ----------------------------------------------------------------- commands

    def open_case(
        self,
        intake: Mapping[str, Any],
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        workflow: Workflow | None = None,
    ) -> Outcome:
        """Open a case from its intake (for KAP: the inquiry form) on the current workflow version."""
        wf = workflow or self.workflow
        self._check_actor(actor, wf)
        intake_kind = wf.facts[wf.intake_fact]
        parsed = intake_kind.spec(check_payload(intake, wf.intake_fact), self.clock.now())
        key = self._check_key(idempotency_key)
        if actor.role not in intake_kind.roles:
            raise NotPermitted(
                case_id="", trigger="open_case", state="", role=actor.role, allowed=intake_kind.roles
            )
        # A retry after a deploy must replay its case: only a version the caller chose is part of the command.
        fingerprint = fingerprint_of("open", "", wf.name, workflow.version if workflow else "", actor, parsed)

        def body(uow: UnitOfWork) -> Outcome:
            now = self.clock.now()
            facts = fold_fact({}, wf.intake_fact, now, actor.id, parsed)
            case = CaseRecord(
                id=self._new_case_id(),
                workflow=wf.name,
                workflow_version=wf.version,
                state=wf.initial,
                previous_state=None,
                version=0,
                event_count=0,
                head_hash="",
                facts=facts,
                opened_at=now,
                updated_at=now,
                facts_text=ProjectionText(facts, canonical_json(facts)),  # serialized once: stored and kept
            )
            opened = {"intake_kind": wf.intake_fact, "intake": parsed}
            event = self._event(case, actor, "opened", to_state=wf.initial, data=opened, key=key, at=now)
            case = replace(case, version=1, event_count=1, head_hash=event.hash)
            uow.insert_case(case)
            uow.append_event(event)
            uow.apply_effects(effects_of(wf, None, case, calendar=self.calendar_sync), now)
            return Outcome(case.id, "opened", case.state, case.version, 1)

        outcome = self._transact("", key, fingerprint, body)
        _log.info("case_opened", case_id=outcome.case_id, workflow=wf.name, version=wf.version)
        return outcome

    def fire(
        self,
        case_id: str,
        trigger: str,
        *,
        actor: Actor,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Move a case with ``trigger``; raises ``Refused`` (audited) or ``InvalidInput`` (nothing written)."""
        payload, key, fingerprint = check_command(
            "fire", case_id, trigger, actor, data, idempotency_key, expected_version
        )

        def body(uow: UnitOfWork) -> Outcome:
            case, wf = self._load(uow, case_id)
            if trigger not in wf.triggers():
                raise UnknownTrigger(trigger, wf.triggers())
            self._check_actor(actor, wf)
            self._check_expected(case, expected_version)
            transition = wf.transition_from(case.state, trigger)
            refusal = fire_refusal(case, wf, transition, trigger, actor.role, payload, self.clock.now(),
                                   self.timezone)
            if refusal is not None:
                self._record_refusal(uow, case, actor, trigger, payload, key, refusal)
            assert transition is not None
            return self._move(uow, case, wf, transition, actor, payload, key, expected_version)

        outcome = self._transact(case_id, key, fingerprint, body)
        _log.info("transition", case_id=case_id, trigger=trigger, source=outcome.from_state, dest=outcome.state)
        return outcome

    def record(
        self,
        case_id: str,
        kind: str,
        data: Mapping[str, Any],
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Record a validated fact on a case (a payment, vitals, consent, ...)."""
        payload, key, fingerprint = check_command(
            "record", case_id, kind, actor, data, idempotency_key, expected_version
        )

        def body(uow: UnitOfWork) -> Outcome:
            case, wf = self._load(uow, case_id)
            if kind not in wf.facts:
                raise UnknownFactKind(kind, list(wf.facts))
            self._check_actor(actor, wf)
            parsed = wf.facts[kind].spec(payload, self.clock.now())
            self._check_expected(case, expected_version)
            refusal = fact_refusal(case, wf, kind, actor.role, parsed, self.clock.now(), self.timezone)
            if refusal is not None:
                self._record_refusal(uow, case, actor, None, {"fact_kind": kind}, key, refusal)
            return self._add_fact(uow, case, actor, kind, parsed, key, expected_version)

        outcome = self._transact(case_id, key, fingerprint, body)
        _log.info("fact_recorded", case_id=case_id, kind=kind)
        return outcome

    def _transact(
        self, case_id: str, key: str | None, fingerprint: str, body: Callable[[UnitOfWork], Outcome]
    ) -> Outcome:
        """Run ``body`` in one transaction; replay a known idempotency key; retry lost races.

        A race is retried, never merged: a refusal that lost the compare-and-swap
        is re-evaluated against the new state, and a key stored meanwhile by a
        concurrent duplicate is answered from that duplicate's result.
        """
        for _attempt in range(_RETRIES):
            try:
                with self.store.write() as uow:
                    if key and case_id:
                        uow.prefetch_case(case_id)  # read with the key: one wait for both
                    if key and (replayed := self._replay(uow, key, fingerprint)):
                        return replayed
                    outcome = body(uow)
                    if key:
                        uow.save_idempotent(key, outcome.case_id, fingerprint, canonical_json(outcome.as_dict()))
                    uow.commit()
                    return outcome
            except (LostRace, DuplicateIdempotencyKey):
                continue
        raise ConcurrencyConflict(case_id, None, None)

    # ------------------------------------------------------------- appointments

    def book_appointment(
        self, case_id: str, kind: str, starts_at: datetime, *, actor: Actor,
        minutes: int | None = None, idempotency_key: str | None = None,
    ) -> Outcome:
        """Book an appointment; ``Outcome.extra["appointment"]`` is its id (a1, a2, ...)."""
        data: dict[str, Any] = {"kind": kind, "starts_at": instant_text(starts_at)}
        if minutes is not None:
            data["minutes"] = minutes
        return self.record(case_id, BOOKING, data, actor=actor, idempotency_key=idempotency_key)

    def reschedule_appointment(
        self, case_id: str, appointment: str, starts_at: datetime, *, actor: Actor,
        reason: str | None = None, idempotency_key: str | None = None,
    ) -> Outcome:
        data = {
            "appointment": appointment, "action": "reschedule", "starts_at": instant_text(starts_at), "reason": reason,
        }
        return self.record(case_id, UPDATE, data, actor=actor, idempotency_key=idempotency_key)

    def cancel_appointment(
        self, case_id: str, appointment: str, *, actor: Actor, reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        data = {"appointment": appointment, "action": "cancel", "reason": reason}
        return self.record(case_id, UPDATE, data, actor=actor, idempotency_key=idempotency_key)

    def mark_no_show(
        self, case_id: str, appointment: str, *, actor: Actor, idempotency_key: str | None = None
    ) -> Outcome:
        data = {"appointment": appointment, "action": "no_show"}
        return self.record(case_id, UPDATE, data, actor=actor, idempotency_key=idempotency_key)

    def appointments(self, case_id: str) -> list[Appointment]:
        case = self.case(case_id)
        return list(appointments(case.id, case.projection).values())

    # ------------------------------------------------------------------ queries

    def case(self, case_id: str) -> CaseRecord:
        check_identifier(case_id, "case_id")
        case = self.store.get_case(case_id)
        if case is None:
            raise UnknownCase(case_id)
        return case

    def workflow_of(self, case: CaseRecord) -> Workflow:
        wf = self._workflows.get((case.workflow, case.workflow_version))
        if wf is None:
            raise WorkflowDefinitionError(
                case.workflow,
                [f"case {case.id!r} is on version {case.workflow_version!r}, which this engine has not loaded; "
                 "pass that version to the Engine too"],
            )
        return wf

    def facts(self, case_id: str, kind: str | None = None) -> list[FactEntry]:
        entries = self.case(case_id).projection.facts()
        return [f for f in entries if kind is None or f.kind == kind]

    def history(self, case_id: str) -> list[AuditEvent]:
        events = list(self.store.history(case_id))
        if not events:
            self.case(case_id)  # UnknownCase: every case has at least the event that opened it
        return events

    def cases(self, *, state: str | None = None, limit: int = 100, offset: int = 0) -> list[CaseRecord]:
        if limit < 1 or limit > 10_000 or offset < 0:
            raise InvalidInput("limit must be 1-10000 and offset at least 0", field="limit")
        return list(self.store.list_cases(state=state, limit=limit, offset=offset))

    def check(
        self, case_id: str, trigger: str, *, actor: Actor | None = None, data: Mapping[str, Any] | None = None
    ) -> Verdict:
        """Would ``trigger`` fire now (with ``data``)? Every blocker, including role and state. Writes nothing."""
        case = self.case(case_id)
        wf = self.workflow_of(case)
        if trigger not in wf.triggers():
            raise UnknownTrigger(trigger, wf.triggers())
        if actor is not None:
            self._check_actor(actor, wf)
        payload = check_payload(data)
        transition = wf.transition_from(case.state, trigger)
        if transition is None:
            return Verdict(trigger, (not_available_blocker(case.state, trigger),))
        verdict = evaluate(wf, transition, self._context(case, wf, trigger, payload))
        if actor is not None and actor.role not in transition.roles:
            role = Blocker(
                "role_not_permitted",
                f"a {actor.role.replace('_', ' ')} may not do this; ask: {', '.join(sorted(transition.roles))}",
                "roles",
            )
            return Verdict(trigger, (role, *verdict.blockers))
        return verdict

    def available(self, case_id: str, *, actor: Actor | None = None) -> list[Verdict]:
        """A verdict for every trigger that leaves the case's current state."""
        case = self.case(case_id)
        wf = self.workflow_of(case)
        return [self.check(case_id, t.trigger, actor=actor) for t in wf.transitions_from(case.state)]

    def verify_audit(self, case_id: str | None = None) -> AuditReport:
        if case_id is None:
            return verify_chain(self.store.iter_audit(), self.store.iter_cases())
        case = self.case(case_id)
        return verify_chain(self.store.iter_audit(case_id), [case])

    # ---------------------------------------------------------------- internals

    def _load(self, uow: UnitOfWork, case_id: str) -> tuple[CaseRecord, Workflow]:
        case = uow.load_case(case_id)
        if case is None:
            raise UnknownCase(case_id)
        return case, self.workflow_of(case)

    def _context(self, case: CaseRecord, wf: Workflow, trigger: str, data: Mapping[str, Any]) -> GuardContext:
        return guard_context(case, wf, trigger, data, self.clock.now(), self.timezone)

    def _record_refusal(
        self,
        uow: UnitOfWork,
        case: CaseRecord,
        actor: Actor,
        trigger: str | None,
        data: JSONObject,
        key: str | None,
        refusal: Refused,
    ) -> NoReturn:
        """Append the refusal to the audit history, commit, and raise it."""
        blockers: tuple[Mapping[str, Any], ...]
        if isinstance(refusal, TransitionBlocked):
            blockers = tuple(b.as_dict() for b in refusal.blockers)
        else:
            blockers = ({"code": refusal.code, "message": refusal.message, "guard": "", "facts": {}},)
        event = self._event(
            case, actor, "refused", trigger=trigger, from_state=case.state, to_state=case.state,
            data=data, blockers=blockers, key=key,
        )
        self.append_note(uow, case, event)
        uow.commit()
        _log.info("refused", case_id=case.id, trigger=refusal.trigger, code=refusal.code)
        raise refusal

    def append_note(self, uow: UnitOfWork, case: CaseRecord, event: AuditEvent) -> CaseRecord:
        """Append an event that changes neither state nor version (a refusal, a reminder's fate).

        Raises ``LostRace`` if the case moved meanwhile, so the caller evaluates again.
        """
        updated = replace(case, event_count=case.event_count + 1, head_hash=event.hash)
        if not uow.update_and_append(updated, event, expected_event_count=case.event_count):
            raise LostRace
        return updated

    def _move(
        self,
        uow: UnitOfWork,
        case: CaseRecord,
        wf: Workflow,
        transition: Transition,
        actor: Actor,
        payload: JSONObject,
        key: str | None,
        expected_version: int | None,
    ) -> Outcome:
        dest = compiled(wf).next_state(case.state, transition.trigger, case.previous_state)
        now = self.clock.now()
        event = self._event(
            case, actor, "transition", trigger=transition.trigger, from_state=case.state,
            to_state=dest, data=payload, key=key, at=now,
        )
        updated = replace(
            case,
            state=dest,
            previous_state=case.state,
            version=case.version + 1,
            event_count=case.event_count + 1,
            head_hash=event.hash,
            facts=(facts := fold_move(case.facts, transition.trigger, case.state, dest, now)),
            facts_text=text_after_fold(case, facts, "moves"),
            updated_at=now,
        )
        self.write_change(uow, case, updated, event, expected_version)
        return Outcome(
            case.id, "transition", dest, updated.version, updated.event_count,
            trigger=transition.trigger, from_state=case.state,
        )

    def _add_fact(
        self,
        uow: UnitOfWork,
        case: CaseRecord,
        actor: Actor,
        kind: str,
        parsed: JSONObject,
        key: str | None,
        expected_version: int | None,
    ) -> Outcome:
        now = self.clock.now()
        event = self._event(
            case, actor, "fact", from_state=case.state, to_state=case.state,
            data={"kind": kind, "fact": parsed}, key=key, at=now,
        )
        updated = replace(
            case,
            version=case.version + 1,
            event_count=case.event_count + 1,
            head_hash=event.hash,
            facts=(facts := fold_fact(case.facts, kind, now, actor.id, parsed)),
            facts_text=text_after_fold(case, facts, "facts"),
            updated_at=now,
        )
        self.write_change(uow, case, updated, event, expected_version)
        extra: dict[str, Any] = {"fact_kind": kind}
        if kind == BOOKING:
            extra["appointment"] = f"a{len(updated.projection.of_kind(BOOKING))}"
        return Outcome(case.id, "fact", case.state, updated.version, updated.event_count, extra=extra)

    def write_change(
        self, uow: UnitOfWork, case: CaseRecord, updated: CaseRecord, event: AuditEvent, expected: int | None
    ) -> None:
        """Write a change (``case`` becomes ``updated``) with its audit event and its effects, or raise.

        A compare-and-swap on the event count: a concurrent change raises ``ConcurrencyConflict``.
        ``updated`` may be on another workflow version (a migration): timers follow the new one.
        """
        if not uow.update_and_append(updated, event, expected_event_count=case.event_count):
            current = uow.load_case(case.id)
            raise ConcurrencyConflict(
                case.id, expected if expected is not None else case.version,
                current.version if current else None,
            )
        # Timers and calendar messages commit with the change, or not at all.
        effects = effects_of(
            self.workflow_of(updated), case, updated, calendar=self.calendar_sync, before_wf=self.workflow_of(case)
        )
        uow.apply_effects(effects, updated.updated_at)

    def audit_event(
        self,
        case: CaseRecord,
        actor: Actor,
        kind: str,
        *,
        data: Mapping[str, Any] | None = None,
        trigger: str | None = None,
    ) -> AuditEvent:
        """A hashed audit event for ``case`` in its current state (for notes by the worker)."""
        return self._event(case, actor, kind, trigger=trigger, from_state=case.state, to_state=case.state, data=data)

    def _event(
        self,
        case: CaseRecord,
        actor: Actor,
        kind: str,
        *,
        trigger: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        data: Mapping[str, Any] | None = None,
        blockers: tuple[Mapping[str, Any], ...] = (),
        key: str | None = None,
        at: datetime | None = None,
    ) -> AuditEvent:
        """A hashed event; ``at`` is the command's one instant, shared with the projection it writes."""
        unsigned = AuditEvent(
            case_id=case.id,
            case_seq=case.event_count + 1,
            at=at or self.clock.now(),
            actor=actor.id,
            role=actor.role,
            kind=kind,
            trigger=trigger,
            from_state=from_state,
            to_state=to_state,
            workflow=case.workflow,
            workflow_version=case.workflow_version,
            data=dict(data or {}),
            blockers=blockers,
            idempotency_key=key,
            prev_hash=case.head_hash or GENESIS,
            hash="",
        )
        return replace(unsigned, hash=link_hash(unsigned))

    @staticmethod
    def _replay(uow: UnitOfWork, key: str, fingerprint: str) -> Outcome | None:
        found = uow.find_idempotent(key)
        if found is None:
            return None
        stored_fingerprint, result = found
        if stored_fingerprint != fingerprint:
            raise IdempotencyKeyReused(hashlib.sha256(key.encode()).hexdigest()[:12])
        return outcome_from_json(result)

    @staticmethod
    def _check_key(key: str | None) -> str | None:
        return None if key is None else check_identifier(key, "idempotency_key")

    @staticmethod
    def _check_actor(actor: Actor, wf: Workflow) -> None:
        check_actor_shape(actor)
        if actor.role not in wf.roles:
            raise InvalidInput(
                f"unknown role {actor.role!r}; roles: {', '.join(sorted(wf.roles))}", field="actor.role"
            )

    @staticmethod
    def _check_expected(case: CaseRecord, expected_version: int | None) -> None:
        if expected_version is not None and case.version != expected_version:
            raise ConcurrencyConflict(case.id, expected_version, case.version)
