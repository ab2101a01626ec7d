"""Reminders that keep their promise, on a fake clock in New York, Sydney and Kolkata (issue 14, items 5-10).

Each scenario runs the real engine, worker loops and outbox on a SQLite file (a few on PostgreSQL too),
with dates chosen across the DST changes of 2026: New York springs forward on 8 March and falls back on
1 November; Sydney falls back on 5 April and springs forward on 4 October; Kolkata keeps one offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support import (
    CONTACTS,
    FRONT_DESK,
    PRESCRIBER,
    THERAPIST,
    booking,
    open_case,
    prepare_dosing,
    to_evaluating,
    to_ready,
)

from kapflow.domain.calendar import PracticeCalendar
from kapflow.testing import FakeClock, ReminderKit

ZONES = ("America/New_York", "Australia/Sydney", "Asia/Kolkata")
# A Monday in each zone just after a DST change (Kolkata has none).
MONDAY_AFTER_SPRING = {"America/New_York": (2026, 3, 9), "Australia/Sydney": (2026, 10, 5),
                       "Asia/Kolkata": (2026, 3, 9)}
MONDAY_AFTER_AUTUMN = {"America/New_York": (2026, 11, 2), "Australia/Sydney": (2026, 4, 6),
                       "Asia/Kolkata": (2026, 11, 2)}


def local(zone: str, y: int, mo: int, d: int, h: int = 9, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def monday(zone: str, which: dict[str, tuple[int, int, int]], h: int = 9, mi: int = 0, days: int = 0) -> datetime:
    y, mo, d = which[zone]
    return PracticeCalendar(ZoneInfo(zone)).days_later(local(zone, y, mo, d, h, mi), days)


def make_kit(tmp_path: Path, zone: str, start: datetime, url: str | None = None) -> ReminderKit:
    if url is None:
        url = f"sqlite:///{tmp_path / 'kapflow.db'}"
    return ReminderKit(url=url, clock=FakeClock(start), contacts=CONTACTS, timezone=zone)


@pytest.fixture(params=ZONES)
def zone(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sent(kit: ReminderKit, case_id: str) -> list[str]:
    return [m.key.split(":")[-2] for m in kit.email.sent if m.case_id == case_id]


def timer_rows(kit: ReminderKit, case_id: str) -> dict[str, dict[str, Any]]:
    """The case's timers by reminder name (the latest of each)."""
    return {str(r["reminder"]): r for r in kit.engine.timers(case_id)}


def last_appointment(kit: ReminderKit, case_id: str) -> str:
    """The id of the case's latest booking (its evaluation was a1)."""
    return kit.engine.appointments(case_id)[-1].id


def ready_case(kit: ReminderKit, ready_by: datetime) -> str:
    """A case ready for KAP sessions by ``ready_by`` (the clock ends there)."""
    kit.clock.set(ready_by - timedelta(days=3, hours=1))
    case_id = open_case(kit.engine)
    to_ready(kit.engine, kit.clock, case_id)
    kit.clock.set(ready_by)
    kit.run()
    kit.email.clear()
    return case_id


# --- item 5: an appointment's reminders belong to it ---------------------------------------------------


@pytest.mark.parametrize("season", ["spring", "autumn"])
def test_a_reminder_falling_due_during_a_kap_session_still_goes_out(tmp_path: Path, zone: str, season: str) -> None:
    """Integration session Tuesday 10:00; a KAP session Monday 09:30-12:35: the 24-hour reminder goes at 10:00."""
    which = MONDAY_AFTER_SPRING if season == "spring" else MONDAY_AFTER_AUTUMN
    kit = make_kit(tmp_path, zone, monday(zone, which, days=-7))
    e = kit.engine
    case_id = ready_case(kit, monday(zone, which, days=-4))
    tuesday = monday(zone, which, 10, days=1)
    e.record(case_id, "appointment", booking(case_id, "integration_session", tuesday), actor=FRONT_DESK)
    kit.advance(until_utc(kit, monday(zone, which, 9, 30)))
    prepare_dosing(e, case_id)
    e.fire(case_id, "start_kap_session", actor=THERAPIST)
    kit.advance(minutes=120)  # the worker runs every 15 minutes while the client is observed
    e.record(case_id, "vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76}, actor=THERAPIST)
    e.record(case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True}, actor=THERAPIST)
    e.fire(case_id, "discharge", actor=THERAPIST)
    kit.advance(minutes=65)
    e.fire(case_id, "complete_integration", actor=THERAPIST)
    kit.run()
    reminder = timer_rows(kit, case_id)["integration_session_reminder_24h"]
    assert reminder["status"] == "done"
    assert datetime.fromisoformat(str(reminder["due_at"])) == tuesday - timedelta(hours=24)
    assert sent(kit, case_id).count("integration_session_reminder_24h") == 1
    kit.close()


