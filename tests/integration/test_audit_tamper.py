"""Audit verification finds rows edited, deleted, reordered or forged behind the engine's back."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from raw_db import RawDb, projection_statements
from support import BILLING, CLIENT, FRONT_DESK, PRESCRIBER, THERAPIST, open_case, to_ready

from kapflow.app.engine import Engine
from kapflow.audit.chain import AuditProblem, AuditReport, link_hash
from kapflow.domain.case import Actor
from kapflow.errors import Refused
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered

Params = Mapping[str, Any]


@pytest.fixture
def db_url_any(any_ready_url: str) -> str:
    """A database at the newest schema: a fresh SQLite file, or a fresh PostgreSQL schema."""
    return any_ready_url


class World:
    """Three cases with interleaved histories (including refusals); B is the one tampered with."""

    def __init__(self, url: str, clock: FakeClock) -> None:
        self.store = SqlStore(url)
        self.engine = Engine(self.store, KAP_PATHWAY, clock=clock)
        self.raw = RawDb(url)
        e = self.engine
        self.a = open_case(e, first_name="Alpha")
        self.b = open_case(e, first_name="Bravo")
        self.c = open_case(e, first_name="Charlie")
        e.record(self.a, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING)
        to_ready(e, clock, self.b, sessions=2)
        with pytest.raises(Refused):
            e.fire(self.b, "discharge", actor=THERAPIST)
        e.record(self.c, "questionnaire", answered("GAD-7", 5), actor=CLIENT)
        e.record(self.b, "questionnaire", answered("PHQ-9", 11), actor=CLIENT)
        e.fire(self.a, "hold", actor=FRONT_DESK, data={"reason": "vacation"})
        e.fire(self.b, "begin_reassessment", actor=PRESCRIBER)
        e.fire(self.c, "withdraw", actor=CLIENT, data={"reason": "changed mind"})
        assert e.verify_audit().ok

    def seqs(self, case_id: str) -> list[int]:
        """Global seq of each of the case's rows, in case_seq order."""
        rows = self.raw.rows("SELECT seq FROM audit_events WHERE case_id = :c ORDER BY case_seq", {"c": case_id})
        return [r[0] for r in rows]

    def only_problem(self) -> AuditProblem:
        """The single problem of the whole-database report; the untouched cases still verify."""
        report = self.engine.verify_audit()
        assert not report.ok
        assert len(report.problems) == 1, report.as_dict()
        (problem,) = report.problems
        assert problem.case_id == self.b
        assert problem.reason
        for other in (self.a, self.c):
            assert self.engine.verify_audit(other).ok
        single = self.engine.verify_audit(self.b)
        assert not single.ok and single.problems[0].seq == problem.seq
        return problem

    def close(self) -> None:
        self.raw.close()
        self.store.close()


@pytest.fixture
def world(db_url_any: str, clock: FakeClock) -> Iterator[World]:
    w = World(db_url_any, clock)
    yield w
    w.close()


def test_untouched_history_verifies(world: World) -> None:
    """Before any tampering, every case's chain verifies and every event is counted."""
    report: AuditReport = world.engine.verify_audit()
    total = world.raw.rows("SELECT COUNT(*) FROM audit_events")[0][0]
    assert report.ok and report.cases == 3 and report.events == total
    assert report.as_dict()["problems"] == []


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("data", json.dumps({"kind": "payment", "fact": {"amount": "2500.00", "purpose": "evaluation_fee"}})),
        ("actor", "np-mallory"),
        ("role", "auditor"),
        ("at", "2025-12-31T23:59:59.000000+00:00"),
        ("kind", "opened"),
        ("to_state", "completed"),
        ("blockers", json.dumps([{"code": "none"}])),
        ("idempotency_key", "forged-key"),
        ("workflow_version", "2"),
        ("prev_hash", "f" * 64),
        ("hash", "0" * 64),
        ("os_user", "mallory"),  # set on a row written without one: the hash covers it once present
    ],
)
def test_edited_column_is_found_at_that_row(world: World, column: str, value: str) -> None:
    """Changing any hashed column of one middle row of case B is reported at exactly that row."""
    target = world.seqs(world.b)[5]
    world.raw.run((f'UPDATE audit_events SET "{column}" = :v WHERE seq = :s', {"v": value, "s": target}))
    problem = world.only_problem()
    assert problem.seq == target and problem.case_seq == 6


def test_edited_actor_is_found(world: World) -> None:
    """Rewriting who did something (the actor) of B's opening row breaks the chain at that row."""
    first = world.seqs(world.b)[0]
    world.raw.run(("UPDATE audit_events SET actor = :a WHERE seq = :s", {"a": "someone-else", "s": first}))
    problem = world.only_problem()
    assert problem.seq == first and problem.case_seq == 1
    assert "edited" in problem.reason


