"""The clinician and room an appointment holds: a pure function of the case's facts (kapflow.domain.slots)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kapflow.domain.appointments import AppointmentFacts
from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.errors import InvalidFact
from kapflow.domain.slots import NO_CHANGES, Hold, check_room, hold_changes, taken_blockers, wanted_holds

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
VISITS = AppointmentFacts(kinds=("scan", "session"), rooms=("session",), holds=(("session", 120),))


def booked(raw: dict[str, object], kind: str, starts: datetime, **extra: object) -> dict[str, object]:
    data = {"kind": kind, "starts_at": starts.isoformat(), "minutes": 150 if kind == "session" else 30,
            "clinician": "dr-lee", **extra}
    return fold_fact(raw, "appointment", T0, "fd", data)


def changed(raw: dict[str, object], **data: object) -> dict[str, object]:
    return fold_fact(raw, "appointment_update", T0, "fd", data)


def test_a_booking_holds_its_clinician_and_room_for_its_kinds_holding_time() -> None:
    """A 150-minute session holds clinician and room for the 120 minutes its kind says; a scan for its length."""
    raw = booked({}, "session", T0 + timedelta(days=1), room="room-2")
    changes = hold_changes("c1", CaseFacts({}), CaseFacts(raw), VISITS)
    start = T0 + timedelta(days=1)
    assert changes.release == ()
    assert changes.hold == (Hold("clinician:dr-lee", start, start + timedelta(hours=2), "c1", "a1"),
                            Hold("room:room-2", start, start + timedelta(hours=2), "c1", "a1"))
    scan = hold_changes("c1", CaseFacts(raw), CaseFacts(booked(raw, "scan", start)), VISITS)
    assert scan.hold == (Hold("clinician:dr-lee", start, start + timedelta(minutes=30), "c1", "a2"),)


def test_reschedule_moves_cancel_and_no_show_release_attended_keeps() -> None:
    """A reschedule releases and holds again; cancel and no-show release; attended changes nothing."""
    raw = booked({}, "scan", T0)
    moved = changed(raw, appointment="a1", action="reschedule", starts_at=(T0 + timedelta(hours=1)).isoformat())
    change = hold_changes("c1", CaseFacts(raw), CaseFacts(moved), VISITS)
    assert change.release == ("a1",) and [h.starts_at for h in change.hold] == [T0 + timedelta(hours=1)]
    for action in ("cancel", "no_show"):
        gone = hold_changes("c1", CaseFacts(raw), CaseFacts(changed(raw, appointment="a1", action=action)), VISITS)
        assert (gone.release, gone.hold) == (("a1",), ())
    kept = hold_changes("c1", CaseFacts(raw), CaseFacts(changed(raw, appointment="a1", action="attended")), VISITS)
    assert kept is NO_CHANGES


def test_no_change_without_an_appointment_fact_or_a_clinician() -> None:
    """A move, another fact, or a booking made before bookings named a clinician hold nothing."""
    raw = booked({}, "scan", T0)
    assert hold_changes("c1", CaseFacts(raw), CaseFacts(fold_move(raw, "go", "a", "b", T0)), VISITS) is NO_CHANGES
    paid = fold_fact(raw, "payment", T0, "fd", {"amount": "10"})
    assert hold_changes("c1", CaseFacts(raw), CaseFacts(paid), VISITS) is NO_CHANGES
    old = fold_fact({}, "appointment", T0, "fd", {"kind": "scan", "starts_at": T0.isoformat(), "minutes": 30})
    assert hold_changes("c1", CaseFacts({}), CaseFacts(old), VISITS) is NO_CHANGES
    assert hold_changes("c1", CaseFacts({}), CaseFacts(raw), None) is NO_CHANGES


def test_wanted_holds_are_what_recording_the_fact_would_hold() -> None:
    """Before writing: the holds a booking would add, none for a cancellation."""
    facts = CaseFacts(booked({}, "scan", T0))
    data = {"kind": "scan", "starts_at": T0.isoformat(), "minutes": 30, "clinician": "dr-okafor"}
    assert [h.resource for h in wanted_holds("c1", facts, VISITS, "appointment", data, T0)] == ["clinician:dr-okafor"]
    assert wanted_holds("c1", facts, VISITS, "appointment_update", {"appointment": "a1", "action": "cancel"}, T0) == ()
    assert wanted_holds("c1", facts, VISITS, "payment", {"amount": "10"}, T0) == ()


def test_a_kind_that_takes_a_room_must_name_one() -> None:
    """check_room refuses a session without a room, and lets a scan go without one."""
    with pytest.raises(InvalidFact, match="room: is required for a session"):
        check_room(VISITS, "appointment", {"kind": "session"})
    check_room(VISITS, "appointment", {"kind": "scan"})
    check_room(VISITS, "appointment", {"kind": "session", "room": "room-2"})


def test_the_blocker_gives_the_resource_and_time_never_the_holder() -> None:
    """One blocker per overlapping taken hold, in the practice's words; adjacent holds are no conflict."""
    wanted = (Hold("clinician:dr-lee", T0, T0 + timedelta(hours=1), "mine", "a1"),)
    taken = [Hold("clinician:dr-lee", T0 - timedelta(minutes=30), T0 + timedelta(minutes=30), "case-other", "a7"),
             Hold("clinician:dr-lee", T0 + timedelta(hours=1), T0 + timedelta(hours=2), "case-next", "a1")]
    [blocker] = taken_blockers(wanted, taken, lambda m: m.strftime("%H:%M UTC"))
    assert blocker.code == "clinician_unavailable"
    assert blocker.message == ("clinician dr-lee is already booked from 14:30 UTC to 15:30 UTC; "
                               "choose another time or another clinician")
    assert "case-other" not in repr(blocker) and "a7" not in repr(blocker)


def test_carriers_name_only_their_own_kinds() -> None:
    """rooms and holds must name kinds the workflow books, with a positive holding time."""
    with pytest.raises(ValueError, match="surgery"):
        AppointmentFacts(kinds=("scan",), rooms=("surgery",))
    with pytest.raises(ValueError, match="positive"):
        AppointmentFacts(kinds=("scan",), holds=(("scan", 0),))