def until_utc(kit: ReminderKit, moment: datetime) -> timedelta:
    return moment - kit.clock.now()


# --- item 6: a moved appointment is noticed, and re-planned ----------------------------------------------


def test_moving_an_appointment_earlier_tells_the_client_the_new_time(tmp_path: Path, zone: str) -> None:
    """The 72-hour reminder for Thursday 10:00 went out; on Monday it moves to Tuesday 11:00: a notice at once."""
    which = MONDAY_AFTER_AUTUMN
    kit = make_kit(tmp_path, zone, monday(zone, which, days=-10))
    e = kit.engine
    case_id = ready_case(kit, monday(zone, which, days=-6))
    thursday = monday(zone, which, 10, days=3)
    e.record(case_id, "appointment", booking(case_id, "integration_session", thursday), actor=FRONT_DESK)
    kit.advance(until_utc(kit, monday(zone, which, 11)))
    assert sent(kit, case_id) == ["appointment_booked_notice", "integration_session_reminder_72h"]
    new_time = monday(zone, which, 11, days=1)
    e.reschedule_appointment(case_id, last_appointment(kit, case_id), new_time, actor=FRONT_DESK)
    kit.advance(minutes=15)
    assert sent(kit, case_id)[2:] == ["appointment_moved_notice", "integration_session_reminder_24h"]
    notice = next(m for m in kit.email.sent if "appointment_moved_notice" in m.key)
    assert PracticeCalendar(ZoneInfo(zone)).long_text(new_time) in notice.body
    kit.advance(until_utc(kit, thursday))
    assert sent(kit, case_id).count("integration_session_reminder_24h") == 1  # none for the old Thursday
    kit.close()


def test_a_cancelled_appointment_is_noticed_and_its_reminders_stop(tmp_path: Path) -> None:
    zone = "America/New_York"
    kit = make_kit(tmp_path, zone, local(zone, 2026, 3, 2))
    e = kit.engine
    case_id = ready_case(kit, local(zone, 2026, 3, 6))
    e.record(case_id, "appointment", booking(case_id, "integration_session", local(zone, 2026, 3, 12, 10)),
             actor=FRONT_DESK)
    kit.advance(hours=1)
    e.cancel_appointment(case_id, last_appointment(kit, case_id), actor=FRONT_DESK, reason="client asked")
    kit.advance(until_utc(kit, local(zone, 2026, 3, 13)))
    assert sent(kit, case_id) == ["appointment_booked_notice", "appointment_cancelled_notice"]
    kit.close()


# --- item 7: stale messages are dropped, with the reason, never sent ---------------------------------------


def test_a_queued_reminder_is_dropped_once_its_appointment_is_cancelled(tmp_path: Path) -> None:
    zone = "Australia/Sydney"
    kit = make_kit(tmp_path, zone, local(zone, 2026, 3, 30))
    e = kit.engine
    case_id = ready_case(kit, local(zone, 2026, 4, 3))
    e.record(case_id, "appointment", booking(case_id, "integration_session", local(zone, 2026, 4, 8, 10)),
             actor=FRONT_DESK)
    kit.run()  # the booking's notice
    kit.clock.set(local(zone, 2026, 4, 5, 10, 1))  # the 72-hour reminder is due (Sunday 10:00 AEST)
    kit.email.fail_next(1)
    kit.run()  # queued; its first attempt fails
    e.cancel_appointment(case_id, last_appointment(kit, case_id), actor=FRONT_DESK, reason="clinic closed")
    kit.advance(hours=2)
    assert "integration_session_reminder_72h" not in sent(kit, case_id)
    dropped = [r for r in e.outbox(case_id) if r["status"] == "dropped"]
    assert len(dropped) == 1 and "cancelled" in str(dropped[0]["last_error"])
    assert any(ev.kind == "message_dropped" for ev in e.history(case_id))
    assert e.verify_audit().ok
    kit.close()