@pytest.mark.parametrize("forged", [None, "someone-else"])
def test_an_edited_operating_system_user_is_found(world: World, forged: str | None) -> None:
    """The account recorded beside a CLI actor is hashed: clearing or changing it breaks the chain there."""
    world.engine.record(world.b, "questionnaire", answered("GAD-7", 4),
                        actor=Actor("client-portal", "client", os_user="alice"))
    assert world.engine.verify_audit().ok
    target = world.seqs(world.b)[-1]
    assert world.raw.rows("SELECT os_user FROM audit_events WHERE seq = :s", {"s": target}) == [("alice",)]
    world.raw.run(("UPDATE audit_events SET os_user = :v WHERE seq = :s", {"v": forged, "s": target}))
    problem = world.only_problem()
    assert problem.seq == target


def test_deleted_middle_row_is_found_at_the_next_row(world: World) -> None:
    """Deleting a middle row of B is reported at B's row that follows the gap."""
    seqs = world.seqs(world.b)
    world.raw.run(("DELETE FROM audit_events WHERE seq = :s", {"s": seqs[4]}))
    problem = world.only_problem()
    assert problem.seq == seqs[5] and problem.case_seq == 6


def test_deleted_first_row_is_found(world: World) -> None:
    """Deleting B's opening event is reported at B's second row."""
    seqs = world.seqs(world.b)
    world.raw.run(("DELETE FROM audit_events WHERE seq = :s", {"s": seqs[0]}))
    problem = world.only_problem()
    assert problem.seq == seqs[1]


def test_deleted_newest_row_is_found_at_the_case_head(world: World) -> None:
    """Deleting B's newest event leaves a chain shorter than the case's head: reported at the head."""
    seqs = world.seqs(world.b)
    world.raw.run(("DELETE FROM audit_events WHERE seq = :s", {"s": seqs[-1]}))
    problem = world.only_problem()
    assert problem.seq is None and problem.case_seq == len(seqs) - 1


def test_deleted_newest_row_with_fixed_count_is_found_by_head_hash(world: World) -> None:
    """Deleting B's newest event and lowering the case's event_count is still caught by the head hash."""
    seqs = world.seqs(world.b)
    world.raw.run(
        ("DELETE FROM audit_events WHERE seq = :s", {"s": seqs[-1]}),
        ("UPDATE cases SET event_count = event_count - 1 WHERE id = :c", {"c": world.b}),
    )
    problem = world.only_problem()
    assert problem.seq is None and problem.case_seq == len(seqs) - 1


def test_deleted_newest_row_with_rewritten_head_is_found_by_replay(world: World) -> None:
    """Deleting B's newest move and pointing the case head at the event before is caught by replaying B."""
    history = world.engine.history(world.b)
    assert history[-1].kind == "transition"
    world.raw.run(
        ("DELETE FROM audit_events WHERE seq = :s", {"s": history[-1].seq}),
        ("UPDATE cases SET event_count = :n, head_hash = :h WHERE id = :c",
         {"n": len(history) - 1, "h": history[-2].hash, "c": world.b}),
    )
    problem = world.only_problem()
    assert problem.seq is None and "replay" in problem.reason


def test_tampered_facts_in_the_case_row_are_found(world: World) -> None:
    """A fee payment added only to the case's stored projection (which guards read) is reported."""
    facts = world.engine.case(world.a).facts
    forged = {**facts, "facts": [*facts["facts"], {"kind": "payment", "at": "2026-01-05T09:00:00.000000+00:00",
                                                    "by": "billing-1", "data": {"amount": "250.00"}}]}
    world.raw.run(*projection_statements(world.a, forged))
    report = world.engine.verify_audit()
    assert [p.case_id for p in report.problems] == [world.a]
    assert world.engine.verify_audit(world.b).ok


def test_deleted_all_rows_of_a_case_is_found(world: World) -> None:
    """Wiping B's whole history is reported at B's head."""
    world.raw.run(("DELETE FROM audit_events WHERE case_id = :c", {"c": world.b}))
    problem = world.only_problem()
    assert problem.seq is None and problem.case_seq == 0


def test_swapped_seq_values_are_found(world: World) -> None:
    """Swapping the global seq of two of B's rows (via a temporary value) is reported at the earlier seq."""
    seqs = world.seqs(world.b)
    low, high = seqs[3], seqs[7]
    world.raw.run(
        ("UPDATE audit_events SET seq = :t WHERE seq = :s", {"t": -1, "s": low}),
        ("UPDATE audit_events SET seq = :t WHERE seq = :s", {"t": low, "s": high}),
        ("UPDATE audit_events SET seq = :t WHERE seq = :s", {"t": high, "s": -1}),
    )
    problem = world.only_problem()
    assert problem.seq == low and problem.case_seq == 8


def test_swapped_adjacent_rows_are_found(world: World) -> None:
    """Swapping two neighbouring rows of B is found too."""
    seqs = world.seqs(world.b)
    low, high = seqs[2], seqs[3]
    world.raw.run(
        ("UPDATE audit_events SET seq = :t WHERE seq = :s", {"t": -1, "s": low}),
        ("UPDATE audit_events SET seq = :t WHERE seq = :s", {"t": low, "s": high}),
        ("UPDATE audit_events SET seq = :t WHERE seq = :s", {"t": high, "s": -1}),
    )
    assert world.only_problem().seq == low


