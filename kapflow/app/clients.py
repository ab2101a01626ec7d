"""Binding a client's identity to their case: the practice's act, audited, and the only way a client
credential reaches a case over the network.

Staff (a role of the workflow's ``staff_roles``) bind the subject the practice's identity provider
gives the client (``sub``). Only its SHA-256 is kept, in the binding and in the audited event, so the
audit history names no address or name. A client's request for any other case is refused.
"""

from __future__ import annotations

import hashlib

from kapflow.app.cases import check_actor
from kapflow.app.context import AppContext
from kapflow.app.events import note_event
from kapflow.app.runner import Transaction
from kapflow.domain.case import Actor, AuditEvent, CaseRecord, to_iso
from kapflow.domain.errors import InvalidInput, NotPermitted
from kapflow.domain.events import EventKind
from kapflow.domain.payload import check_identifier, check_text
from kapflow.domain.workflow import Workflow

BIND, UNBIND = "bind_client", "unbind_client"  # what a refused binding names (NotPermitted)


def subject_hash(subject: str) -> str:
    """The one form a client's subject is kept in."""
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


def bind_client(app: AppContext, case_id: str, subject: str, *, actor: Actor) -> bool:
    """Bind ``subject`` to the case (audited); False if it was bound already (nothing written)."""
    return _change(app, case_id, subject, actor, bind=True)


def unbind_client(app: AppContext, case_id: str, subject: str, *, actor: Actor) -> bool:
    """Remove the binding (audited); False if there was none (nothing written)."""
    return _change(app, case_id, subject, actor, bind=False)


def client_bound(app: AppContext, case_id: str, subject: str) -> bool:
    """Whether ``subject`` may reach ``case_id`` (one lookup, no transaction)."""
    return app.store.client_bindings().bound(case_id, subject_hash(subject))


def _change(app: AppContext, case_id: str, subject: str, actor: Actor, *, bind: bool) -> bool:
    check_identifier(case_id, "case_id")
    hashed = subject_hash(check_text(subject, "subject"))

    def body(tx: Transaction) -> bool:
        case, wf = tx.load(case_id)
        _check_staff(actor, wf, case, BIND if bind else UNBIND)
        bindings = tx.uow.client_bindings()
        if bindings.bound(case_id, hashed) == bind:
            tx.read_only = True
            return False
        tx.note(case, _event(case, actor, bind, hashed, tx))
        if bind:
            bindings.bind(case_id, hashed, to_iso(tx.now()), actor.id)
        else:
            bindings.unbind(case_id, hashed)
        return True

    return app.runner.run(body, case_id=case_id)


def _check_staff(actor: Actor, wf: Workflow, case: CaseRecord, what: str) -> None:
    check_actor(actor, wf)
    if wf.client_role is None:
        raise InvalidInput(f"workflow {wf.name!r} names no client role: no client identity can be bound",
                           field="case_id")
    if actor.role not in wf.staff_roles:
        raise NotPermitted(case_id=case.id, trigger=what, state=case.state, role=actor.role, allowed=wf.staff_roles)


def _event(case: CaseRecord, actor: Actor, bind: bool, hashed: str, tx: Transaction) -> AuditEvent:
    kind = EventKind.CLIENT_BOUND if bind else EventKind.CLIENT_UNBOUND
    return note_event(case, actor, kind, at=tx.now(), data={"subject_sha256": hashed})
