"""Binding a client's identity to its case: staff only, audited, idempotent, and a binding written behind the
engine's back (raw SQL) is found by the audit verification."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from raw_db import RawDb
from support import BILLING, FRONT_DESK, INQUIRY

from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.domain.case import Actor
from kapflow.errors import NotPermitted, Unauthenticated
from kapflow.testing import FakeClock

SUBJECT = "idp|client-7f3a"


def test_bindings_are_audited_idempotent_staff_only_and_verified(any_ready_url: str) -> None:
    engine = build_engine(any_ready_url, settings=Settings())
    raw = RawDb(any_ready_url)
    try:
        mine, other = (engine.open_case(INQUIRY, actor=FRONT_DESK).case_id for _ in range(2))
        with pytest.raises(NotPermitted):
            engine.bind_client(mine, SUBJECT, actor=BILLING)
        assert not engine.client_bound(mine, SUBJECT)
        assert engine.bind_client(mine, SUBJECT, actor=FRONT_DESK)
        assert not engine.bind_client(mine, SUBJECT, actor=FRONT_DESK)  # already bound: nothing written
        assert engine.client_bound(mine, SUBJECT) and not engine.client_bound(other, SUBJECT)
        assert [ev.kind for ev in engine.history(mine)][-1] == "client_bound"
        assert engine.verify_audit().ok
        hashed = hashlib.sha256(SUBJECT.encode()).hexdigest()
        # An insider grants the client another case: the binding no event made is found.
        raw.run(("INSERT INTO client_bindings (case_id, subject_hash, bound_at, bound_by) "
                 "VALUES (:c, :h, '2026-01-01T00:00:00.000000+00:00', 'fd-avery')", {"c": other, "h": hashed}))
        report = engine.verify_audit()
        assert not report.ok and [p.case_id for p in report.problems] == [other]
        assert not engine.verify_audit(other).ok and engine.verify_audit(mine).ok
        raw.run(("DELETE FROM client_bindings WHERE case_id = :c", {"c": other}),
                ("DELETE FROM client_bindings WHERE case_id = :c", {"c": mine}))  # and one removed unaudited
        assert [p.case_id for p in engine.verify_audit().problems] == [mine]
    finally:
        raw.close()
        engine.close()


def test_an_invitation_expires_after_seven_days_and_is_used_once(any_ready_url: str) -> None:
    clock = FakeClock()
    engine = build_engine(any_ready_url, settings=Settings(), clock=clock)
    client = Actor("idp|client-9", "client")
    try:
        case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
        late, _ = engine.invite_client(case_id, actor=FRONT_DESK)
        clock.advance(timedelta(days=7, seconds=1))
        with pytest.raises(Unauthenticated):
            engine.accept_invitation(late, actor=client)
        fresh, expires = engine.invite_client(case_id, actor=FRONT_DESK)
        assert expires == clock.now() + timedelta(days=7)
        assert engine.accept_invitation(fresh, actor=client) == case_id
        assert engine.client_bound(case_id, client.id)
        with pytest.raises(Unauthenticated):
            engine.accept_invitation(fresh, actor=Actor("idp|someone-else", "client"))
        assert not engine.client_bound(case_id, "idp|someone-else") and engine.verify_audit().ok
    finally:
        engine.close()
