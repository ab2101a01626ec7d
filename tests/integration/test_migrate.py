"""Migrating cases in flight to a new workflow version, on SQLite and PostgreSQL: audited, verified, atomic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from practice_versions import KAP_V2, with_state
from sqlalchemy import inspect, text
from support import AUDITOR, FRONT_DESK, PRESCRIBER, THERAPIST, open_case, prepare_dosing, to_evaluating, to_ready

from kapflow.app.engine import Engine
from kapflow.domain.workflow import Reminder
from kapflow.errors import (
    ConcurrencyConflict,
    InvalidInput,
    MigrationRefused,
    NotPermitted,
    TransitionBlocked,
    UnknownCase,
    WorkflowDefinitionError,
)
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

V1 = KAP_PATHWAY


@pytest.fixture
def store(any_db_url: str) -> Iterator[SqlStore]:
    store = SqlStore(any_db_url)
    yield store
    store.close()


@pytest.fixture
def old(store: SqlStore, clock: FakeClock) -> Engine:
    """The practice before the deploy: version 1 only."""
    return Engine(store, V1, clock=clock)


@pytest.fixture
def new(store: SqlStore, clock: FakeClock) -> Engine:
    """The practice after deploying version 2: both loaded, new cases open on 2."""
    return Engine(store, [V1, KAP_V2], clock=clock)


def dump(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a stable order."""
    store = engine.store
    assert isinstance(store, SqlStore)
    with store.engine.connect() as conn:
        return {
            t: sorted((tuple(r) for r in conn.execute(text(f'SELECT * FROM "{t}"')).all()), key=repr)
            for t in sorted(inspect(store.engine).get_table_names())
        }


def ready_case(engine: Engine, clock: FakeClock) -> str:
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)
    return case_id


def dosing_case(engine: Engine, clock: FakeClock, systolic: int = 138, diastolic: int = 86) -> str:
    case_id = ready_case(engine, clock)
    prepare_dosing(engine, case_id, systolic=systolic, diastolic=diastolic)
    engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    return case_id


def test_migration_moves_the_case_audited_and_verified(old: Engine, new: Engine, clock: FakeClock) -> None:
    """The row moves to v2 (version + 1, same state), one 'migrated' event records it, the history verifies."""
    case_id = ready_case(old, clock)
    before = new.case(case_id)
    clock.advance(hours=1)
    outcome = new.migrate_case(case_id, KAP_V2, actor=FRONT_DESK)
    after = new.case(case_id)
    assert (after.workflow_version, after.state, after.version) == ("2", before.state, before.version + 1)
    assert after.event_count == before.event_count + 1 and after.facts == before.facts
    assert (outcome.kind, outcome.state, outcome.version, outcome.case_seq) == (
        "migrated", "ready_for_kap", after.version, after.event_count)
    assert dict(outcome.extra) == {"from_version": "1", "to_version": "2"}
    event = new.history(case_id)[-1]
    assert (event.kind, event.actor, event.role, event.from_state, event.to_state, event.workflow_version) == (
        "migrated", FRONT_DESK.id, FRONT_DESK.role, "ready_for_kap", "ready_for_kap", "2")
    assert dict(event.data) == {"from_version": "1", "to_version": "2"}
    assert event.at == clock.now() == after.updated_at
    assert new.verify_audit().ok


def test_a_migrated_case_follows_the_new_rules(old: Engine, new: Engine, store: SqlStore, clock: FakeClock) -> None:
    """After the move, 138/86 holds dosing (v2's 135/85), and an engine with only v2 can run the case."""
    case_id = ready_case(old, clock)
    new.migrate_case(case_id, KAP_V2, actor=PRESCRIBER)
    prepare_dosing(new, case_id, systolic=138, diastolic=86)
    with pytest.raises(TransitionBlocked) as info:
        new.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert [b.code for b in info.value.blockers] == ["pre_dose_blood_pressure_high"]
    v2_only = Engine(store, KAP_V2, clock=clock)
    v2_only.record(case_id, "vitals", {"phase": "pre_dose", "systolic": 128, "diastolic": 80}, actor=THERAPIST)
    assert v2_only.fire(case_id, "start_kap_session", actor=THERAPIST).state == "dosing"
    assert v2_only.verify_audit().ok


