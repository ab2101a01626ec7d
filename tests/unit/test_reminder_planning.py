"""Reminder planning as a pure function, and the KAP pathway's reminders themselves."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.timers import add_business_days, plan_timers
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
    assert add_business_days(T0, 2) == datetime(2026, 1, 13, 16, 0, tzinfo=UTC)
    assert add_business_days(T0 - timedelta(days=4), 2) == T0 - timedelta(days=2)  # Monday -> Wednesday


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
    """Cancelling the appointment drops every reminder that counts back from it."""
    raw = _booked({}, "evaluation", T0 + timedelta(days=5), T0)
    raw = fold_move(raw, "book_evaluation", "inquiry", "evaluation_booked", T0)
    raw = fold_fact(raw, "appointment_update", T0, "fd-1", {"appointment": "a1", "action": "cancel",
                                                            "starts_at": None, "reason": None})
    plan = plan_timers(KAP_PATHWAY, "case-1", "evaluation_booked", CaseFacts(raw), T0)
    assert all(t.appointment_id is None for t in plan.values())


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
