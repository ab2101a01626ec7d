"""Reminders end to end on a real database: timers, the worker's loops, the outbox, in-memory channels.

Every test runs on a SQLite file and on a PostgreSQL schema of its own (``kit_url``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from support import (
    CLIENT,
    CONTACTS,
    FRONT_DESK,
    PRESCRIBER,
    T0,
    THERAPIST,
    Recorder,
    at,
    one_kap_session,
    open_case,
    to_ready,
    who,
)

from kapflow.app.dispatch import DeliveryPolicy, Dispatcher
from kapflow.app.reminders import act_on_timers
from kapflow.app.runner import Transaction
from kapflow.domain.case import AuditEvent, CaseRecord
from kapflow.errors import ConcurrencyConflict, LostRace, TransitionBlocked
from kapflow.ports import Message
from kapflow.testing import FakeClock, MemoryNotifier, ReminderKit
from kapflow.workflows.measures import answered


@pytest.fixture
def kit_url(any_ready_url: str) -> str:
    """The test's database, on each backend in turn: a SQLite file, then a PostgreSQL schema."""
    return any_ready_url


@pytest.fixture
def kit(kit_url: str) -> Iterator[ReminderKit]:
    kit = ReminderKit(url=kit_url, clock=FakeClock(T0), contacts=CONTACTS)
    yield kit
    kit.close()


