"""No double booking: a clinician or room is held by one appointment at a time, on SQLite and PostgreSQL.

Each test runs on a SQLite file and on a PostgreSQL schema of its own (when KAPFLOW_TEST_POSTGRES_URL
is set). The practice is in New York, so taken times read in its zone (EDT after 8 March 2026).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from support import FRONT_DESK, INQUIRY, to_ready

from kapflow.app.engine import Engine
from kapflow.domain.case import Outcome
from kapflow.domain.events import EventKind
from kapflow.domain.slots import Hold, HoldChanges
from kapflow.errors import InvalidFact, LostRace, TransitionBlocked
from kapflow.store import schema
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

NY = ZoneInfo("America/New_York")
DESKS = 6
HOLDER = {**INQUIRY, "first_name": "Holder", "last_name": "Alpha-Client", "email": "holder.alpha@example.org"}


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    """A time on the practice's clocks in March 2026."""
    return datetime(2026, 3, day, hour, minute, tzinfo=NY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))


@pytest.fixture
def stores(any_ready_url: str) -> Iterator[list[SqlStore]]:
    """DESKS stores (each its own connection pool) on one database: the front desks of one practice."""
    opened = [SqlStore(any_ready_url, create=False) for _ in range(DESKS)]
    yield opened
    for store in opened:
        store.close()


def desk(store: SqlStore, clock: FakeClock) -> Engine:
    return Engine(store, KAP_PATHWAY, clock=clock, timezone="America/New_York")


@pytest.fixture
def engine(stores: list[SqlStore], clock: FakeClock) -> Engine:
    return desk(stores[0], clock)


def book(engine: Engine, case_id: str, starts: datetime, *, clinician: str = "dr-lee", room: str | None = None,
         kind: str = "evaluation", minutes: int | None = None) -> str:
    outcome = engine.book_appointment(case_id, kind, starts, actor=FRONT_DESK, clinician=clinician, room=room,
                                      minutes=minutes)
    return str(outcome.extra["appointment"])


def refused(call: Callable[[], object]) -> TransitionBlocked:
    with pytest.raises(TransitionBlocked) as caught:
        call()
    return caught.value


def test_the_same_clinician_at_an_overlapping_time_is_refused_with_the_taken_time_only(engine: Engine) -> None:
    """A second client's evaluation with the same prescriber half an hour later is refused, and audited;
    the blocker gives the clinician and the taken time in the practice's zone, nothing of the other client."""
    holder = engine.open_case(HOLDER, actor=FRONT_DESK).case_id
    other = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    book(engine, holder, ny(9, 10))

    refusal = refused(lambda: book(engine, other, ny(9, 10, 30)))

    [blocker] = refusal.blockers
    assert blocker.code == "clinician_unavailable"
    assert "dr-lee" in blocker.message
    assert "2026-03-09 10:00 EDT" in blocker.message and "2026-03-09 11:00 EDT" in blocker.message
    assert dict(blocker.facts) == {"resource": "clinician:dr-lee", "taken_from": "2026-03-09 10:00 EDT",
                                   "taken_until": "2026-03-09 11:00 EDT"}
    said = json.dumps(refusal.as_dict())
    assert holder not in said and "Holder" not in said and "Alpha" not in said and "holder.alpha" not in said
    assert engine.appointments(other) == []
    last = engine.history(other)[-1]
    assert last.kind == EventKind.REFUSED and [b["code"] for b in last.blockers] == ["clinician_unavailable"]
    assert holder not in json.dumps(last.data) + json.dumps(list(last.blockers))


def test_the_same_room_at_an_overlapping_time_is_refused(engine: Engine) -> None:
    """Two clinicians cannot use one room at once: room_unavailable, with the room and its taken time."""
    first = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    second = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    book(engine, first, ny(9, 10), clinician="dr-lee", room="room-2")

    refusal = refused(lambda: book(engine, second, ny(9, 9, 30), clinician="dr-okafor", room="room-2"))

    assert [(b.code, dict(b.facts)["resource"]) for b in refusal.blockers] == [("room_unavailable", "room:room-2")]
    assert "room room-2 is already booked from 2026-03-09 10:00 EDT to 2026-03-09 11:00 EDT" in refusal.message
    book(engine, second, ny(9, 9, 30), clinician="dr-okafor", room="room-3")  # another room is free


def test_both_taken_gives_both_blockers(engine: Engine) -> None:
    """A booking whose clinician and room are both taken names both, each with its time."""
    first = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    second = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    book(engine, first, ny(9, 10), clinician="dr-lee", room="room-2")
    refusal = refused(lambda: book(engine, second, ny(9, 10, 15), clinician="dr-lee", room="room-2"))
    assert sorted(b.code for b in refusal.blockers) == ["clinician_unavailable", "room_unavailable"]


