"""Reminder planning as a pure function, and the KAP pathway's reminders themselves."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kapflow.domain import timers as timers_module
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.timers import plan_timers
from kapflow.domain.workflow import Reminder
from kapflow.workflows.kap import KAP_PATHWAY

T0 = datetime(2026, 1, 9, 16, 0, tzinfo=UTC)  # a Friday afternoon
CLINICAL = re.compile(
    r"ketamine|\bKAP\b|troche|dos(e|ing)|depress|anxiety|PTSD|trauma|PHQ|GAD|psychiat|diagnos|suicid|psychotic",
    re.IGNORECASE,
)


def _booked(raw: dict[str, object], kind: str, starts: datetime, at: datetime) -> dict[str, object]:
    data = {"kind": kind, "starts_at": starts.isoformat(), "minutes": 60, "location": "in_person"}
    return fold_fact(raw, "appointment", at, "fd-1", data)


def test_business_days_skip_the_weekend() -> None:
    """Two business days from a Friday is the next Tuesday, same time of day."""
    assert PracticeCalendar().add_business_days(T0, 2) == datetime(2026, 1, 13, 16, 0, tzinfo=UTC)
    monday = T0 - timedelta(days=4)
    assert PracticeCalendar().add_business_days(monday, 2) == T0 - timedelta(days=2)  # Wednesday


def test_inquiry_plans_the_unanswered_alert_two_business_days_on() -> None:
    """A new inquiry on a Friday is due an alert on Tuesday at the same hour."""
    plan = plan_timers(KAP_PATHWAY, "case-1", "inquiry", CaseFacts(), T0)
    assert [(t.reminder, t.due_at) for t in plan.values()] == [
        ("inquiry_unanswered", datetime(2026, 1, 13, 16, 0, tzinfo=UTC))
    ]


def test_appointment_reminders_count_back_and_rescheduling_changes_their_keys() -> None:
    """72 h and 24 h before the appointment; a reschedule gives new keys, so old timers are cancelled."""
    raw = _booked({}, "evaluation", T0 + timedelta(days=5), T0)
    raw = fold_move(raw, "book_evaluation", "inquiry", "evaluation_booked", T0)
    first = plan_timers(KAP_PATHWAY, "case-1", "evaluation_booked", CaseFacts(raw), T0)
    due = {t.reminder: t.due_at for t in first.values()}
    assert due["evaluation_reminder_72h"] == T0 + timedelta(days=2)
    assert due["evaluation_reminder_24h"] == T0 + timedelta(days=4)
    assert due["evaluation_released_unpaid"] == T0 + timedelta(days=5, minutes=30)
    moved = fold_fact(raw, "appointment_update", T0, "fd-1",
                      {"appointment": "a1", "action": "reschedule",
                       "starts_at": (T0 + timedelta(days=6)).isoformat(), "reason": None})
    second = plan_timers(KAP_PATHWAY, "case-1", "evaluation_booked", CaseFacts(moved), T0)
    appointment_keys = {k for k, t in first.items() if t.appointment_id}
    assert appointment_keys and appointment_keys.isdisjoint(second)
    assert {k for k, t in first.items() if not t.appointment_id} <= set(second)  # the fee-at-booking stays


def test_a_cancelled_appointment_plans_nothing() -> None:
    """Cancelling the appointment drops every reminder that counts back from it: only its notice is left."""
    raw = _booked({}, "evaluation", T0 + timedelta(days=5), T0)
    raw = fold_move(raw, "book_evaluation", "inquiry", "evaluation_booked", T0)
    raw = fold_fact(raw, "appointment_update", T0, "fd-1", {"appointment": "a1", "action": "cancel",
                                                            "starts_at": None, "reason": None})
    plan = plan_timers(KAP_PATHWAY, "case-1", "evaluation_booked", CaseFacts(raw), T0)
    about_it = sorted(t.reminder for t in plan.values() if t.appointment_id is not None)
    assert about_it == ["appointment_cancelled_notice"]


def test_re_entering_a_state_plans_fresh_state_reminders_but_the_same_appointment_ones() -> None:
    """Keys of state reminders name the entry; keys of appointment reminders do not."""
    raw = _booked({}, "evaluation", T0 + timedelta(days=5), T0)
    raw = fold_move(raw, "book_evaluation", "inquiry", "evaluation_booked", T0)
    once = plan_timers(KAP_PATHWAY, "case-1", "evaluation_booked", CaseFacts(raw), T0)
    raw = fold_move(raw, "hold", "evaluation_booked", "on_hold", T0)
    raw = fold_move(raw, "resume", "on_hold", "evaluation_booked", T0 + timedelta(hours=1))
    again = plan_timers(KAP_PATHWAY, "case-1", "evaluation_booked", CaseFacts(raw), T0)
    assert {k for k, t in once.items() if t.appointment_id} == {k for k, t in again.items() if t.appointment_id}
    assert {k for k, t in once.items() if not t.appointment_id}.isdisjoint(again)


@pytest.mark.parametrize(
    "reminder", [r for s in KAP_PATHWAY.states for r in s.reminders], ids=lambda r: r.name
)
def test_kap_reminders_carry_no_clinical_detail(reminder: Reminder) -> None:
    """No reminder's subject or text names a drug, a dose, a condition or a questionnaire."""
    assert not CLINICAL.search(reminder.subject), reminder.subject
    assert not CLINICAL.search(reminder.template), reminder.template


