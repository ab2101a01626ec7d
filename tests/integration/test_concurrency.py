"""Concurrent writers on one database: compare-and-swap on the case version, one unforked audit chain.

Every test runs on a SQLite file; those marked below also on PostgreSQL (its own schema per test) when
KAPFLOW_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import CLIENT, FRONT_DESK, INQUIRY, PRESCRIBER, THERAPIST, open_case, prepare_dosing, to_ready

from kapflow.app.engine import Engine
from kapflow.domain.case import Outcome, replay_events
from kapflow.errors import ConcurrencyConflict, TransitionNotAvailable
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered

THREADS = 8




@pytest.fixture
def db_any(any_ready_url: str) -> str:
    """A database at the newest schema: a fresh SQLite file, or a fresh PostgreSQL schema."""
    return any_ready_url


@pytest.fixture
def engines(db_any: str, clock: FakeClock) -> Iterator[list[Engine]]:
    """THREADS engines, each with its own SqlStore (own connection pool) on the same database."""
    stores = [SqlStore(db_any, create=(i == 0)) for i in range(THREADS)]
    yield [Engine(s, KAP_PATHWAY, clock=clock) for s in stores]
    for s in stores:
        s.close()


def run_together(calls: list[Callable[[], Outcome]]) -> list[Outcome | BaseException]:
    """Run each call in its own thread, released at once by a barrier; return results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Outcome | BaseException | None] = [None] * len(calls)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # collected and asserted on by the test
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer never finished"
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def assert_single_chain(engine: Engine, case_id: str) -> None:
    """The case's chain verifies, has one event per case_seq 1..n, and its projection replays."""
    assert engine.verify_audit().ok
    history = engine.history(case_id)
    case = engine.case(case_id)
    assert [ev.case_seq for ev in history] == list(range(1, case.event_count + 1))
    assert len({ev.prev_hash for ev in history}) == len(history)  # no two events extend the same link
    assert history[-1].hash == case.head_hash
    assert replay_events(history) == (case.state, case.previous_state, case.version, case.facts)


def test_two_engines_conflicting_triggers_one_wins(engines: list[Engine], clock: FakeClock) -> None:
    """withdraw and hold from the same read version: the first commits, the second gets ConcurrencyConflict."""
    first, second = engines[0], engines[1]
    case_id = open_case(first)
    to_ready(first, clock, case_id)
    seen_first, seen_second = first.case(case_id), second.case(case_id)
    assert seen_first.version == seen_second.version
    v, events = seen_first.version, seen_first.event_count

    won = first.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "x"}, expected_version=v)
    assert won.state == "withdrawn" and won.version == v + 1
    with pytest.raises(ConcurrencyConflict) as info:
        second.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "y"}, expected_version=v)
    assert (info.value.case_id, info.value.expected_version, info.value.actual_version) == (case_id, v, v + 1)

    case = second.case(case_id)
    assert case.state == "withdrawn" and case.version == v + 1 and case.event_count == events + 1
    assert [ev.kind for ev in second.history(case_id)][-1] == "transition"
    assert_single_chain(second, case_id)


def test_two_engines_conflicting_facts_one_wins(engines: list[Engine], clock: FakeClock) -> None:
    """Two different facts recorded against the same version: one is kept, the other conflicts and is absent."""
    first, second = engines[0], engines[1]
    case_id = open_case(first)
    v = second.case(case_id).version
    first.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=FRONT_DESK,
                 expected_version=v)
    with pytest.raises(ConcurrencyConflict):
        second.record(case_id, "questionnaire", answered("PHQ-9", 4), actor=CLIENT,
                      expected_version=v)
    kinds = [f.kind for f in second.facts(case_id)]
    assert kinds == ["inquiry", "payment"]
    assert_single_chain(first, case_id)


def test_stale_expected_version_is_rejected_even_for_a_refusable_command(engines: list[Engine]) -> None:
    """A stale expected_version raises ConcurrencyConflict before any refusal is audited."""
    first, second = engines[0], engines[1]
    case_id = open_case(first)
    v = first.case(case_id).version
    first.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "x"}, expected_version=v)
    before = second.case(case_id)
    with pytest.raises(ConcurrencyConflict):
        second.fire(case_id, "start_kap_session", actor=THERAPIST, expected_version=v)
    assert second.case(case_id) == before
    assert_single_chain(second, case_id)


def test_threads_with_expected_version_exactly_one_succeeds(engines: list[Engine], clock: FakeClock) -> None:
    """Eight threads fire on one case from the same read version; in each round exactly one wins."""
    case_id = open_case(engines[0])
    to_ready(engines[0], clock, case_id)
    for _round in range(3):
        v = engines[0].case(case_id).version
        calls: list[Callable[[], Outcome]] = []
        for i, eng in enumerate(engines):
            if i % 2:
                calls.append(lambda e=eng, v=v: e.record(
                    case_id, "questionnaire", answered("GAD-7", 2), actor=CLIENT, expected_version=v,
                ))
            else:
                calls.append(lambda e=eng, v=v: e.fire(
                    case_id, "start_integration_session", actor=THERAPIST, expected_version=v,
                ))
        results = run_together(calls)
        wins = [r for r in results if isinstance(r, Outcome)]
        losses = [r for r in results if not isinstance(r, Outcome)]
        assert len(wins) == 1, results
        assert all(isinstance(r, ConcurrencyConflict) for r in losses), losses
        assert wins[0].version == v + 1
        assert engines[0].case(case_id).version == v + 1
        if engines[0].case(case_id).state == "integration_session":
            engines[0].fire(case_id, "complete_integration_session", actor=THERAPIST)
    assert_single_chain(engines[0], case_id)