def test_timers_follow_the_new_version(store: SqlStore, old: Engine, clock: FakeClock) -> None:
    """A reminder the new version drops is cancelled, one it adds is planned, in the migration's transaction."""
    ready = V1.state("ready_for_kap")
    checkin = Reminder("v3_checkin", "therapist", "email", "Check in with the client.", after=timedelta(days=3),
                       subject="kapflow: check in")
    kept = tuple(r for r in ready.reminders if r.name != "integration_not_booked")
    v3 = with_state(replace(ready, reminders=(*kept, checkin)), "3")
    engine = Engine(store, [V1, v3], clock=clock)
    case_id = ready_case(old, clock)

    def timers() -> dict[str, str]:
        return {r["reminder"]: r["status"] for r in store.queue().timers(case_id)
                if r["reminder"] in ("integration_not_booked", "v3_checkin", "integration_not_booked_client")}

    assert timers() == {"integration_not_booked": "pending", "integration_not_booked_client": "pending"}
    engine.migrate_case(case_id, v3, actor=THERAPIST)
    assert timers() == {"integration_not_booked": "cancelled", "integration_not_booked_client": "pending",
                        "v3_checkin": "pending"}
    (due,) = [r["due_at"] for r in store.queue().timers(case_id) if r["reminder"] == "v3_checkin"]
    entered = engine.case(case_id).facts["moves"][-1]["at"]
    assert datetime.fromisoformat(due) == datetime.fromisoformat(entered) + timedelta(days=3)


def test_a_reminder_re_timed_under_its_name_follows_while_still_pending(
    store: SqlStore, old: Engine, clock: FakeClock
) -> None:
    """Version 4 sends the integration reminders after 2 days instead of 7: a pending timer moves with it,
    one a worker has claimed already keeps the time it was claimed for (it is being sent)."""
    names = ("integration_not_booked", "integration_not_booked_client")
    ready = V1.state("ready_for_kap")
    sooner = tuple(replace(r, after=timedelta(days=2)) if r.name in names else r for r in ready.reminders)
    v4 = with_state(replace(ready, reminders=sooner), "4")
    engine = Engine(store, [V1, v4], clock=clock)
    case_id = ready_case(old, clock)
    entered = datetime.fromisoformat(engine.case(case_id).facts["moves"][-1]["at"])

    def timers() -> dict[str, tuple[str, datetime]]:
        return {r["reminder"]: (r["status"], datetime.fromisoformat(r["due_at"]))
                for r in store.queue().timers(case_id) if r["reminder"] in names}

    week = entered + timedelta(days=7)
    assert timers() == {name: ("pending", week) for name in names}
    earlier = week - timedelta(minutes=1)  # the timers due before the week's (prompts, notices) out of the way
    store.queue().claim_timers("worker-x", earlier, earlier + timedelta(minutes=5), limit=100)
    [claim] = store.queue().claim_timers("worker-x", week, week + timedelta(minutes=5), limit=1)
    (other,) = set(names) - {claim.reminder}
    engine.migrate_case(case_id, v4, actor=THERAPIST)
    now = timers()
    assert now[claim.reminder] == ("claimed", week)
    assert now[other] == ("pending", entered + timedelta(days=2))
    assert len(store.queue().timers(case_id)) == len({r["key"] for r in store.queue().timers(case_id)})
    assert engine.verify_audit().ok


