"""An appointment's reminders and notices belong to it, not to the case's state (issue 14, items 5-8, 10).

Planning is a pure function of the case; these tests fold facts by hand and read the plan and the
effects a command would write.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kapflow.domain.appointments import appointments
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, CaseRecord, fold_fact, fold_move
from kapflow.domain.effects import effects_of
from kapflow.domain.messages import stale_reason
from kapflow.domain.timers import plan_timers
from kapflow.workflows.kap import KAP_PATHWAY

WF = KAP_PATHWAY
NEW_YORK = ZoneInfo("America/New_York")
CAL = PracticeCalendar(NEW_YORK)
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 EST


def _book(raw: dict[str, Any], kind: str, starts: datetime, at: datetime, **extra: Any) -> dict[str, Any]:
    data = {"kind": kind, "starts_at": starts.isoformat(), "clinician": "np-rowan", **extra}
    if kind == "kap_session":
        data.setdefault("room", "room-1")
    return fold_fact(raw, "appointment", at, "fd", WF.facts["appointment"].spec(data, at))


def _change(
    raw: dict[str, Any], appt: str, action: str, at: datetime, starts: datetime | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"appointment": appt, "action": action}
    if starts is not None:
        data["starts_at"] = starts.isoformat()
    return fold_fact(raw, "appointment_update", at, "fd", WF.facts["appointment_update"].spec(data, at))


def _case(raw: dict[str, Any], state: str, at: datetime) -> CaseRecord:
    return CaseRecord("case-1", "kap", WF.version, state, None, 1, 1, "", raw, T0, at)


def _names(plan: dict[str, Any]) -> set[str]:
    return {t.reminder for t in plan.values()}


def test_an_appointments_reminders_are_planned_whatever_the_state() -> None:
    """An integration session's reminders stay planned while the case is dosing (item 5)."""
    raw = _book({}, "integration_session", T0 + timedelta(days=1, hours=1), T0)
    for state in ("ready_for_kap", "dosing", "integration_psychotherapy", "reassessment", "on_hold"):
        plan = plan_timers(WF, "case-1", state, CaseFacts(raw), T0, CAL)
        assert {"integration_session_reminder_24h", "integration_session_reminder_72h"} <= _names(plan), state
    ready = plan_timers(WF, "case-1", "ready_for_kap", CaseFacts(raw), T0, CAL)
    dosing = plan_timers(WF, "case-1", "dosing", CaseFacts(raw), T0, CAL)
    same = {k for k, t in ready.items() if t.appointment_id}
    assert same == {k for k, t in dosing.items() if t.appointment_id}  # the same keys: never cancelled on a move


def test_moving_into_dosing_cancels_no_appointment_reminder() -> None:
    """Leaving ready_for_kap for a KAP session cancels only ready_for_kap's own prompts."""
    raw = _book({}, "integration_session", T0 + timedelta(days=1, hours=1), T0)
    before = _case(raw, "ready_for_kap", T0)
    after = _case(fold_move(raw, "start_kap_session", "ready_for_kap", "dosing", T0), "dosing", T0)
    effects = effects_of(WF, before, after, cal=CAL)
    assert all(":a1:" not in key for key in effects.cancel)


def test_a_closed_case_keeps_only_the_notices() -> None:
    raw = _book({}, "evaluation", T0 + timedelta(days=5), T0)
    raw = _change(raw, "a1", "cancel", T0 + timedelta(hours=1))
    plan = plan_timers(WF, "case-1", "withdrawn", CaseFacts(raw), T0, CAL)
    assert _names(plan) == {"appointment_cancelled_notice"}


def test_every_booking_is_confirmed_and_every_change_noticed_at_once() -> None:
    """Booked, moved, cancelled: each plans its notice at the moment of the change (items 6 and 8)."""
    booked_at, moved_at, cancelled_at = T0, T0 + timedelta(hours=2), T0 + timedelta(hours=5)
    raw = _book({}, "evaluation", T0 + timedelta(days=5), booked_at)
    plan = plan_timers(WF, "case-1", "evaluation_booked", CaseFacts(raw), T0, CAL)
    notices = {t.reminder: t.due_at for t in plan.values() if t.reminder.endswith("_notice")}
    assert notices == {"appointment_booked_notice": booked_at}
    raw = _change(raw, "a1", "reschedule", moved_at, T0 + timedelta(days=2))
    plan = plan_timers(WF, "case-1", "evaluation_booked", CaseFacts(raw), T0, CAL)
    notices = {t.reminder: t.due_at for t in plan.values() if t.reminder.endswith("_notice")}
    assert notices == {"appointment_moved_notice": moved_at}
    raw = _change(raw, "a1", "cancel", cancelled_at)
    plan = plan_timers(WF, "case-1", "evaluation_booked", CaseFacts(raw), T0, CAL)
    notices = {t.reminder: t.due_at for t in plan.values() if t.reminder.endswith("_notice")}
    assert notices == {"appointment_cancelled_notice": cancelled_at}


