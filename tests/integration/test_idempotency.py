"""Idempotency keys: a repeated command returns its first outcome and writes nothing, across restarts too."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from support import (
    BILLING,
    CLIENT,
    FRONT_DESK,
    INQUIRY,
    PRESCRIBER,
    THERAPIST,
    dump_database,
    open_case,
    to_evaluating,
    who,
)

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor
from kapflow.errors import IdempotencyKeyReused, InvalidFact, TransitionBlocked
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


def dump(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (timers and outbox included), read outside kapflow, on either backend."""
    out = dump_database(db_url)
    assert {"cases", "audit_events", "idempotency_keys", "timers", "outbox"} <= set(out)
    return out


def test_open_case_replay(engine: Engine, any_db_url: str) -> None:
    """open_case twice with one key opens one case; the second call returns the first outcome, replayed."""
    first = engine.open_case(INQUIRY, actor=CLIENT, idempotency_key="web-form-1")
    assert not first.replayed
    before = dump(any_db_url)
    again = engine.open_case(dict(INQUIRY), actor=CLIENT, idempotency_key="web-form-1")
    assert again == replace(first, replayed=True)
    assert dump(any_db_url) == before
    assert len(engine.cases()) == 1


def test_fire_replay_after_the_case_moved_on(engine: Engine, clock: FakeClock, any_db_url: str) -> None:
    """A repeated fire returns its original outcome even after later commands; nothing new is written."""
    case_id = open_case(engine)
    first = engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travel"}, idempotency_key="hold-1")
    engine.fire(case_id, "resume", actor=FRONT_DESK)
    engine.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING)
    before = dump(any_db_url)
    clock.advance(days=1)
    again = engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travel"}, idempotency_key="hold-1")
    assert again == replace(first, replayed=True)
    assert again.state == "on_hold" and again.from_state == "inquiry"
    assert engine.case(case_id).state == "inquiry"
    assert dump(any_db_url) == before


def test_record_replay_keeps_fact_kind(engine: Engine, any_db_url: str) -> None:
    """A repeated record returns the first outcome (with its fact kind) and adds no second fact."""
    case_id = open_case(engine)
    data = {"amount": "250.00", "purpose": "evaluation_fee", "reference": "rcpt-77"}
    first = engine.record(case_id, "payment", data, actor=BILLING, idempotency_key="pay-77")
    before = dump(any_db_url)
    again = engine.record(case_id, "payment", dict(data), actor=BILLING, idempotency_key="pay-77")
    assert again == replace(first, replayed=True)
    assert again.extra == {"fact_kind": "payment"}
    assert len(engine.facts(case_id, "payment")) == 1
    assert dump(any_db_url) == before


def _reuse(engine: Engine, case_id: str, other: str) -> list[tuple[str, Any]]:
    """Ways of sending key 'k-1' (first used for a payment record on case_id) with a different command."""
    pay = {"amount": "250.00", "purpose": "evaluation_fee"}
    return [
        ("different data", lambda: engine.record(case_id, "payment", {**pay, "amount": "300.00"}, actor=BILLING,
                                                 idempotency_key="k-1")),
        ("different kind", lambda: engine.record(case_id, "fasting", {"attested": True}, actor=CLIENT,
                                                 idempotency_key="k-1")),
        ("different actor", lambda: engine.record(case_id, "payment", pay, actor=Actor("billing-2", "billing"),
                                                  idempotency_key="k-1")),
        ("different role", lambda: engine.record(case_id, "payment", pay, actor=Actor("billing-1", "front_desk"),
                                                 idempotency_key="k-1")),
        ("different case", lambda: engine.record(other, "payment", pay, actor=BILLING, idempotency_key="k-1")),
        ("a fire", lambda: engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "x"},
                                       idempotency_key="k-1")),
        ("an open", lambda: engine.open_case(INQUIRY, actor=FRONT_DESK, idempotency_key="k-1")),
    ]


@pytest.mark.parametrize("variant", range(7))
def test_same_key_different_command_is_rejected(engine: Engine, any_db_url: str, variant: int) -> None:
    """Reusing a key for any other command raises IdempotencyKeyReused and writes nothing."""
    case_id, other = open_case(engine), open_case(engine, first_name="Other")
    engine.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=BILLING,
                  idempotency_key="k-1")
    label, call = _reuse(engine, case_id, other)[variant]
    before = dump(any_db_url)
    with pytest.raises(IdempotencyKeyReused) as info:
        call()
    assert info.value.field == "idempotency_key", label
    assert "k-1" not in info.value.message
    assert dump(any_db_url) == before


def test_refused_command_does_not_consume_its_key(engine: Engine, clock: FakeClock, any_db_url: str) -> None:
    """A blocked fire keeps its key free: after the fee is paid the same key succeeds, then replays."""
    case_id = open_case(engine)
    engine.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                           "starts_at": "2026-01-08T15:00:00+00:00"},
                  actor=FRONT_DESK)
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    with pytest.raises(TransitionBlocked):
        engine.fire(case_id, "start_evaluation", actor=PRESCRIBER, idempotency_key="start-eval-1")
    refusal = engine.history(case_id)[-1]
    assert refusal.kind == "refused" and refusal.idempotency_key == "start-eval-1"
    assert dump(any_db_url)["idempotency_keys"] == []
    with pytest.raises(TransitionBlocked):  # still blocked: a second audited refusal, key still free
        engine.fire(case_id, "start_evaluation", actor=PRESCRIBER, idempotency_key="start-eval-1")

    engine.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING)
    done = engine.fire(case_id, "start_evaluation", actor=PRESCRIBER, idempotency_key="start-eval-1")
    assert done.state == "evaluating" and not done.replayed
    before = dump(any_db_url)
    assert engine.fire(case_id, "start_evaluation", actor=PRESCRIBER, idempotency_key="start-eval-1") == replace(
        done, replayed=True
    )
    assert dump(any_db_url) == before
    assert engine.verify_audit().ok