def test_a_refused_migration_is_audited_and_changes_nothing_else(
    old: Engine, new: Engine, clock: FakeClock
) -> None:
    """Dosing at 138/86 cannot move to v2: MigrationRefused with the reason, one refusal event, row untouched."""
    case_id = dosing_case(old, clock)
    before = dump(new)
    case = new.case(case_id)
    with pytest.raises(MigrationRefused) as info:
        new.migrate_case(case_id, KAP_V2, actor=THERAPIST)
    (reason,) = info.value.reasons
    assert reason.code == "entry_guard_fails" and dict(reason.facts)["blocker"] == "pre_dose_blood_pressure_high"
    assert (info.value.from_version, info.value.to_version, info.value.trigger) == ("1", "2", "migrate")
    after = new.case(case_id)
    assert replace(after, event_count=case.event_count, head_hash=case.head_hash) == case
    event = new.history(case_id)[-1]
    assert (event.kind, event.trigger, event.workflow_version, event.actor) == ("refused", "migrate", "1",
                                                                               THERAPIST.id)
    assert [b["code"] for b in event.blockers] == ["entry_guard_fails"]
    assert dict(event.data) == {"from_version": "1", "to_version": "2"}
    changed = {t for t, rows in dump(new).items() if rows != before[t]}
    assert changed == {"cases", "audit_events"}
    assert new.verify_audit().ok


def test_only_staff_may_migrate_and_never_an_auditor(old: Engine, new: Engine, clock: FakeClock) -> None:
    """An auditor is refused (audited), even when the caller lists the role; so is a role outside the list."""
    case_id = ready_case(old, clock)
    version = new.case(case_id).version
    with pytest.raises(NotPermitted):
        new.migrate_case(case_id, KAP_V2, actor=AUDITOR)
    with pytest.raises(NotPermitted):
        new.migrate_case(case_id, KAP_V2, actor=AUDITOR, roles={"auditor", "front_desk"})
    with pytest.raises(NotPermitted) as info:
        new.migrate_case(case_id, KAP_V2, actor=FRONT_DESK, roles={"prescriber"})
    assert info.value.allowed == ("prescriber",)
    refusals = [ev for ev in new.history(case_id) if ev.kind == "refused"]
    assert [ev.blockers[0]["code"] for ev in refusals] == ["not_permitted"] * 3
    assert new.case(case_id).version == version and new.case(case_id).workflow_version == "1"
    assert new.verify_audit().ok