def test_threads_same_trigger_without_expected_version_serialise(
    engines: list[Engine], clock: FakeClock, db_any: str
) -> None:
    """Eight holds at once without expected_version: one moves the case, the others are audited refusals.

    (On PostgreSQL a loser of the compare-and-swap may instead get ConcurrencyConflict and write nothing.)
    """
    case_id = open_case(engines[0])
    before = engines[0].case(case_id)
    results = run_together([
        lambda e=eng, i=i: e.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": f"r{i}"})
        for i, eng in enumerate(engines)
    ])
    wins = [r for r in results if isinstance(r, Outcome)]
    refused = [r for r in results if isinstance(r, TransitionNotAvailable)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(wins) == 1
    assert len(wins) + len(refused) + len(conflicts) == THREADS, results
    if db_any.startswith("sqlite"):
        assert not conflicts  # BEGIN IMMEDIATE: each writer sees the one before it
    case = engines[0].case(case_id)
    assert case.state == "on_hold" and case.version == before.version + 1
    assert case.event_count == before.event_count + 1 + len(refused)
    assert [ev.kind for ev in engines[0].history(case_id)].count("refused") == len(refused)
    assert_single_chain(engines[0], case_id)


def test_threads_record_without_expected_version_all_succeed(engines: list[Engine]) -> None:
    """Concurrent record() calls without expected_version all commit, one after another, consecutive versions."""
    case_id = open_case(engines[0])
    start = engines[0].case(case_id).version
    per_thread = 5

    def many(eng: Engine, i: int) -> list[Outcome]:
        return [
            eng.record(case_id, "questionnaire", answered("PHQ-9", (i + n) % 27), actor=CLIENT)
            for n in range(per_thread)
        ]

    barrier = threading.Barrier(THREADS)
    outcomes: dict[int, list[Outcome]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = many(engines[i], i)
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    versions = sorted(o.version for outs in outcomes.values() for o in outs)
    assert versions == list(range(start + 1, start + 1 + THREADS * per_thread))
    for outs in outcomes.values():
        mine = [o.version for o in outs]
        assert mine == sorted(mine)
    assert len(engines[0].facts(case_id, "questionnaire")) == THREADS * per_thread
    assert_single_chain(engines[0], case_id)


def test_threads_on_different_cases_all_succeed(engines: list[Engine]) -> None:
    """Writers on different cases do not conflict; every case's chain stays whole."""
    case_ids = [open_case(engines[0], first_name=f"Sample{i}") for i in range(THREADS)]
    results = run_together([
        lambda e=eng, c=c: e.fire(c, "hold", actor=FRONT_DESK, data={"reason": "parallel"},
                                  expected_version=1)
        for eng, c in zip(engines, case_ids, strict=True)
    ])
    assert all(isinstance(r, Outcome) and r.state == "on_hold" for r in results), results
    for c in case_ids:
        assert_single_chain(engines[0], c)


def test_threads_open_case_with_one_idempotency_key_open_one_case(engines: list[Engine]) -> None:
    """Eight retries of one open_case racing with the same key create one case; seven are replays."""
    results: list[Any] = run_together([
        lambda e=eng: e.open_case(INQUIRY, actor=FRONT_DESK, idempotency_key="inquiry-form-0001")
        for eng in engines
    ])
    assert all(isinstance(r, Outcome) for r in results), results
    assert len({r.case_id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * (THREADS - 1)
    assert len(engines[0].cases()) == 1
    assert engines[0].verify_audit().ok


def test_prescriber_and_therapist_race_to_start_the_session(
    engines: list[Engine], clock: FakeClock, db_any: str
) -> None:
    """Two clinicians start the same KAP session at once: one dosing, never two start_kap_session moves."""
    case_id = open_case(engines[0])
    to_ready(engines[0], clock, case_id)
    prepare_dosing(engines[0], case_id)
    results = run_together([
        lambda: engines[1].fire(case_id, "start_kap_session", actor=THERAPIST),
        lambda: engines[2].fire(case_id, "start_kap_session", actor=PRESCRIBER),
    ])
    assert sum(isinstance(r, Outcome) for r in results) == 1
    loser = next(r for r in results if not isinstance(r, Outcome))
    expected: tuple[type[Exception], ...] = (
        (TransitionNotAvailable,) if db_any.startswith("sqlite") else (TransitionNotAvailable, ConcurrencyConflict)
    )
    assert isinstance(loser, expected), loser
    history = engines[0].history(case_id)
    assert [ev.trigger for ev in history if ev.kind == "transition"].count("start_kap_session") == 1
    assert_single_chain(engines[0], case_id)