def test_refused_fact_does_not_consume_its_key(engine: Engine, clock: FakeClock) -> None:
    """A kap_session booking refused for missing prerequisites leaves its key usable for a later retry."""
    case_id = open_case(engine)
    booking = {"kind": "kap_session", **who(case_id, "kap_session"), "starts_at": "2026-03-02T15:00:00+00:00"}
    with pytest.raises(TransitionBlocked):
        engine.record(case_id, "appointment", booking, actor=FRONT_DESK, idempotency_key="book-kap-1")
    # the key is not bound to the refused booking: it may carry a different, allowed command
    out = engine.record(case_id, "appointment", {**booking, "kind": "evaluation"}, actor=FRONT_DESK,
                        idempotency_key="book-kap-1")
    assert not out.replayed


def test_invalid_input_does_not_consume_its_key(engine: Engine, any_db_url: str) -> None:
    """A command rejected as invalid input leaves its key free for the corrected command."""
    case_id = open_case(engine)
    with pytest.raises(InvalidFact):
        engine.record(case_id, "payment", {"amount": "-1", "purpose": "evaluation_fee"}, actor=BILLING,
                      idempotency_key="pay-2")
    assert dump(any_db_url)["idempotency_keys"] == []
    out = engine.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING,
                        idempotency_key="pay-2")
    assert not out.replayed


def test_keys_survive_a_new_engine_on_the_same_database(any_db_url: str, clock: FakeClock) -> None:
    """After a restart (new SqlStore and Engine on the database), every kind of keyed command replays."""
    first_store = SqlStore(any_db_url)
    first = Engine(first_store, KAP_PATHWAY, clock=clock)
    opened = first.open_case(INQUIRY, actor=FRONT_DESK, idempotency_key="open-9")
    case_id = opened.case_id
    recorded = first.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING,
                            idempotency_key="pay-9")
    fired = first.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "x"}, idempotency_key="hold-9")
    first_store.close()

    second_store = SqlStore(any_db_url)
    try:
        second = Engine(second_store, KAP_PATHWAY, clock=clock)
        before = dump(any_db_url)
        assert second.open_case(INQUIRY, actor=FRONT_DESK, idempotency_key="open-9") == replace(
            opened, replayed=True)
        assert second.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING,
                             idempotency_key="pay-9") == replace(recorded, replayed=True)
        assert second.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "x"},
                           idempotency_key="hold-9") == replace(fired, replayed=True)
        with pytest.raises(IdempotencyKeyReused):
            second.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "y"}, idempotency_key="hold-9")
        assert dump(any_db_url) == before
    finally:
        second_store.close()


def test_key_replays_even_when_expected_version_is_stale(engine: Engine, any_db_url: str) -> None:
    """A retried command whose first attempt committed replays instead of reporting a conflict."""
    case_id = open_case(engine)
    v = engine.case(case_id).version
    first = engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "x"}, idempotency_key="h-2",
                        expected_version=v)
    before = dump(any_db_url)
    again = engine.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "x"}, idempotency_key="h-2",
                        expected_version=v)
    assert again == replace(first, replayed=True)
    assert dump(any_db_url) == before


def test_open_case_retry_after_a_new_workflow_version_replays(any_db_url: str, clock: FakeClock) -> None:
    """A retried open_case with the same key still finds its case after the engine gains workflow v2."""
    store = SqlStore(any_db_url)
    try:
        opened = Engine(store, KAP_PATHWAY, clock=clock).open_case(INQUIRY, actor=FRONT_DESK,
                                                                    idempotency_key="open-77")
        upgraded = Engine(store, [KAP_PATHWAY, KAP_PATHWAY.with_thresholds("2", max_systolic=135)], clock=clock)
        again = upgraded.open_case(INQUIRY, actor=FRONT_DESK, idempotency_key="open-77")
        assert again.case_id == opened.case_id and again.replayed
    finally:
        store.close()


def test_replayed_commands_do_not_touch_the_audit(engine: Engine, clock: FakeClock, any_db_url: str) -> None:
    """Ten retries of each keyed command along a path leave the audit exactly as one run of them."""
    case_id = open_case(engine)
    starts = "2026-01-08T15:00:00+00:00"
    commands = [
        lambda: engine.record(case_id, "appointment", {"kind": "evaluation", **who(case_id), "starts_at": starts},
                              actor=FRONT_DESK, idempotency_key="c1"),
        lambda: engine.fire(case_id, "book_evaluation", actor=FRONT_DESK, idempotency_key="c2"),
        lambda: engine.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"},
                              actor=BILLING, idempotency_key="c3"),
        lambda: engine.fire(case_id, "start_evaluation", actor=PRESCRIBER, idempotency_key="c4"),
    ]
    for command in commands:
        first = command()
        snapshot = dump(any_db_url)
        for _ in range(10):
            assert command() == replace(first, replayed=True)
        assert dump(any_db_url) == snapshot
    assert engine.case(case_id).state == "evaluating"
    assert engine.case(case_id).version == 5
    assert engine.verify_audit().ok


def test_unkeyed_commands_are_not_deduplicated(engine: Engine, clock: FakeClock) -> None:
    """Without a key the same record twice is two facts (keys are the only dedup mechanism)."""
    case_id = open_case(engine)
    to_evaluating(engine, clock, case_id)
    for _ in range(2):
        engine.record(case_id, "vitals", {"phase": "other", "systolic": 120, "diastolic": 80}, actor=THERAPIST)
    assert len(engine.facts(case_id, "vitals")) == 2