# --- business days on the practice's calendar (issue 14, item 3) --------------------------------

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")


def _local(tz: ZoneInfo, y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz).astimezone(UTC)


@pytest.mark.parametrize(
    ("tz", "start", "due"),
    [
        # Wednesday 19:30 EST (Thursday in UTC) -> Friday 19:30, not Sunday 20:30
        (NEW_YORK, (2026, 3, 4, 19, 30), (2026, 3, 6, 19, 30)),
        # Friday 21:00 EST (Saturday in UTC) -> Tuesday 21:00 EDT, across the spring change
        (NEW_YORK, (2026, 3, 6, 21, 0), (2026, 3, 10, 21, 0)),
        # Friday 21:00 EDT -> Tuesday 21:00 EST, across the autumn change
        (NEW_YORK, (2026, 10, 30, 21, 0), (2026, 11, 3, 21, 0)),
        # Thursday 10:00 AEDT (Wednesday in UTC) -> Monday 10:00 AEST, not Saturday; clocks go back on 5 April
        (SYDNEY, (2026, 4, 2, 10, 0), (2026, 4, 6, 10, 0)),
        # Thursday 10:00 AEST -> Monday 10:00 AEDT; clocks go forward on 4 October
        (SYDNEY, (2026, 10, 1, 10, 0), (2026, 10, 5, 10, 0)),
        # Saturday 03:00 IST (Friday in UTC) -> Tuesday 03:00, two local weekdays on
        (KOLKATA, (2026, 3, 7, 3, 0), (2026, 3, 10, 3, 0)),
    ],
)
def test_business_days_are_the_practices_weekdays(
    tz: ZoneInfo, start: tuple[int, ...], due: tuple[int, ...]
) -> None:
    """Two business days on the practice's calendar, at the same local time, whatever UTC's weekday."""
    assert PracticeCalendar(tz).add_business_days(_local(tz, *start), 2) == _local(tz, *due)
    plan = plan_timers(KAP_PATHWAY, "case-1", "inquiry", CaseFacts(), _local(tz, *start), PracticeCalendar(tz))
    assert [(t.reminder, t.due_at) for t in plan.values()] == [("inquiry_unanswered", _local(tz, *due))]


def test_business_days_keep_the_utc_calendar_without_a_zone() -> None:
    """Without a practice zone the calendar is UTC's, as before."""
    assert PracticeCalendar().add_business_days(T0, 2) == PracticeCalendar(UTC).add_business_days(T0, 2)


def test_a_timer_planned_on_one_calendar_is_never_taken_for_another() -> None:
    """Timers are remembered from one plan to the next (a command plans its case twice): planning the same
    facts on the practice's calendar and on UTC's, in turn, gives each calendar's own due time every time."""
    dosed = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)  # 10:00 EST; 75 days on is 10:00 EDT, 14:00 UTC
    raw = fold_move({}, "start_kap_session", "ready_for_kap", "dosing", dosed)
    new_york = PracticeCalendar(zone=ZoneInfo("America/New_York"))
    local, utc = dosed + timedelta(days=75, hours=-1), dosed + timedelta(days=75)
    for cal, due in [(new_york, local), (PracticeCalendar(), utc), (new_york, local), (PracticeCalendar(), utc)]:
        plan = plan_timers(KAP_PATHWAY, "case-1", "dosing", CaseFacts(raw), dosed, cal)
        assert {t.due_at for t in plan.values() if t.reminder == "kap_lapse_approaching"} == {due}


def test_the_timers_remembered_are_bounded() -> None:
    """However many cases are planned, the timers remembered for the next plans stay within their bound."""
    remembered = timers_module._REMEMBERED
    dosed = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)
    raw = fold_move({}, "start_kap_session", "ready_for_kap", "dosing", dosed)
    for n in range(remembered.SIZE // 2 + 10):  # two or more timers a case
        plan_timers(KAP_PATHWAY, f"case-{n}", "dosing", CaseFacts(raw), dosed)
        assert len(remembered._timers) <= remembered.SIZE