def test_ten_weeks_of_one_clients_schedule(kit: ReminderKit) -> None:
    """One client's whole plan over 10 simulated weeks: every expected message, none other, each on time."""
    e, rec = kit.engine, Recorder(kit)
    case_id = open_case(e)
    rec.until(at(1, 10))
    e.book_appointment(case_id, "evaluation", at(8, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    rec.until(at(6, 18))
    e.record(case_id, "payment", {"amount": 250, "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    rec.until(at(8, 15))
    e.fire(case_id, "start_evaluation", actor=PRESCRIBER)
    e.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    e.fire(case_id, "find_suitable", actor=PRESCRIBER)
    today = kit.clock.now().date()
    e.record(case_id, "prescription", {"prescriber": "NP Sample", "issued_on": today.isoformat(),
                                       "expires_on": (today + timedelta(days=120)).isoformat()}, actor=PRESCRIBER)
    e.record(case_id, "consent", {"form_version": "1", "signed_on": today.isoformat()}, actor=THERAPIST)
    e.record(case_id, "treatment_plan", {"action": "set", "sessions": 3}, actor=PRESCRIBER)
    e.book_appointment(case_id, "intention_setting", at(12, 10), actor=FRONT_DESK, **who(case_id))
    rec.until(at(12, 10))
    e.fire(case_id, "start_intention_setting", actor=THERAPIST)
    kit.clock.advance(hours=1)
    e.fire(case_id, "complete_intention_setting", actor=THERAPIST, data={"intentions": "steadiness"})
    for n, day in enumerate([15, 22, 29]):
        e.book_appointment(case_id, "kap_session", at(day, 10), actor=FRONT_DESK, **who(case_id, "kap_session"))
        rec.until(at(day - 1, 12))
        e.record(case_id, "questionnaire", answered("PHQ-9", 10), actor=CLIENT)
        e.record(case_id, "questionnaire", answered("GAD-7", 8), actor=CLIENT)
        rec.until(at(day, 10))
        one_kap_session(e, kit.clock, case_id)
        if n == 0:
            e.book_appointment(case_id, "integration_session", at(day + 3, 10), actor=FRONT_DESK, **who(case_id))
            rec.until(at(day + 3, 10))
            e.fire(case_id, "start_integration_session", actor=THERAPIST)
            kit.clock.advance(hours=1)
            e.fire(case_id, "complete_integration_session", actor=THERAPIST)
    rec.until(at(40))
    e.fire(case_id, "complete_treatment", actor=THERAPIST)
    rec.until(at(70))

    client, therapist = "sample.client@example.org", "therapist@example.org"
    assert rec.seen == [
        ("01-06 10:00", "appointment_booked_notice", client),  # every booking is confirmed at once
        ("01-06 10:00", "evaluation_fee_due", client),  # at booking, fee unpaid
        ("01-10 15:00", "evaluation_reminder_72h", client),
        ("01-11 15:00", "evaluation_fee_due_48h", client),  # paid at 18:00 that day: no front-desk alert
        ("01-12 15:00", "evaluation_reminder_24h", client),
        ("01-13 15:00", "estimate_ready", client),  # the plan is set: its good faith estimate is there to read
        ("01-13 15:00", "appointment_booked_notice", client),  # the intention-setting session
        ("01-14 10:00", "intention_setting_reminder_72h", client),
        ("01-16 10:00", "intention_setting_reminder_24h", client),
        ("01-17 11:00", "appointment_booked_notice", client),  # session 1
        # session 1 was booked less than 72 h ahead: its 72-hour reminder is recorded as skipped
        ("01-18 10:00", "questionnaires_due", client),
        ("01-19 10:00", "kap_session_reminder_24h", client),
        ("01-20 13:00", "appointment_booked_notice", client),  # the integration session
        ("01-22 10:00", "integration_session_reminder_24h", client),
        ("01-23 11:00", "appointment_booked_notice", client),  # session 2
        ("01-24 10:00", "kap_session_reminder_72h", client),
        ("01-25 10:00", "questionnaires_due", client),
        ("01-26 10:00", "kap_session_reminder_24h", client),
        ("01-27 13:00", "appointment_booked_notice", client),  # session 3
        ("01-31 10:00", "kap_session_reminder_72h", client),
        ("02-01 10:00", "questionnaires_due", client),
        ("02-02 10:00", "kap_session_reminder_24h", client),
        # the plan's last session done 3 days ago, with neither completion nor extension: prompt the therapist
        ("02-06 13:00", "plan_used_up", therapist),
        # 7 days after the last session with no integration session booked: nudge both
        ("02-10 13:00", "integration_not_booked", therapist),
        ("02-10 13:00", "integration_not_booked_client", client),
    ]
    too_late = [t for t in e.timers(case_id)
                if t["reminder"] == "kap_session_reminder_72h" and t["status"] == "skipped"]
    assert len(too_late) == 1 and str(too_late[0]["outcome"]).startswith("booked after its moment")
    assert e.case(case_id).state == "completed"
    assert e.verify_audit().ok


def test_fee_reminders_stop_once_paid_and_front_desk_is_alerted_when_not(kit: ReminderKit) -> None:
    """Unpaid: client reminders at booking and 48 h, then a front-desk alert 24 h before; paid: nothing more."""
    e = kit.engine
    unpaid, paid = open_case(e), open_case(e, last_name="Client-Two")
    for case_id in (unpaid, paid):
        e.book_appointment(case_id, "evaluation", at(5, 15), actor=FRONT_DESK, **who(case_id))
        e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    e.record(paid, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    kit.advance(days=4, hours=6, minutes=1)  # past 24 h before the appointment
    by_case = {cid: [m.key.split(":")[-2] for m in kit.email.sent if m.case_id == cid] for cid in (unpaid, paid)}
    assert by_case[unpaid][:4] == [
        "appointment_booked_notice", "evaluation_fee_due", "evaluation_reminder_72h", "evaluation_fee_due_48h",
    ]
    assert sorted(by_case[unpaid][4:]) == ["evaluation_fee_unpaid_alert", "evaluation_reminder_24h"]  # at once
    assert [m.recipient for m in kit.email.sent if m.key.endswith("evaluation_fee_unpaid_alert:email")] == [
        "desk@example.org"
    ]
    assert by_case[paid] == ["appointment_booked_notice", "evaluation_reminder_72h", "evaluation_reminder_24h"]


def test_unpaid_evaluation_is_released_after_the_appointment_time(kit: ReminderKit) -> None:
    """A timer fires a trigger: still unpaid 30 minutes after the start, the booking is released, audited."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(3, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.advance(days=3, hours=6, minutes=29)
    assert e.case(case_id).state == "evaluation_booked"  # the prescriber may still take the payment
    kit.advance(minutes=1)  # 30 minutes after the start
    assert e.case(case_id).state == "inquiry"
    released = [ev for ev in e.history(case_id) if ev.trigger == "release_evaluation"]
    assert len(released) == 1 and released[0].role == "system"


def test_withdrawn_case_cancels_every_pending_reminder(kit: ReminderKit) -> None:
    """Withdrawing cancels all pending timers; the client is told the appointment is cancelled, then nothing."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.run()
    sent_before = len(kit.email.sent)
    e.fire(case_id, "withdraw", actor=CLIENT, data={"reason": "moving away"})
    statuses = {t["reminder"]: t["status"] for t in kit.store.queue().timers(case_id)}
    assert [name for name, status in statuses.items() if status == "pending"] == ["appointment_cancelled_notice"]
    assert statuses["evaluation_reminder_24h"] == "cancelled"
    kit.advance(days=30)
    assert kit.reminders_sent()[sent_before:] == ["appointment_cancelled_notice"]


def test_reschedule_moves_reminders_and_calendar_and_cancel_drops_them(kit: ReminderKit) -> None:
    """Rescheduling replaces the appointment's reminders and calendar event; cancelling removes both."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    e.record(case_id, "payment", {"amount": 250, "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    kit.run()
    event = kit.calendar.get(f"{case_id}-a1@kapflow")
    assert event is not None and event.ends_at - event.starts_at == timedelta(minutes=60)
    e.reschedule_appointment(case_id, "a1", at(9, 11), actor=FRONT_DESK)
    kit.run()
    moved = kit.calendar.get(f"{case_id}-a1@kapflow")
    assert moved is not None and moved.starts_at == at(9, 11) and moved.sequence > event.sequence
    pending = {t["reminder"]: t["due_at"][:16] for t in kit.store.queue().timers(case_id) if t["status"] == "pending"}
    assert pending["evaluation_reminder_24h"] == "2026-01-13T11:00"
    e.cancel_appointment(case_id, "a1", actor=FRONT_DESK, reason="client asked")
    kit.run()
    cancelled = kit.calendar.get(f"{case_id}-a1@kapflow")
    assert cancelled is not None and cancelled.cancelled
    assert not [t for t in kit.store.queue().timers(case_id) if t["status"] == "pending"]
    with pytest.raises(TransitionBlocked) as refused:
        e.reschedule_appointment(case_id, "a1", at(10), actor=FRONT_DESK)
    assert [b.code for b in refused.value.blockers] == ["appointment_closed"]


def test_kap_session_calendar_event_lasts_135_minutes(kit: ReminderKit) -> None:
    """A KAP session appointment becomes a 135-minute calendar event."""
    e = kit.engine
    case_id = open_case(e)
    to_ready(e, kit.clock, case_id)
    booked = e.book_appointment(case_id, "kap_session", at(10, 10), actor=FRONT_DESK, **who(case_id, "kap_session"))
    kit.run()
    event = kit.calendar.get(f"{case_id}-{booked.extra['appointment']}@kapflow")
    assert event is not None and event.ends_at - event.starts_at == timedelta(minutes=135)


def test_catch_up_sends_recent_reminders_and_records_old_ones_as_missed(kit: ReminderKit) -> None:
    """After downtime, a reminder late by less than its grace is sent; an older one is recorded as missed."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(5, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    e.record(case_id, "payment", {"amount": 250, "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    # The worker is down from now until 3 hours after the 24-hour reminder was due.
    kit.clock.set(at(4, 18))
    kit.run()
    assert kit.reminders_sent() == ["evaluation_reminder_24h"]
    outcomes = {t["reminder"]: t["status"] for t in kit.store.queue().timers(case_id)}
    assert outcomes["evaluation_reminder_72h"] == "missed"
    notes = {ev.data["reminder"]: ev.data["outcome"] for ev in e.history(case_id) if ev.kind == "reminder"}
    assert notes == {
        "appointment_booked_notice": "missed",  # due at the booking, when the worker was already down
        "evaluation_fee_due": "skipped",  # paid: not needed, so not "missed"
        "evaluation_reminder_72h": "missed",
        "evaluation_fee_due_48h": "skipped",
        "evaluation_fee_unpaid_alert": "skipped",
        "evaluation_reminder_24h": "done",
    }


def test_reminder_without_an_address_is_recorded_undeliverable(kit_url: str) -> None:
    """No address for the audience: the timer says so in its outcome and in the audit history."""
    kit = ReminderKit(url=kit_url, clock=FakeClock(T0), contacts={})
    case_id = open_case(kit.engine)
    kit.advance(days=3)  # inquiry unanswered 2 business days: front desk has no address configured
    timer = next(t for t in kit.store.queue().timers(case_id) if t["reminder"] == "inquiry_unanswered")
    assert timer["status"] == "undeliverable"
    assert any(ev.data.get("outcome") == "undeliverable" for ev in kit.engine.history(case_id))
    kit.close()


def test_transient_failures_retry_with_backoff_and_permanent_ones_give_up_audited(kit: ReminderKit) -> None:
    """Transient failures are retried after a growing delay; a permanent one is given up with an audit event."""
    e = kit.engine
    case_id = open_case(e)
    kit.email.fail_next(4)  # the booking's notice and the fee reminder, each failing twice
    e.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.run()
    assert kit.email.sent == []

    def email_row() -> dict[str, object]:
        return next(r for r in kit.store.queue().outbox(case_id) if r["key"].endswith("evaluation_fee_due:email"))

    row = email_row()
    assert row["status"] == "pending" and row["attempts"] == 1
    kit.advance(seconds=30)
    assert kit.email.sent == [] and email_row()["attempts"] == 2
    kit.advance(seconds=59)
    assert kit.email.sent == []  # the second backoff is 60 s
    kit.advance(seconds=1)
    assert sorted(kit.reminders_sent()) == ["appointment_booked_notice", "evaluation_fee_due"]
    attempts = [a["outcome"] for a in kit.store.queue().attempts(row["id"])]
    assert attempts == ["failed", "failed", "sent"]

    kit.email.fail_next(1, permanent=True)
    kit.advance(days=3, hours=7)  # the 72-hour reminder is due (day 3, 15:00)
    dead = [r for r in kit.store.queue().outbox(case_id) if r["status"] == "dead"]
    assert len(dead) == 1 and dead[0]["key"].endswith("evaluation_reminder_72h:email")
    audit = [ev for ev in e.history(case_id) if ev.kind == "delivery_failed"]
    assert len(audit) == 1 and audit[0].data["attempts"] == 1
    assert e.verify_audit().ok


def test_a_failing_channel_never_blocks_another(kit_url: str) -> None:
    """Every email fails, yet SMS messages in the same batch are delivered."""
    kit = ReminderKit(url=kit_url, clock=FakeClock(T0), contacts=CONTACTS,
                      policy=DeliveryPolicy(max_attempts=2))
    kit.email.fail_next(100)
    from kapflow.domain.effects import OutboxMessage

    with kit.store.write() as uow:
        for n in range(3):
            for channel in ("email", "sms"):
                uow.add_outbox(OutboxMessage(f"k{n}:{channel}", "case-x", channel, "client", "+1 555 010 0100",
                                             "Appointment reminder", "body"), T0)
        uow.commit()
    kit.advance(minutes=5)
    assert sorted(m.key for m in kit.sms.sent) == ["k0:sms", "k1:sms", "k2:sms"]
    assert {r["status"] for r in kit.store.queue().outbox() if r["channel"] == "email"} == {"dead"}
    kit.close()


def test_a_dead_workers_claims_are_taken_over_after_the_lease(kit: ReminderKit) -> None:
    """A worker that claimed timers and died holds them only until its lease ends."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    queue = kit.store.queue()
    now = kit.clock.now()
    claimed = queue.claim_timers("dead-worker", now, now + timedelta(minutes=2), 10)
    assert sorted(c.reminder for c in claimed) == ["appointment_booked_notice", "evaluation_fee_due"]
    kit.run()
    assert kit.email.sent == []  # still leased
    kit.advance(minutes=3)
    assert sorted(kit.reminders_sent()) == ["appointment_booked_notice", "evaluation_fee_due"]


def test_two_dispatchers_at_once_deliver_each_message_once(kit_url: str) -> None:
    """Two workers in threads on one database: every due reminder is delivered exactly once."""
    kit = ReminderKit(url=kit_url, clock=FakeClock(T0), contacts=CONTACTS)
    cases = [open_case(kit.engine, last_name=f"Client-{n}") for n in range(20)]
    for case_id in cases:
        kit.engine.book_appointment(case_id, "evaluation", at(5, 15), actor=FRONT_DESK, **who(case_id))
        kit.engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    shared = MemoryNotifier("email")
    policy = DeliveryPolicy(batch=3)
    workers = [Dispatcher(kit.engine, {"email": shared}, worker_id=f"w{n}", policy=policy) for n in range(2)]

    def both_at(moment: datetime) -> None:
        kit.clock.set(moment)
        barrier = threading.Barrier(2)

        def work(d: Dispatcher) -> None:
            barrier.wait()
            d.run_until_idle()

        threads = [threading.Thread(target=work, args=(d,)) for d in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)

    for moment in (T0, at(2, 15), at(3, 15), at(4, 15)):  # booking; 72 h, 48 h and 24 h before
        both_at(moment)
    keys = shared.keys()
    # the booking's notice and fee reminder, then 72 h, 48 h, the front desk's alert and 24 h before
    assert len(keys) == len(set(keys)) == 20 * 6
    kit.close()


def test_no_timer_or_message_for_a_change_that_did_not_commit(kit: ReminderKit) -> None:
    """A refused or conflicting command leaves no timer and no outbox row behind."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
    before = (len(kit.store.queue().timers(case_id)), len(kit.store.queue().outbox(case_id)))
    version = e.case(case_id).version
    with pytest.raises(ConcurrencyConflict):
        e.fire(case_id, "book_evaluation", actor=FRONT_DESK, expected_version=version - 1)
    with pytest.raises(TransitionBlocked):
        e.fire(case_id, "hold", actor=FRONT_DESK)  # no reason given
    assert (len(kit.store.queue().timers(case_id)), len(kit.store.queue().outbox(case_id))) == before


def test_one_kap_session_plans_the_integration_nudge_and_booking_clears_it(kit: ReminderKit) -> None:
    """After a KAP session, booking an integration session stops the 7-day nudge."""
    e = kit.engine
    case_id = open_case(e)
    to_ready(e, kit.clock, case_id)
    one_kap_session(e, kit.clock, case_id)
    e.book_appointment(case_id, "integration_session", kit.clock.now() + timedelta(days=9), actor=FRONT_DESK,
                       **who(case_id))
    kit.advance(days=8)
    assert "integration_not_booked" not in kit.reminders_sent()
    nudges = [t for t in kit.store.queue().timers(case_id) if t["reminder"].startswith("integration_not_booked")]
    # the nudges planned after intention-setting were cancelled by the session; the latest were not needed
    assert {t["status"] for t in nudges} == {"cancelled", "skipped"}
    assert [t["status"] for t in nudges[-2:]] == ["skipped", "skipped"]


def test_a_hold_keeps_the_appointments_reminders_and_each_goes_once(kit: ReminderKit) -> None:
    """An appointment's reminders belong to it: a hold leaves them planned (the fee's, the state's own, are
    cancelled and come back on resuming), and each is sent once."""
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    kit.run()
    e.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travelling"})
    held = {t["reminder"]: t["status"] for t in kit.store.queue().timers(case_id) if t["appointment_id"]}
    assert (held["evaluation_reminder_72h"], held["evaluation_reminder_24h"]) == ("pending", "pending")
    assert held["evaluation_fee_due_48h"] == "cancelled"
    kit.advance(days=1)
    e.fire(case_id, "resume", actor=FRONT_DESK)
    e.record(case_id, "payment", {"amount": 250, "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    revived = {t["reminder"]: t["status"] for t in kit.store.queue().timers(case_id) if t["appointment_id"]}
    assert revived["evaluation_fee_due_48h"] == "pending"
    kit.advance(days=6)
    assert kit.reminders_sent().count("evaluation_reminder_72h") == 1
    assert kit.reminders_sent().count("evaluation_reminder_24h") == 1


def test_a_reminder_sent_before_a_hold_stays_sent_after_the_resume(kit: ReminderKit) -> None:
    """Resuming finds the appointment's same timer keys: the one already sent stays sent, never sent twice.

    Two rules hold it, each enough alone: a reminder counting back that is already past is not planned
    again, and the store's upsert revives only a cancelled timer.
    """
    e = kit.engine
    case_id = open_case(e)
    e.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
    e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    e.record(case_id, "payment", {"amount": 250, "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    kit.advance(days=4)  # past the 72 h reminder (day 3, 15:00), before the 24 h one (day 5, 15:00)
    assert kit.reminders_sent().count("evaluation_reminder_72h") == 1
    e.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": "travelling"})
    e.fire(case_id, "resume", actor=FRONT_DESK)
    statuses = {t["reminder"]: t["status"] for t in kit.store.queue().timers(case_id)}
    assert (statuses["evaluation_reminder_72h"], statuses["evaluation_reminder_24h"]) == ("done", "pending")
    kit.advance(days=3)
    assert kit.reminders_sent().count("evaluation_reminder_72h") == 1
    assert kit.reminders_sent().count("evaluation_reminder_24h") == 1


def fee_reminders_due(kit: ReminderKit, cases: int) -> list[str]:
    """``cases`` cases, each with its evaluation booked: each has its fee reminder due now."""
    ids = [open_case(kit.engine, last_name=f"Batch-{n}") for n in range(cases)]
    for case_id in ids:
        kit.engine.book_appointment(case_id, "evaluation", at(6, 15), actor=FRONT_DESK, **who(case_id))
        kit.engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    return ids


def emails_queued(kit: ReminderKit, case_id: str) -> int:
    return sum(1 for row in kit.store.queue().outbox(case_id) if row["channel"] == "email")


def notes_of(kit: ReminderKit, case_id: str) -> list[str]:
    return [str(ev.data["outcome"]) for ev in kit.engine.history(case_id) if ev.kind == "reminder"]


def test_a_batch_settles_every_timer_in_one_commit_but_one_taken_over_is_left_to_its_new_holder(
    kit: ReminderKit,
) -> None:
    """A worker whose lease ran out on one timer of its batch writes nothing for that one; the rest commit."""
    ids = fee_reminders_due(kit, 3)
    queue = kit.store.queue()
    now = kit.clock.now()
    slow = queue.claim_timers("slow-worker", now, now + timedelta(minutes=2), 10)
    assert sorted(c.case_id for c in slow) == sorted(ids * 2)  # the booking's notice and the fee reminder
    kit.clock.advance(timedelta(minutes=3))  # the slow worker's lease is over
    later = kit.clock.now()
    (taken,) = queue.claim_timers("other-worker", later, later + timedelta(minutes=2), 1)

    outcomes = act_on_timers(kit.engine.app, slow, "slow-worker")

    in_order = sorted(slow, key=lambda c: (c.case_id, c.id))  # how a batch takes its timers
    by_timer = {c.id: o.status for c, o in zip(in_order, outcomes, strict=True)}
    assert by_timer == {c.id: "lost" if c.id == taken.id else "done" for c in slow}
    assert notes_of(kit, taken.case_id) == ["done"]  # the case's other timer; none from the worker that lost it
    assert emails_queued(kit, taken.case_id) == 1
    assert [o.status for o in act_on_timers(kit.engine.app, [taken], "other-worker")] == ["done"]
    kit.run()
    assert sorted(m.case_id for m in kit.email.sent) == sorted(ids * 2)  # a notice and a fee reminder each
    assert all(notes_of(kit, case_id) == ["done", "done"] for case_id in ids)


def test_a_batch_that_fails_as_a_whole_keeps_nothing_and_settles_each_timer_alone(
    kit: ReminderKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case changes under the batch (a lost compare-and-swap): nothing of the batch stays, each timer
    is settled in a transaction of its own, and every reminder goes out once."""
    ids = fee_reminders_due(kit, 3)
    engine = kit.engine
    real_note = Transaction.note
    calls: list[str] = []

    def note_once_lost(tx: Transaction, case: CaseRecord, event: AuditEvent) -> CaseRecord:
        calls.append(case.id)
        if len(calls) == 2:  # the batch's second timer: its case moved meanwhile
            raise LostRace(case.id)
        return real_note(tx, case, event)

    monkeypatch.setattr(Transaction, "note", note_once_lost)
    now = kit.clock.now()
    claims = kit.store.queue().claim_timers("w", now, now + timedelta(minutes=2), 10)

    outcomes = act_on_timers(engine.app, claims, "w")

    assert [o.status for o in outcomes] == ["done"] * 6  # the booking's notice and the fee reminder, each case
    in_order = sorted(ids * 2)
    assert calls == [*in_order[:2], *in_order]  # the batch stopped at its second timer; then one by one
    assert all(notes_of(kit, case_id) == ["done", "done"] for case_id in ids)  # the batch's first note went
    assert [emails_queued(kit, case_id) for case_id in ids] == [2, 2, 2]


def test_the_inquiry_alert_counts_the_practices_business_days(kit_url: str) -> None:
    """New York: an inquiry on Wednesday 4 March at 19:30 (Thursday in UTC) alerts the desk on Friday
    at 19:30, two business days on the practice's calendar (not on Sunday at 20:30)."""
    new_york = ZoneInfo("America/New_York")
    kit = ReminderKit(url=kit_url, clock=FakeClock(datetime(2026, 3, 4, 19, 30, tzinfo=new_york)),
                      contacts=CONTACTS, timezone="America/New_York")
    try:
        case_id = open_case(kit.engine)
        timer = next(t for t in kit.engine.timers(case_id) if t["reminder"] == "inquiry_unanswered")
        assert datetime.fromisoformat(str(timer["due_at"])) == datetime(2026, 3, 6, 19, 30, tzinfo=new_york)
        kit.advance(datetime(2026, 3, 6, 19, 15, tzinfo=new_york) - kit.clock.now())
        assert "inquiry_unanswered" not in kit.reminders_sent()
        kit.advance(minutes=30)
        assert "inquiry_unanswered" in kit.reminders_sent()
    finally:
        kit.close()


class _Overlapping(MemoryNotifier):
    """Counts the sends in progress at once; each dwells a moment, so sends that may overlap do."""

    def __init__(self, concurrency: int, *, wait_for_partner: bool) -> None:
        super().__init__("email")
        self.concurrency = concurrency
        self.active = self.peak = 0
        self._changed = threading.Condition()
        self._wait_for_partner = wait_for_partner

    def send(self, message: Message) -> None:
        with self._changed:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self._changed.notify_all()
            if self._wait_for_partner:  # until two were in progress at once, or a while (then peak stays 1)
                self._changed.wait_for(lambda: self.peak >= 2, timeout=10)
        time.sleep(0.005)
        super().send(message)
        with self._changed:
            self.active -= 1


def _due_messages(kit: ReminderKit, cases: int) -> None:
    for n in range(cases):
        case_id = open_case(kit.engine, last_name=f"Overlap-{n}")
        kit.engine.book_appointment(case_id, "evaluation", at(5, 15), actor=FRONT_DESK, **who(case_id))
        kit.engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)


def _delivered_through(kit: ReminderKit, notifier: MemoryNotifier, cases: int) -> None:
    """Book ``cases`` evaluations, then deliver their messages with four in flight, and close the worker."""
    _due_messages(kit, cases)
    worker = Dispatcher(kit.engine, {"email": notifier}, worker_id="w", policy=DeliveryPolicy(in_flight=4))
    worker.run_until_idle()
    worker.close()


def test_messages_in_flight_overlap_up_to_the_adapters_concurrency(kit: ReminderKit) -> None:
    """With four in flight and an adapter taking two at once, two sends go on together, never three."""
    notifier = _Overlapping(2, wait_for_partner=True)
    _delivered_through(kit, notifier, 6)
    assert notifier.peak == 2
    assert len(notifier.keys()) == len(set(notifier.keys())) == 6 * 2  # the notice and the fee reminder each


def test_an_adapter_that_takes_one_send_at_a_time_gets_one(kit: ReminderKit) -> None:
    """An adapter that does not say it takes more (a calendar, a webhook) is sent one message at a time."""
    notifier = _Overlapping(1, wait_for_partner=False)
    _delivered_through(kit, notifier, 4)
    assert notifier.peak == 1 and len(notifier.keys()) == 4 * 2


class _Threads(MemoryNotifier):
    """Notes the thread each message is sent from: an adapter keeps its session (an SMTP connection) per thread."""

    def __init__(self) -> None:
        super().__init__("email")
        self.threads: list[threading.Thread] = []  # the objects: an ended thread's ident may be given again

    def send(self, message: Message) -> None:
        self.threads.append(threading.current_thread())
        super().send(message)


def test_the_sending_threads_are_kept_from_batch_to_batch_until_the_worker_closes(kit: ReminderKit) -> None:
    """Batch after batch goes out from the same sending thread, so an SMTP session carries them all; a new
    thread (and session) was made for every batch, and the one before was left open."""
    _due_messages(kit, 3)
    notifier = _Threads()
    worker = Dispatcher(kit.engine, {"email": notifier}, worker_id="w", policy=DeliveryPolicy(batch=2, in_flight=1))
    while worker.run_outbox_once() or worker.run_timers_once():
        pass
    assert len(notifier.keys()) == 3 * 2 and len(set(notifier.threads)) == 1  # three batches, one thread
    sending = worker._sending
    assert sending is not None
    worker.close()
    assert worker._sending is None and sending._shutdown