def test_a_reminder_is_never_delivered_after_its_appointment(tmp_path: Path) -> None:
    """Queued, its first attempt fails, then the worker is down for two days past the appointment."""
    zone = "Asia/Kolkata"
    kit = make_kit(tmp_path, zone, local(zone, 2026, 3, 2))
    e = kit.engine
    case_id = ready_case(kit, local(zone, 2026, 3, 6))
    appointment = local(zone, 2026, 3, 10, 10)
    e.record(case_id, "appointment", booking(case_id, "integration_session", appointment), actor=FRONT_DESK)
    kit.run()
    kit.clock.set(appointment - timedelta(hours=24) + timedelta(minutes=1))
    kit.email.fail_next(1)
    kit.run()
    kit.clock.set(appointment + timedelta(days=2))
    kit.run()
    assert "integration_session_reminder_24h" not in sent(kit, case_id)
    dropped = [r for r in e.outbox(case_id) if r["status"] == "dropped"]
    assert [str(r["last_error"]).split(" (")[0] for r in dropped] == ["its deadline passed"]
    kit.close()


# --- item 8: a late booking is confirmed, and the reminders it is too late for are recorded ----------------


def test_an_evaluation_booked_two_hours_ahead_is_confirmed_and_its_skipped_reminders_shown(
    tmp_path: Path, any_ready_url: str
) -> None:
    zone = "America/New_York"
    kit = make_kit(tmp_path, zone, local(zone, 2026, 11, 1, 10), url=any_ready_url)
    e = kit.engine
    case_id = open_case(e)
    e.record(case_id, "appointment", booking(case_id, "evaluation", kit.clock.now() + timedelta(hours=2)),
             actor=FRONT_DESK)
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.run()
    assert sorted(sent(kit, case_id)) == ["appointment_booked_notice", "evaluation_fee_due"]
    rows = timer_rows(kit, case_id)
    for name in ("evaluation_reminder_72h", "evaluation_reminder_24h"):
        assert rows[name]["status"] == "skipped"
        assert str(rows[name]["outcome"]).startswith("booked after its moment (2026-")
    # 24 elapsed hours before Sunday 12:00 EST, across the night the clocks went back: 13:00 EDT the day before.
    assert str(rows["evaluation_reminder_24h"]["outcome"]) == "booked after its moment (2026-10-31 13:00 EDT)"
    kit.close()


@pytest.mark.parametrize("season", ["spring", "autumn"])
def test_in_every_zone_a_late_booking_says_when_its_reminders_would_have_been(
    tmp_path: Path, zone: str, season: str
) -> None:
    which = MONDAY_AFTER_SPRING if season == "spring" else MONDAY_AFTER_AUTUMN
    kit = make_kit(tmp_path, zone, monday(zone, which, 8))
    e, cal = kit.engine, PracticeCalendar(ZoneInfo(zone))
    case_id = open_case(e)
    start = monday(zone, which, 10)
    e.record(case_id, "appointment", booking(case_id, "evaluation", start), actor=FRONT_DESK)
    kit.run()
    assert sent(kit, case_id) == ["appointment_booked_notice"]
    rows = timer_rows(kit, case_id)
    for hours in (72, 24):
        row = rows[f"evaluation_reminder_{hours}h"]
        assert row["status"] == "skipped"
        assert row["outcome"] == f"booked after its moment ({cal.time_text(start - timedelta(hours=hours))})"
    kit.close()


# --- item 9: a missed automatic step alerts the front desk and shows in what can happen next ---------------