def test_adjacent_times_are_fine(engine: Engine) -> None:
    """One appointment ending as the next starts is no overlap, before or after."""
    cases = [engine.open_case(INQUIRY, actor=FRONT_DESK).case_id for _ in range(3)]
    book(engine, cases[0], ny(9, 10), room="room-2")
    book(engine, cases[1], ny(9, 11), room="room-2")
    book(engine, cases[2], ny(9, 9), room="room-2")
    assert [len(engine.appointments(c)) for c in cases] == [1, 1, 1]


def test_a_cancelled_or_missed_appointment_frees_its_slot_and_an_attended_one_keeps_it(engine: Engine) -> None:
    """Cancel and no-show release the clinician; attended keeps the time held."""
    cases = [engine.open_case(INQUIRY, actor=FRONT_DESK).case_id for _ in range(4)]
    book(engine, cases[0], ny(9, 10))
    engine.cancel_appointment(cases[0], "a1", actor=FRONT_DESK)
    book(engine, cases[1], ny(9, 10))
    engine.mark_no_show(cases[1], "a1", actor=FRONT_DESK)
    book(engine, cases[2], ny(9, 10))
    engine.record(cases[2], "appointment_update", {"appointment": "a1", "action": "attended"}, actor=FRONT_DESK)
    refusal = refused(lambda: book(engine, cases[3], ny(9, 10)))
    assert [b.code for b in refusal.blockers] == ["clinician_unavailable"]


def test_a_reschedule_into_a_taken_slot_is_refused_and_keeps_the_old_time(engine: Engine) -> None:
    """Moving an appointment onto another's held time is refused; it keeps its own time and its hold."""
    first = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    second = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    third = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    book(engine, first, ny(9, 10))
    book(engine, second, ny(9, 14))

    refusal = refused(lambda: engine.reschedule_appointment(second, "a1", ny(9, 10, 30), actor=FRONT_DESK))

    assert refusal.fact_kind == "appointment_update"
    assert [dict(b.facts)["taken_from"] for b in refusal.blockers] == ["2026-03-09 10:00 EDT"]
    assert engine.appointments(second)[0].starts_at == ny(9, 14)
    assert [b.code for b in refused(lambda: book(engine, third, ny(9, 14, 30))).blockers] == ["clinician_unavailable"]


def test_a_reschedule_overlapping_its_own_old_time_is_fine_and_frees_what_it_left(engine: Engine) -> None:
    """An appointment moved half an hour later does not collide with itself; the half hour it left is free."""
    first = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    second = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    book(engine, first, ny(9, 10))
    engine.reschedule_appointment(first, "a1", ny(9, 10, 30), actor=FRONT_DESK)
    book(engine, second, ny(9, 9, 30))  # 9:30-10:30, up to the moved appointment's new start
    refusal = refused(lambda: engine.reschedule_appointment(second, "a1", ny(9, 9, 45), actor=FRONT_DESK))
    assert [dict(b.facts)["taken_from"] for b in refusal.blockers] == ["2026-03-09 10:30 EDT"]


def test_the_same_case_cannot_double_book_its_clinician_either(engine: Engine) -> None:
    """Two appointments of one case with one clinician at once are refused as well."""
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    book(engine, case_id, ny(9, 10))
    refusal = refused(lambda: book(engine, case_id, ny(9, 10, 30), kind="intention_setting"))
    assert [b.code for b in refusal.blockers] == ["clinician_unavailable"]


def test_a_kap_session_takes_a_room_and_holds_it_and_its_clinician_for_two_hours(
    engine: Engine, clock: FakeClock
) -> None:
    """A 135-minute KAP session needs a room; it holds room and clinician 10:00-12:00, whatever its length."""
    first = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    second = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    to_ready(engine, clock, first)
    to_ready(engine, clock, second)
    with pytest.raises(InvalidFact, match="room: is required for a kap session"):
        book(engine, first, ny(16, 10), kind="kap_session")
    book(engine, first, ny(16, 10), kind="kap_session", room="dosing-1", clinician="th-jordan")
    assert engine.appointments(first)[-1].minutes == 135

    refusal = refused(lambda: book(engine, second, ny(16, 11, 59), kind="kap_session", room="dosing-1",
                                   clinician="th-sam"))
    assert [b.message for b in refusal.blockers] == [
        "room dosing-1 is already booked from 2026-03-16 10:00 EDT to 2026-03-16 12:00 EDT; "
        "choose another time or another room"
    ]
    book(engine, second, ny(16, 12), kind="kap_session", room="dosing-1", clinician="th-jordan")