def test_swapped_case_seq_values_are_found(world: World) -> None:
    """Swapping the case_seq of two of B's rows is reported at the first of them."""
    seqs = world.seqs(world.b)
    first, second = seqs[2], seqs[6]
    world.raw.run(
        ("UPDATE audit_events SET case_seq = -1 WHERE seq = :s", {"s": first}),
        ("UPDATE audit_events SET case_seq = 3 WHERE seq = :s", {"s": second}),
        ("UPDATE audit_events SET case_seq = 7 WHERE seq = :s", {"s": first}),
    )
    problem = world.only_problem()
    assert problem.seq == first and problem.case_seq == 7


def _insert(world: World, values: Mapping[str, Any]) -> None:
    columns = ", ".join(f'"{k}"' for k in values)
    params = ", ".join(f":{k}" for k in values)
    world.raw.run((f"INSERT INTO audit_events ({columns}) VALUES ({params})", values))


def _forged_after_head(world: World, *, rehash: bool) -> dict[str, Any]:
    """A row that claims to extend B's chain: a fee payment nobody recorded."""
    head = world.engine.history(world.b)[-1]
    forged = replace(
        head, seq=None, case_seq=head.case_seq + 1, kind="fact", actor="billing-1", role="billing",
        trigger=None, data={"kind": "payment", "fact": {"amount": "9999.00", "purpose": "other"}},
        blockers=(), idempotency_key=None, prev_hash=head.hash, hash="a" * 64,
    )
    if rehash:
        forged = replace(forged, hash=link_hash(forged))
    row = forged.as_dict()
    row.pop("seq")
    row["data"] = json.dumps(row["data"], sort_keys=True, separators=(",", ":"))
    row["blockers"] = "[]"
    return row


def test_forged_row_with_a_wrong_hash_is_found_at_that_row(world: World) -> None:
    """A row inserted after B's head without a valid hash is reported at the forged row."""
    _insert(world, _forged_after_head(world, rehash=False))
    forged_seq = world.raw.rows("SELECT MAX(seq) FROM audit_events")[0][0]
    problem = world.only_problem()
    assert problem.seq == forged_seq and "edited" in problem.reason


def test_forged_row_with_a_valid_link_is_found_at_the_head(world: World) -> None:
    """Even a correctly hashed row appended to B is caught: the case's head does not point to it."""
    _insert(world, _forged_after_head(world, rehash=True))
    problem = world.only_problem()
    assert problem.seq is None


def test_forged_row_in_front_of_the_history_is_found(world: World) -> None:
    """A row slipped in before B's opening event (seq 0, case_seq 0) is reported at the forged row."""
    row = _forged_after_head(world, rehash=True)
    row.update(seq=0, case_seq=0, prev_hash="0" * 64)
    _insert(world, row)
    problem = world.only_problem()
    assert problem.seq == 0 and problem.case_seq == 0


def _ghost_row(world: World, *, valid_hash: bool) -> dict[str, Any]:
    head = world.engine.history(world.b)[-1]
    ghost = replace(
        head, seq=None, case_id="case-ghost", case_seq=1, kind="opened", prev_hash="0" * 64, blockers=(),
        trigger=None, idempotency_key=None,
    )
    ghost = replace(ghost, hash=link_hash(ghost) if valid_hash else "b" * 64)
    row = ghost.as_dict()
    row.pop("seq")
    row["data"] = json.dumps(row["data"], sort_keys=True, separators=(",", ":"))
    row["blockers"] = "[]"
    return row


def test_forged_row_for_an_unknown_case_is_found(world: World) -> None:
    """A well-hashed audit row for a case missing from the cases table is reported; real cases still verify."""
    _insert(world, _ghost_row(world, valid_hash=True))
    report = world.engine.verify_audit()
    assert [(p.case_id, p.seq) for p in report.problems] == [("case-ghost", None)]
    assert "not in the cases table" in report.problems[0].reason
    for case_id in (world.a, world.b, world.c):
        assert world.engine.verify_audit(case_id).ok


def test_badly_hashed_row_for_an_unknown_case_is_one_problem(world: World) -> None:
    """A forged, badly hashed row of an unknown case is reported once, like every other broken case."""
    _insert(world, _ghost_row(world, valid_hash=False))
    report = world.engine.verify_audit()
    assert [p.case_id for p in report.problems] == ["case-ghost"]


def test_engine_keeps_appending_after_tamper_without_hiding_it(world: World) -> None:
    """New events written after a tamper do not repair the chain: the problem stays reported."""
    target = world.seqs(world.b)[2]
    world.raw.run(("UPDATE audit_events SET actor = 'x' WHERE seq = :s", {"s": target}))
    world.engine.record(world.b, "questionnaire", answered("GAD-7", 3), actor=CLIENT)
    assert world.only_problem().seq == target


def test_tampered_case_projection_is_found(world: World) -> None:
    """Moving case B to dosing or adding a fee payment only in the cases row is reported by verification."""
    world.raw.run(
        ("UPDATE cases SET state = 'dosing', previous_state = 'ready_for_kap' WHERE id = :c", {"c": world.b}),
    )
    assert not world.engine.verify_audit().ok