def test_staff_come_from_the_workflow_and_a_workflow_without_staff_needs_roles_named(
    old: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """The default roles are the target's staff_roles; a target naming none is bad input: nothing written."""
    case_id = ready_case(old, clock)
    no_staff = replace(KAP_V2, version="2-nostaff", staff_roles=frozenset())
    engine = Engine(store, [V1, no_staff], clock=clock)
    before = dump(engine)
    with pytest.raises(InvalidInput, match="names no staff_roles") as info:
        engine.migrate_case(case_id, no_staff, actor=FRONT_DESK)
    assert info.value.field == "roles"
    assert dump(engine) == before
    moved = engine.migrate_case(case_id, no_staff, actor=FRONT_DESK, roles={"front_desk"})
    assert moved.kind == "migrated"
    assert KAP_V2.staff_roles == frozenset({"front_desk", "prescriber", "therapist"})


def test_the_dry_run_lists_every_case_in_flight_and_writes_nothing(
    old: Engine, new: Engine, clock: FakeClock
) -> None:
    """Ready: can move. Dosing at 138/86: cannot, why. Finished, or already on v2: not listed. Nothing written."""
    ready = ready_case(old, clock)
    dosing = dosing_case(old, clock)
    ineligible = open_case(old)
    to_evaluating(old, clock, ineligible)
    old.fire(ineligible, "find_ineligible", actor=PRESCRIBER, data={"reason": "exclusion"})
    on_v2 = open_case(new)
    before = dump(new)
    plans = {p.case_id: p for p in new.plan_migration(KAP_V2)}
    assert dump(new) == before
    assert set(plans) == {ready, dosing}
    assert plans[ready].ok and plans[ready].version == new.case(ready).version
    assert [r.code for r in plans[dosing].verdict.reasons] == ["entry_guard_fails"]
    assert plans[dosing].as_dict()["ok"] is False
    assert on_v2 not in plans and ineligible not in plans


def test_a_case_on_a_version_not_loaded_is_listed_as_such(
    store: SqlStore, old: Engine, clock: FakeClock
) -> None:
    """An engine that loaded only v2 still lists the v1 case, as version_not_loaded, rather than hide it."""
    case_id = open_case(old)
    v2_only = Engine(store, KAP_V2, clock=clock)
    (plan,) = v2_only.plan_migration(KAP_V2)
    assert plan.case_id == case_id and [r.code for r in plan.verdict.reasons] == ["version_not_loaded"]


def test_a_concurrent_change_is_a_conflict_and_writes_nothing(old: Engine, new: Engine, clock: FakeClock) -> None:
    """The case changed since the dry run: ConcurrencyConflict with expected_version, the case stays on v1."""
    case_id = ready_case(old, clock)
    (plan,) = new.plan_migration(KAP_V2)
    new.record(case_id, "fasting", {"attested": True}, actor=THERAPIST)
    before = dump(new)
    with pytest.raises(ConcurrencyConflict) as info:
        new.migrate_case(case_id, KAP_V2, actor=FRONT_DESK, expected_version=plan.version)
    assert (info.value.expected_version, info.value.actual_version) == (plan.version, plan.version + 1)
    assert dump(new) == before


def test_a_change_racing_the_write_is_a_conflict(
    old: Engine, new: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change committed between reading the case and writing it: the compare-and-swap refuses the write."""
    case_id = ready_case(old, clock)
    stale = new.case(case_id)
    new.record(case_id, "fasting", {"attested": True}, actor=THERAPIST)
    store = new.store
    real_write = store.write

    @contextmanager
    def write_reading_stale() -> Iterator[Any]:
        with real_write() as uow:
            monkeypatch.setattr(uow, "load_case", lambda _id, current=False: stale)
            yield uow

    monkeypatch.setattr(store, "write", write_reading_stale)
    with pytest.raises(ConcurrencyConflict):
        new.migrate_case(case_id, KAP_V2, actor=FRONT_DESK)
    monkeypatch.undo()
    assert new.case(case_id).workflow_version == "1"
    assert [ev.kind for ev in new.history(case_id)][-1] == "fact"
    assert new.verify_audit().ok


def test_bad_requests_write_nothing(old: Engine, new: Engine, store: SqlStore, clock: FakeClock) -> None:
    """Unknown case, a case already on v2, a version the engine has not loaded: errors, nothing written."""
    case_id = open_case(new)
    before = dump(new)
    with pytest.raises(UnknownCase):
        new.migrate_case("case-missing", KAP_V2, actor=FRONT_DESK)
    with pytest.raises(InvalidInput, match="already on version '2'"):
        new.migrate_case(case_id, KAP_V2, actor=FRONT_DESK)
    with pytest.raises(InvalidInput):
        new.migrate_case(case_id, V1, actor=FRONT_DESK, expected_version=0)
    with pytest.raises(InvalidInput, match="unknown role"):
        new.migrate_case(case_id, V1, actor=replace(FRONT_DESK, role="janitor"))
    with pytest.raises(WorkflowDefinitionError, match="version '3' is not loaded"):
        new.migrate_case(case_id, V1.with_thresholds("3", max_systolic=130), actor=FRONT_DESK)
    assert dump(new) == before


def test_a_case_can_go_back_and_its_history_still_replays(old: Engine, new: Engine, clock: FakeClock) -> None:
    """v1 -> v2 -> v1 with a fact between: each migration counts as one change and the chain verifies."""
    case_id = ready_case(old, clock)
    start = new.case(case_id).version
    new.migrate_case(case_id, KAP_V2, actor=FRONT_DESK)
    new.record(case_id, "fasting", {"attested": True}, actor=THERAPIST)
    assert new.migrate_case(case_id, V1, actor=FRONT_DESK).version == start + 3
    assert new.case(case_id).workflow_version == "1"
    assert [ev.kind for ev in new.history(case_id)][-3:] == ["migrated", "fact", "migrated"]
    assert new.verify_audit(case_id).ok and new.verify_audit().ok
