"""A timer whose settlement fails is retried with backoff, then parked with an audit note; it never blocks others.

The poisoned row is made by hand, as an edit or a bug would: an evaluation moved to 9999-12-31T20:00Z in the
case's stored projection (the API refuses such a date), which no practice time zone east of UTC can show.
Every test runs on a SQLite file and on a PostgreSQL schema of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from support import CONTACTS, FRONT_DESK, T0, at, open_case, query, who
from typer.testing import CliRunner

from kapflow.app.dispatch import DeliveryPolicy
from kapflow.cli import app as cli
from kapflow.domain.events import TimerStatus
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock, ReminderKit

DUE_24H = T0 + timedelta(days=2, hours=1, minutes=1)
"""Just after the 24-hour reminders of an evaluation booked at ``at(3, 10)`` fell due."""
POLICY = DeliveryPolicy(max_attempts=3, first_backoff=timedelta(minutes=1), max_backoff=timedelta(minutes=10))


@pytest.fixture
def kit(any_ready_url: str) -> Iterator[ReminderKit]:
    kit = ReminderKit(url=any_ready_url, clock=FakeClock(T0), contacts=CONTACTS, timezone="Asia/Tokyo",
                      policy=POLICY)
    yield kit
    kit.close()


def poison(url: str, case_id: str) -> None:
    """Move the case's evaluation to 9999-12-31T20:00Z in its stored projection, by hand."""
    rows = query(url, "SELECT n, entry FROM case_entries WHERE case_id = :c AND section = 'facts'", c=case_id)
    db = create_engine(url, poolclass=NullPool)
    with db.begin() as conn:
        for n, entry in rows:
            fact = json.loads(entry)
            if fact["kind"] == "appointment":
                fact["data"]["starts_at"] = "9999-12-31T20:00:00.000000+00:00"
                edited = json.dumps(fact, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                conn.execute(text("UPDATE case_entries SET entry = :e WHERE case_id = :c AND section = 'facts' "
                                  "AND n = :n"), {"e": edited, "c": case_id, "n": n})
    db.dispose()


def poisoned(kit: ReminderKit, url: str, case_id: str) -> None:
    """``poison`` the case, which the worker (another process in a practice) keeps no copy of."""
    poison(url, case_id)
    assert isinstance(kit.store, SqlStore)
    kit.store.recent.forget(case_id)  # the engine here also booked it: it would start from what it committed


def booked(kit: ReminderKit) -> str:
    case_id = open_case(kit.engine)
    kit.engine.book_appointment(case_id, "evaluation", at(3, 10), actor=FRONT_DESK, **who(case_id))
    kit.engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    return case_id


def test_a_poisoned_timer_is_retried_then_parked_and_others_go_out(kit: ReminderKit, any_ready_url: str) -> None:
    """20 ticks with one poisoned case: every tick succeeds, the healthy case's reminders go out, the bad one parks."""
    bad, good = booked(kit), booked(kit)
    poisoned(kit, any_ready_url, bad)
    kit.clock.set(DUE_24H)
    failures = 0
    for _ in range(20):
        try:
            kit.dispatcher.run_timers_once()
            kit.dispatcher.run_outbox_once()
        except Exception:  # counting the ticks that fail is the point
            failures += 1
        kit.clock.advance(minutes=1)
    assert failures == 0
    assert any(m.case_id == good for m in kit.email.sent)
    assert not any(m.case_id == bad for m in kit.email.sent)

    timers = kit.engine.timers(bad)
    parked = [t for t in timers if t["status"] == TimerStatus.FAILED]
    assert parked, timers
    assert all(t["attempts"] == POLICY.max_attempts for t in parked)
    assert all("OverflowError" in t["outcome"] for t in parked)
    assert not [t for t in kit.engine.timers(good) if t["status"] == TimerStatus.FAILED]
    notes = [e.data for e in kit.engine.history(bad) if e.data.get("outcome") == TimerStatus.FAILED]
    assert {n["timer"] for n in notes} == {t["key"] for t in parked}
    assert all("OverflowError" in n["detail"] and "9999" not in n["detail"] for n in notes)


def test_a_failing_timer_waits_its_backoff_before_the_next_attempt(kit: ReminderKit, any_ready_url: str) -> None:
    """After a failed attempt the timer is not taken again until its backoff has passed."""
    bad = booked(kit)
    poisoned(kit, any_ready_url, bad)
    kit.clock.set(DUE_24H)
    assert kit.dispatcher.run_timers_once() >= 1
    first = {t["key"]: t["attempts"] for t in kit.engine.timers(bad) if t["attempts"]}
    assert first and set(first.values()) == {1}
    assert kit.dispatcher.run_timers_once() == 0  # still backing off
    kit.clock.advance(minutes=1, seconds=1)
    assert kit.dispatcher.run_timers_once() == len(first)
    assert {t["key"]: t["attempts"] for t in kit.engine.timers(bad) if t["attempts"]} == {k: 2 for k in first}


def test_kapflow_timers_failed_lists_only_parked_timers(kit: ReminderKit, any_ready_url: str) -> None:
    """``kapflow timers --failed`` shows the parked timers and nothing else."""
    bad, good = booked(kit), booked(kit)
    poisoned(kit, any_ready_url, bad)
    kit.clock.set(DUE_24H)
    for _ in range(20):
        kit.dispatcher.run_timers_once()
        kit.clock.advance(minutes=1)
    result = CliRunner().invoke(cli, ["--db", any_ready_url, "timers", "--failed", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows and {r["case_id"] for r in rows} == {bad} and {r["status"] for r in rows} == {"failed"}
    assert good not in result.output


def test_a_message_given_up_on_an_unreadable_case_does_not_stop_the_outbox(
    kit: ReminderKit, any_ready_url: str
) -> None:
    """A message given up whose case cannot be read is settled without its note; the next message still goes."""
    bad, good = booked(kit), booked(kit)
    kit.clock.set(DUE_24H)
    kit.dispatcher.run_timers_once()
    queued = kit.engine.outbox()
    first = min((r for r in queued if r["channel"] == "email"), key=lambda r: r["id"])
    assert {r["case_id"] for r in queued if r["channel"] == "email"} == {bad, good}
    db = create_engine(any_ready_url, poolclass=NullPool)
    with db.begin() as conn:  # the case of the first message becomes unreadable, by hand
        conn.execute(text("UPDATE case_entries SET entry = :e WHERE case_id = :c AND section = 'facts' AND n = 0"),
                     {"e": '{"kind": ', "c": first["case_id"]})
    db.dispose()
    kit.dispatcher.run_outbox_once()  # raised before: the loop stopped at the first row
    rows = {r["id"]: r for r in kit.engine.outbox()}
    # Nothing goes out that cannot be checked against its case: the attempt fails, and is retried.
    assert rows[first["id"]]["status"] == "pending"
    assert rows[first["id"]]["last_error"] == "its case could not be checked (JSONDecodeError)"
    for _ in range(POLICY.max_attempts - 1):
        kit.clock.advance(POLICY.max_backoff)
        kit.dispatcher.run_outbox_once()
    rows = {r["id"]: r for r in kit.engine.outbox()}
    assert rows[first["id"]]["status"] == "dead"
    other = "good" if first["case_id"] == bad else "bad"
    assert any(m.case_id == {"good": good, "bad": bad}[other] for m in kit.email.sent)