def test_moving_an_appointment_earlier_re_plans_its_reminders_for_the_new_time() -> None:
    """Thursday 10:00 moved on Monday to Tuesday 11:00: the new time's reminders, a notice at once (item 6)."""
    thursday = datetime(2026, 3, 5, 10, 0, tzinfo=NEW_YORK)
    raw = _book({}, "integration_session", thursday, T0 - timedelta(days=7))
    before = _case(raw, "ready_for_kap", T0)
    moved = _change(raw, "a1", "reschedule", T0, datetime(2026, 3, 3, 11, 0, tzinfo=NEW_YORK))
    effects = effects_of(WF, before, _case(moved, "ready_for_kap", T0), cal=CAL)
    assert {t.reminder for t in effects.plan} == {"appointment_moved_notice", "integration_session_reminder_24h"}
    assert {s.timer.reminder for s in effects.skip} == {"integration_session_reminder_72h"}
    assert any(k.endswith(":a1:s0:integration_session_reminder_24h") for k in effects.cancel)


def test_a_late_booking_records_the_reminders_it_is_too_late_for() -> None:
    """An evaluation booked 2 hours ahead: confirmed at once, its earlier reminders recorded as skipped (item 8)."""
    raw = _book({}, "evaluation", T0 + timedelta(hours=2), T0)
    before = _case({}, "inquiry", T0)
    after = _case(fold_move(raw, "book_evaluation", "inquiry", "evaluation_booked", T0), "evaluation_booked", T0)
    effects = effects_of(WF, before, after, cal=CAL)
    skipped = {s.timer.reminder: s.reason for s in effects.skip}
    assert set(skipped) == {"evaluation_reminder_72h", "evaluation_reminder_24h", "evaluation_fee_due_48h",
                            "evaluation_fee_unpaid_alert"}
    assert skipped["evaluation_reminder_24h"] == "booked after its moment (2026-03-01 11:00 EST)"
    assert {"appointment_booked_notice", "evaluation_released_unpaid"} <= {t.reminder for t in effects.plan}


def test_a_late_entry_is_not_confirmed_to_the_client() -> None:
    """An appointment recorded after it happened: its confirmation is recorded as skipped, with why."""
    raw = _book({}, "evaluation", T0 - timedelta(days=1), T0, late_entry=True, reason="booked by phone")
    effects = effects_of(WF, _case({}, "inquiry", T0), _case(raw, "inquiry", T0), cal=CAL)
    skipped = {s.timer.reminder: s.reason for s in effects.skip}
    assert skipped["appointment_booked_notice"] == "the appointment had already started (2026-03-01 09:00 EST)"
    assert not [t for t in effects.plan if t.appointment_id]


def test_prompts_counted_from_a_moment_follow_the_moment() -> None:
    """The 75-day prompt counts from the last KAP session; a new session replaces it (item 10)."""
    first = T0
    raw = fold_move({}, "start_kap_session", "ready_for_kap", "dosing", first)
    plan = plan_timers(WF, "case-1", "ready_for_kap", CaseFacts(raw), T0, CAL)
    lapse = [t for t in plan.values() if t.reminder == "kap_lapse_approaching"]
    assert [t.due_at for t in lapse] == [CAL.later(first, timedelta(days=75))]
    raw = fold_move(raw, "start_kap_session", "ready_for_kap", "dosing", first + timedelta(days=20))
    again = plan_timers(WF, "case-1", "ready_for_kap", CaseFacts(raw), T0, CAL)
    assert lapse[0].key not in again


def test_a_prompt_planned_after_its_time_is_due_at_once_not_missed() -> None:
    """A prescription recorded 10 days before it lapses: the 14-day prompt goes at once."""
    rx = {"prescriber": "NP Rowan", "issued_on": "2026-01-01", "expires_on": "2026-03-12"}
    raw = fold_fact({}, "prescription", T0, "np", WF.facts["prescription"].spec(rx, T0))
    effects = effects_of(WF, _case({}, "ready_for_kap", T0), _case(raw, "ready_for_kap", T0), cal=CAL)
    due = {t.reminder: t.due_at for t in effects.plan}
    assert due["prescription_lapsing"] == T0


def test_a_queued_message_is_stale_once_its_appointment_changes_or_its_deadline_passes() -> None:
    """The check before each delivery attempt (item 7)."""
    raw = _book({}, "evaluation", T0 + timedelta(days=3), T0)
    appt = appointments("case-1", CaseFacts(raw))["a1"]
    payload = {"appointment": "a1", "sequence": 0, "deadline": appt.starts_at.isoformat()}
    assert stale_reason(payload, appt, T0) is None
    cancelled = appointments("case-1", CaseFacts(_change(raw, "a1", "cancel", T0)))["a1"]
    assert stale_reason(payload, cancelled, T0) == "appointment a1 was cancelled after the message was queued"
    assert stale_reason(payload, appt, appt.starts_at) is not None
    assert stale_reason({"timer": "x"}, None, T0) is None  # a message about no appointment keeps going
