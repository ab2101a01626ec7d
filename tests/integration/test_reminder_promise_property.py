"""Hypothesis: for random appointment histories and clock jumps, reminders keep their promise (issue 14).

Each example copies a SQLite file holding one case ready for KAP sessions, in New York across the
autumn change, then runs random operations: book, move and cancel appointments, let the worker run
every 15 minutes for a while, stop it for hours or days (a jump of the clock, then one run), make
deliveries fail. After every run of the worker:

- no reminder is both due and silently lost: every reminder the case plans now whose moment has
  passed has a timer row settled with a recorded outcome (done, skipped, missed, undeliverable),
  never still pending and never cancelled while it is still planned;
- no message about a cancelled, moved or past appointment is delivered: each message delivered in
  that run names the appointment as it still is (same change count) and a start still ahead.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support import CLIENT, CONTACTS, FRONT_DESK, THERAPIST, booking, open_case, prepare_dosing, to_ready

from kapflow.domain.appointments import appointments
from kapflow.domain.timers import plan_timers
from kapflow.errors import KapflowError
from kapflow.testing import FakeClock, ReminderKit
from kapflow.workflows.measures import answered

ZONE = "America/New_York"
START = datetime(2026, 10, 26, 13, 0, tzinfo=UTC)  # Monday 09:00 EDT; the clocks go back on Sunday 1 November
KINDS = ("integration_session", "kap_session", "reassessment", "prescriber_checkin")
SETTLED = {"done", "skipped", "missed", "undeliverable"}

Op = tuple[Any, ...]
OPS = st.one_of(
    st.tuples(st.just("book"), st.sampled_from(KINDS), st.integers(1, 120)),
    st.tuples(st.just("move"), st.integers(0, 5), st.integers(1, 120)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("tick"), st.integers(1, 96)),  # quarter hours with the worker running
    st.tuples(st.just("down"), st.integers(1, 96)),  # hours the worker is down, then one run
    st.tuples(st.just("fail"), st.integers(1, 3)),
    st.tuples(st.just("session")),  # a whole KAP session, the worker running: the case leaves ready_for_kap
    st.tuples(st.just("hold")),
    st.tuples(st.just("resume")),
)


@pytest.fixture(scope="module")
def template() -> Iterator[tuple[Path, str, datetime]]:
    """A SQLite file with one case ready for KAP sessions; the case's id; the clock's time then."""
    folder = Path(tempfile.mkdtemp(prefix="kapflow-promise-"))
    kit = ReminderKit(url=f"sqlite:///{folder / 'template.db'}", clock=FakeClock(START), contacts=CONTACTS,
                      timezone=ZONE)
    case_id = open_case(kit.engine)
    to_ready(kit.engine, kit.clock, case_id, sessions=24)
    kit.run()
    ready_at = kit.clock.now()
    kit.close()
    yield folder / "template.db", case_id, ready_at
    shutil.rmtree(folder, ignore_errors=True)


class Promise:
    """One example: the kit, the case, and the checks after every run of the worker."""

    def __init__(self, template: tuple[Path, str, datetime]) -> None:
        source, self.case_id, ready_at = template
        self.folder = Path(tempfile.mkdtemp(prefix="kapflow-promise-"))
        shutil.copy(source, self.folder / "kapflow.db")
        self.kit = ReminderKit(url=f"sqlite:///{self.folder / 'kapflow.db'}", clock=FakeClock(ready_at),
                               contacts=CONTACTS, timezone=ZONE)
        self.delivered = 0

    def close(self) -> None:
        self.kit.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def apply(self, op: Op) -> None:
        e, now = self.kit.engine, self.kit.clock.now()
        ids = [a.id for a in e.appointments(self.case_id)]
        try:
            if op[0] == "book":
                start = now + timedelta(hours=op[2])
                e.record(self.case_id, "appointment", booking(self.case_id, op[1], start), actor=FRONT_DESK)
            elif op[0] == "move" and ids:
                e.reschedule_appointment(self.case_id, ids[op[1] % len(ids)], now + timedelta(hours=op[2]),
                                         actor=FRONT_DESK)
            elif op[0] == "cancel" and ids:
                e.cancel_appointment(self.case_id, ids[op[1] % len(ids)], actor=FRONT_DESK, reason="test")
            elif op[0] == "hold":
                e.fire(self.case_id, "hold", actor=FRONT_DESK, data={"reason": "test"})
            elif op[0] == "resume":
                e.fire(self.case_id, "resume", actor=FRONT_DESK)
            elif op[0] == "session":
                self.kap_session()
        except KapflowError:
            pass  # refused (a slot taken, an appointment already closed): changes nothing
        if op[0] == "tick":
            self.run_for(quarters=op[1])
        elif op[0] == "down":
            self.kit.clock.advance(hours=op[1])
            self.run_and_check()
        elif op[0] == "fail":
            self.kit.email.fail_next(op[1])

    def kap_session(self) -> None:
        """A KAP session with the worker running through it (raises if the case cannot start one)."""
        e = self.kit.engine
        e.record(self.case_id, "questionnaire", answered("PHQ-9", 8), actor=CLIENT)
        e.record(self.case_id, "questionnaire", answered("GAD-7", 6), actor=CLIENT)
        prepare_dosing(e, self.case_id)
        e.fire(self.case_id, "start_kap_session", actor=THERAPIST)
        self.run_for(quarters=8)
        e.record(self.case_id, "vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76}, actor=THERAPIST)
        e.record(self.case_id, "discharge_check", {"stable": True, "no_driving_acknowledged": True},
                 actor=THERAPIST)
        e.fire(self.case_id, "discharge", actor=THERAPIST)
        self.run_for(quarters=4)
        e.fire(self.case_id, "complete_integration", actor=THERAPIST)

    def run_for(self, quarters: int) -> None:
        for _ in range(quarters):
            self.kit.clock.advance(minutes=15)
            self.run_and_check()

    def run_and_check(self) -> None:
        self.kit.run()
        self.check_no_stale_delivery()
        self.check_nothing_due_is_lost()

    def check_no_stale_delivery(self) -> None:
        e, now = self.kit.engine, self.kit.clock.now()
        new = self.kit.email.sent[self.delivered:]
        self.delivered = len(self.kit.email.sent)
        if not new:
            return
        case = e.case(self.case_id)
        view = appointments(case.id, case.projection, e.workflow_of(case).appointments)
        payloads = {r["key"]: r for r in e.outbox(self.case_id)}
        for message in new:
            row = payloads[message.key]
            timer = next(t for t in e.timers(self.case_id) if message.key.startswith(str(t["key"])))
            if timer["appointment_id"] is None:
                continue
            appt = view[str(timer["appointment_id"])]
            sequence = int(str(timer["key"]).split(":")[-2].lstrip("s"))
            assert appt.sequence == sequence, f"{message.key}: its appointment changed first ({row['status']})"
            assert appt.starts_at > now, f"{message.key}: delivered after its appointment started"

    def check_nothing_due_is_lost(self) -> None:
        e, now = self.kit.engine, self.kit.clock.now()
        case = e.case(self.case_id)
        wf = e.workflow_of(case)
        planned = plan_timers(wf, case.id, case.state, case.projection, case.opened_at, e.app.practice)
        rows = {str(r["key"]): r for r in e.timers(self.case_id)}
        for key, timer in planned.items():
            if timer.due_at > now:
                continue
            row = rows.get(key)
            assert row is not None, f"{key} was due at {timer.due_at} and has no timer"
            assert row["status"] in SETTLED, f"{key} was due at {timer.due_at} and is {row['status']}"
            assert row["outcome"], f"{key} was settled without a recorded outcome"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=14))
# A reminder falling due while the client is dosing (item 5); a reminder whose first attempt failed,
# its appointment cancelled before the retry (item 7); an appointment moved earlier after its first
# reminder (item 6); a worker down across an appointment. Hypothesis finds these only now and then.
@example(ops=[("book", "integration_session", 24), ("session",)])
@example(ops=[("book", "integration_session", 30), ("tick", 1), ("fail", 1), ("tick", 23), ("cancel", 1),
              ("tick", 4)])
@example(ops=[("book", "integration_session", 80), ("tick", 40), ("move", 1, 20), ("tick", 96)])
@example(ops=[("book", "kap_session", 30), ("tick", 1), ("fail", 1), ("tick", 24), ("down", 30)])
def test_no_reminder_is_silently_lost_and_no_stale_message_is_delivered(
    template: tuple[Path, str, datetime], ops: list[Op]
) -> None:
    promise = Promise(template)
    try:
        for op in ops:
            promise.apply(op)
        promise.kit.clock.advance(days=10)  # then the worker catches up on everything
        promise.run_and_check()
    finally:
        promise.close()
