"""Binding a client's identity to their case: the practice's act, audited, and the only way a client
credential reaches a case over the network.

Staff (a role of the workflow's ``staff_roles``) bind the subject the practice's identity provider
gives the client (``sub``), or, since staff rarely know it, make a one-time invitation (valid 7 days)
the client redeems signed in: its own subject is then bound. Only SHA-256 hashes of subjects and codes
are kept, in the tables and in the audited events, so the history names no address or name. A
client's request for any other case is refused.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from kapflow.app.cases import check_actor
from kapflow.app.context import AppContext
from kapflow.app.events import note_event
from kapflow.app.runner import Transaction
from kapflow.domain.case import Actor, AuditEvent, CaseRecord
from kapflow.domain.entries import to_iso
from kapflow.domain.errors import InvalidInput, NotPermitted, Unauthenticated
from kapflow.domain.events import EventKind
from kapflow.domain.payload import check_identifier, check_text
from kapflow.domain.workflow import Workflow

BIND, UNBIND, INVITE, ACCEPT = "bind_client", "unbind_client", "invite_client", "accept_invitation"
INVITATION_PREFIX = "kfi_"
INVITATION_LIFETIME = timedelta(days=7)


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


def client_cases(app: AppContext, subject: str) -> list[str]:
    """The cases ``subject`` is bound to (a client's own: usually one)."""
    return app.store.client_bindings().cases_of(subject_hash(subject))


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


def invite_client(app: AppContext, case_id: str, *, actor: Actor) -> tuple[str, datetime]:
    """A one-time invitation for the case's client (audited; staff only): the code, shown once, and its expiry."""
    check_identifier(case_id, "case_id")
    code = INVITATION_PREFIX + secrets.token_urlsafe(32)

    def body(tx: Transaction) -> datetime:
        case, wf = tx.load(case_id)
        _check_staff(actor, wf, case, INVITE)
        expires = tx.now() + INVITATION_LIFETIME
        tx.note(case, note_event(case, actor, EventKind.CLIENT_INVITED, at=tx.now(),
                                 data={"expires_at": to_iso(expires)}))
        tx.uow.client_bindings().invite(subject_hash(code), case_id, to_iso(tx.now()), actor.id, to_iso(expires))
        return expires

    return code, app.runner.run(body, case_id=case_id)


def accept_invitation(app: AppContext, code: str, *, actor: Actor) -> str:
    """The signed-in client redeems an invitation: its identity is bound to the case (audited). The case id."""
    if not isinstance(code, str) or not code.startswith(INVITATION_PREFIX) or len(code) > 100:
        raise InvalidInput("code: not an invitation of this practice (they start with kfi_)", field="code")
    hashed, subject = subject_hash(code), subject_hash(actor.id)

    def body(tx: Transaction) -> str:
        bindings = tx.uow.client_bindings()
        case_id = bindings.redeem(hashed, to_iso(tx.now()))
        if case_id is None:
            raise Unauthenticated("invitation_invalid", "the invitation is unknown, used or expired: ask the "
                                                        "practice for a new one")
        case, wf = tx.load(case_id)
        if actor.role != wf.client_role:
            raise NotPermitted(case_id=case_id, trigger=ACCEPT, state=case.state, role=actor.role,
                               allowed=[wf.client_role] if wf.client_role else [])
        if not bindings.bound(case_id, subject):
            tx.note(case, note_event(case, actor, EventKind.CLIENT_BOUND, at=tx.now(),
                                     data={"subject_sha256": subject, "invitation": True}))
            bindings.bind(case_id, subject, to_iso(tx.now()), actor.id)
        return case_id

    return app.runner.run(body)