def test_a_booking_names_its_clinician(engine: Engine) -> None:
    """A booking without a clinician, or with an id that is not one, is invalid (nothing written)."""
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    with pytest.raises(InvalidFact, match="clinician: is required"):
        engine.record(case_id, "appointment", {"kind": "evaluation", "starts_at": ny(9, 10).isoformat()},
                      actor=FRONT_DESK)
    with pytest.raises(InvalidFact, match="clinician's id"):
        book(engine, case_id, ny(9, 10), clinician="Dr Lee; DROP")
    assert engine.case(case_id).version == 1


def _together(calls: list[Callable[[], Outcome]]) -> list[Outcome | BaseException]:
    barrier = threading.Barrier(len(calls))
    results: list[Outcome | BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # collected and asserted on below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a desk never finished"
    return [r for r in results if r is not None]


def test_desks_booking_one_slot_at_once_one_wins(stores: list[SqlStore], clock: FakeClock) -> None:
    """DESKS front desks, each on its own connection pool, book their clients with one prescriber at the
    same moment: exactly one booking commits, every other is refused with the taken time."""
    engines = [desk(store, clock) for store in stores]
    cases = [e.open_case(INQUIRY, actor=FRONT_DESK).case_id for e in engines]
    starts = [ny(9, 10, 15 * (i % 3)) for i in range(DESKS)]  # 10:00, 10:15, 10:30: all overlap

    results = _together([
        lambda e=e, c=c, s=s: e.book_appointment(c, "evaluation", s, actor=FRONT_DESK, clinician="dr-lee")
        for e, c, s in zip(engines, cases, starts, strict=True)
    ])

    won = [r for r in results if isinstance(r, Outcome)]
    lost = [r for r in results if isinstance(r, TransitionBlocked)]
    assert len(won) == 1 and len(lost) == DESKS - 1, results
    winner = cases[[isinstance(r, Outcome) for r in results].index(True)]
    held = engines[0].appointments(winner)[0]
    for refusal in lost:
        assert [dict(b.facts) for b in refusal.blockers] == [{
            "resource": "clinician:dr-lee", "taken_from": held.starts_at.astimezone(NY).strftime("%Y-%m-%d %H:%M EDT"),
            "taken_until": held.ends_at.astimezone(NY).strftime("%Y-%m-%d %H:%M EDT"),
        }]
        assert winner not in json.dumps(refusal.as_dict())
    assert sum(len(engines[0].appointments(c)) for c in cases) == 1


@pytest.mark.postgres
def test_postgres_refuses_an_overlapping_hold_even_unchecked(postgres_ready_url: str) -> None:
    """The exclusion constraint holds without the engine's check: the later commit is a lost race, retried."""
    store = SqlStore(postgres_ready_url, create=False)
    start = ny(9, 10)
    try:
        with store.write() as uow:
            uow.apply_holds(HoldChanges("case-a", (), (Hold("clinician:dr-lee", start, start + timedelta(hours=1),
                                                            "case-a", "a1"),)))
            uow.commit()
        overlapping = Hold("clinician:dr-lee", start + timedelta(minutes=59), start + timedelta(hours=2),
                           "case-b", "a1")
        with pytest.raises(LostRace) as caught, store.write() as uow:
            uow.apply_holds(HoldChanges("case-b", (), (overlapping,)))
            uow.commit()
        assert caught.value.__context__ is None  # the server's detail quotes the rows: never carried along
        with store.write() as uow:  # adjacent: fine
            uow.apply_holds(HoldChanges("case-b", (), (overlapping._replace(starts_at=start + timedelta(hours=1)),)))
            uow.commit()
    finally:
        store.close()


def test_upgrade_from_0003_adds_the_holds_and_booking_checks_work(any_db_url: str, clock: FakeClock) -> None:
    """A database at revision 0003 with a case in it upgrades to head; bookings then hold their slots."""
    command.upgrade(schema.config(any_db_url), "0003")
    assert schema.current(any_db_url) == "0003"
    done = schema.upgrade(any_db_url)
    assert (done.before, done.after) == ("0003", schema.head())
    assert schema.check(any_db_url) == []
    store = SqlStore(any_db_url)
    try:
        engine = desk(store, clock)
        first, second = (engine.open_case(INQUIRY, actor=FRONT_DESK).case_id for _ in range(2))
        book(engine, first, ny(9, 10))
        assert [b.code for b in refused(lambda: book(engine, second, ny(9, 10))).blockers] == ["clinician_unavailable"]
    finally:
        store.close()
    schema.downgrade(any_db_url, "0003")
    assert schema.current(any_db_url) == "0003"