@pytest.mark.parametrize("season", ["spring", "autumn"])
def test_in_every_zone_a_missed_release_names_its_time_in_the_practices_clock(
    tmp_path: Path, zone: str, season: str
) -> None:
    which = MONDAY_AFTER_SPRING if season == "spring" else MONDAY_AFTER_AUTUMN
    kit = make_kit(tmp_path, zone, monday(zone, which, days=-7))
    e, cal = kit.engine, PracticeCalendar(ZoneInfo(zone))
    case_id = open_case(e)
    start = monday(zone, which, 10)
    e.record(case_id, "appointment", booking(case_id, "evaluation", start), actor=FRONT_DESK)
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.run()
    kit.clock.set(start + timedelta(hours=13))  # down through the release (30 minutes in) and its 12-hour grace
    kit.run()
    due = cal.time_text(start + timedelta(minutes=30))
    assert [m.subject for m in kit.email.sent if m.recipient == "desk@example.org"] == [
        "kapflow: an automatic step was missed"]
    release = next(v for v in e.available(case_id) if v.trigger == "release_evaluation")
    assert release.missed is not None and due in release.missed
    kit.close()


def test_a_missed_release_alerts_the_front_desk_and_waits_for_a_person(tmp_path: Path, any_ready_url: str) -> None:
    zone = "America/New_York"
    kit = make_kit(tmp_path, zone, local(zone, 2026, 3, 2), url=any_ready_url)
    e = kit.engine
    case_id = open_case(e)
    start = local(zone, 2026, 3, 9, 10)
    e.record(case_id, "appointment", booking(case_id, "evaluation", start), actor=FRONT_DESK)
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.run()
    kit.clock.set(start + timedelta(days=2))  # the worker was down through the release and its grace
    kit.run()
    assert e.case(case_id).state == "evaluation_booked"
    alerts = [m for m in kit.email.sent if m.recipient == "desk@example.org" and "missed" in m.subject]
    assert len(alerts) == 1 and case_id in alerts[0].body and "2026-03-09 10:30 EDT" in alerts[0].body
    release = next(v for v in e.available(case_id) if v.trigger == "release_evaluation")
    assert release.missed is not None and "2026-03-09 10:30 EDT" in release.missed
    e.fire(case_id, "release_evaluation", actor=FRONT_DESK)
    assert e.case(case_id).state == "inquiry"
    kit.close()


# --- item 10: next-step prompts -----------------------------------------------------------------------------


def test_no_intention_setting_booked_three_days_after_suitable_prompts_client_and_desk(tmp_path: Path) -> None:
    zone = "Australia/Sydney"
    kit = make_kit(tmp_path, zone, local(zone, 2026, 9, 28))
    e = kit.engine
    case_id = open_case(e)
    to_evaluating(e, kit.clock, case_id)
    e.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    e.fire(case_id, "find_suitable", actor=PRESCRIBER)  # Thursday 1 October 09:00 AEST
    found = kit.clock.now()
    kit.run()
    kit.email.clear()
    # Three local days on is Sunday 09:00 AEDT: 71 hours later, as the clocks went forward that night.
    kit.clock.set(found + timedelta(hours=71, minutes=-1))
    kit.run()
    assert sent(kit, case_id) == []
    kit.clock.set(found + timedelta(hours=71, minutes=1))
    kit.run()
    assert sorted(sent(kit, case_id)) == ["intention_setting_not_booked", "intention_setting_not_booked_client"]
    kit.close()


def test_seventy_five_days_after_the_last_session_the_therapist_and_client_are_prompted(tmp_path: Path) -> None:
    zone = "America/New_York"
    kit = make_kit(tmp_path, zone, local(zone, 2026, 8, 1))
    e = kit.engine
    case_id = ready_case(kit, local(zone, 2026, 8, 10))
    prepare_dosing(e, case_id)
    e.fire(case_id, "start_kap_session", actor=THERAPIST)
    dosed = kit.clock.now()
    kit.clock.advance(minutes=120)
    e.record(case_id, "vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76}, actor=THERAPIST)
    e.record(case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True}, actor=THERAPIST)
    e.fire(case_id, "discharge", actor=THERAPIST)
    kit.clock.advance(minutes=60)
    e.fire(case_id, "complete_integration", actor=THERAPIST)
    kit.run()
    kit.email.clear()
    day_75 = PracticeCalendar(ZoneInfo(zone)).days_later(dosed, 75)  # 24 October 09:00 EDT... local days
    kit.clock.set(day_75 - timedelta(minutes=1))
    kit.run()
    assert "kap_lapse_approaching" not in sent(kit, case_id)
    kit.clock.set(day_75 + timedelta(minutes=1))
    kit.run()
    assert {"kap_lapse_approaching", "kap_lapse_approaching_client"} <= set(sent(kit, case_id))
    kit.close()
