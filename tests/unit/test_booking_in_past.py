"""Issue 14, item 11: a booking or a reschedule into the past is refused, unless recorded as a late entry.

A start before now is refused by the shared ``appointment_not_in_past`` fact guard, in both pathways,
with a blocker saying the time is in the past and how to record it as a late entry: the fact carries
``late_entry: true`` and a ``reason`` (the spec refuses a late entry without one). Cancelling, marking a
no-show or attendance of a past appointment stays allowed: those give no new time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psychotherapy_support import INQUIRY as PSY_INQUIRY
from support import FRONT_DESK

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.domain.entries import to_iso
from kapflow.errors import InvalidFact, TransitionBlocked
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=NEW_YORK)  # Monday 2 March 2026, 09:00 EST
WHO = {"clinician": "np-rowan"}  # who a booking is with (each booking names its clinician)


def ny(y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NEW_YORK)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def engine(tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    eng = build_engine(f"sqlite:///{tmp_path / 'kapflow.db'}", [KAP_PATHWAY, PSYCHOTHERAPY_PATHWAY],
                       settings=Settings(timezone="America/New_York"), clock=clock)
    try:
        yield eng
    finally:
        eng.close()


def kap_case(engine: Engine) -> str:
    return engine.open_case(
        {"first_name": "Sample", "last_name": "Client-One", "date_of_birth": "1988-04-12",
         "email": "sample.client@example.org", "concerns": ["depression"]},
        actor=FRONT_DESK, workflow="kap",
    ).case_id


def book(engine: Engine, case_id: str, starts: datetime, kind: str = "evaluation", **extra: Any) -> str:
    data = {"kind": kind, "starts_at": starts.isoformat(), "clinician": f"np-{case_id[-8:]}", **extra}
    return str(engine.record(case_id, "appointment", data, actor=FRONT_DESK).extra["appointment"])


def update(engine: Engine, case_id: str, **data: Any) -> None:
    engine.record(case_id, "appointment_update", data, actor=FRONT_DESK)


def refused(engine: Engine, case_id: str, kind: str, data: dict[str, Any]) -> TransitionBlocked:
    """Recording ``data`` is refused; the case and its appointments are as they were, one refusal audited."""
    before, events, appts = engine.case(case_id), len(engine.history(case_id)), engine.appointments(case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.record(case_id, kind, data, actor=FRONT_DESK)
    after = engine.case(case_id)
    assert (after.state, after.version, after.facts) == (before.state, before.version, before.facts)
    assert engine.appointments(case_id) == appts
    history = engine.history(case_id)
    assert len(history) == events + 1 and history[-1].kind == "refused"
    assert [b["code"] for b in history[-1].blockers] == [b.code for b in info.value.blockers]
    assert engine.verify_audit().ok
    return info.value


def test_both_pathways_guard_bookings_and_changes_against_the_past() -> None:
    for wf in (KAP_PATHWAY, PSYCHOTHERAPY_PATHWAY):
        assert "appointment_not_in_past" in wf.facts["appointment"].guards, wf.name
        assert "appointment_not_in_past" in wf.facts["appointment_update"].guards, wf.name


def test_a_booking_in_the_past_is_refused_with_what_to_do(engine: Engine) -> None:
    case_id = kap_case(engine)
    refusal = refused(engine, case_id, "appointment",
                      {"kind": "evaluation", **WHO, "starts_at": ny(2025, 11, 10).isoformat()})
    assert [b.code for b in refusal.blockers] == ["appointment_in_past"]
    blocker = refusal.blockers[0]
    assert blocker.guard == "appointment_not_in_past"
    assert "2025-11-10 10:00 EST" in blocker.message and "in the past" in blocker.message
    assert "late entry" in blocker.message and "reason" in blocker.message
    assert dict(blocker.facts)["starts_at"] == to_iso(ny(2025, 11, 10))
    assert engine.case(case_id).state == "inquiry"
    assert engine.appointments(case_id) == []


def test_a_minute_ago_is_the_past_and_now_is_not(engine: Engine, clock: FakeClock) -> None:
    case_id = kap_case(engine)
    refusal = refused(engine, case_id, "appointment",
                      {"kind": "evaluation", **WHO, "starts_at": (clock.now() - timedelta(minutes=1)).isoformat()})
    assert [b.code for b in refusal.blockers] == ["appointment_in_past"]
    book(engine, case_id, clock.now())
    assert [a.status for a in engine.appointments(case_id)] == ["booked"]


def test_the_case_cannot_move_on_a_past_booking(engine: Engine) -> None:
    """The 2025 evaluation of the issue is not stored as booked, so book_evaluation still waits for one."""
    case_id = kap_case(engine)
    refused(engine, case_id, "appointment", {"kind": "evaluation", **WHO, "starts_at": ny(2025, 6, 1).isoformat()})
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    assert [b.code for b in info.value.blockers] == ["evaluation_not_booked"]


def test_a_reschedule_into_the_past_is_refused(engine: Engine, clock: FakeClock) -> None:
    """Rescheduling an unpaid evaluation into last month would cancel its reminders and its release."""
    case_id = kap_case(engine)
    appt = book(engine, case_id, ny(2026, 3, 5))
    engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    refusal = refused(engine, case_id, "appointment_update",
                      {"appointment": appt, "action": "reschedule", "starts_at": ny(2026, 2, 16).isoformat()})
    assert [b.code for b in refusal.blockers] == ["appointment_in_past"]
    assert "2026-02-16 10:00 EST" in refusal.blockers[0].message
    [kept] = engine.appointments(case_id)
    assert (kept.starts_at, kept.status, kept.sequence) == (ny(2026, 3, 5), "booked", 0)
    assert engine.case(case_id).state == "evaluation_booked"
    update(engine, case_id, appointment=appt, action="reschedule", starts_at=ny(2026, 3, 6).isoformat())
    assert engine.appointments(case_id)[0].starts_at == ny(2026, 3, 6)


def test_a_late_entry_with_a_reason_is_recorded_and_audited(engine: Engine) -> None:
    case_id = kap_case(engine)
    reason = "walk-in evaluation on Friday, entered after the fact"
    appt = book(engine, case_id, ny(2026, 2, 27), late_entry=True, reason=reason)
    [booked] = engine.appointments(case_id)
    assert (booked.id, booked.starts_at, booked.status) == (appt, ny(2026, 2, 27), "booked")
    audited = engine.history(case_id)[-1]
    assert audited.kind == "fact"
    assert audited.data["fact"]["late_entry"] is True and audited.data["fact"]["reason"] == reason
    assert engine.verify_audit().ok


def test_a_reschedule_recorded_late_is_accepted(engine: Engine) -> None:
    case_id = kap_case(engine)
    appt = book(engine, case_id, ny(2026, 3, 5))
    update(engine, case_id, appointment=appt, action="reschedule", starts_at=ny(2026, 2, 27).isoformat(),
           late_entry=True, reason="the client came in early on Friday; moved after the fact")
    assert engine.appointments(case_id)[0].starts_at == ny(2026, 2, 27)
    assert engine.history(case_id)[-1].data["fact"]["late_entry"] is True


def test_an_ordinary_booking_is_not_a_late_entry(engine: Engine) -> None:
    case_id = kap_case(engine)
    book(engine, case_id, ny(2026, 3, 5))
    assert engine.history(case_id)[-1].data["fact"]["late_entry"] is False


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_late_entry_without_a_reason_is_invalid(engine: Engine, reason: str | None) -> None:
    case_id = kap_case(engine)
    events = len(engine.history(case_id))
    data: dict[str, Any] = {"kind": "evaluation", **WHO, "starts_at": ny(2026, 2, 27).isoformat(), "late_entry": True}
    if reason is not None:
        data["reason"] = reason
    with pytest.raises(InvalidFact) as info:
        engine.record(case_id, "appointment", data, actor=FRONT_DESK)
    assert info.value.field == "reason"
    if reason is None:
        assert "late entry" in info.value.reason
    assert len(engine.history(case_id)) == events and engine.appointments(case_id) == []


def test_a_late_reschedule_without_a_reason_is_invalid(engine: Engine) -> None:
    case_id = kap_case(engine)
    appt = book(engine, case_id, ny(2026, 3, 5))
    with pytest.raises(InvalidFact) as info:
        update(engine, case_id, appointment=appt, action="reschedule", starts_at=ny(2026, 2, 27).isoformat(),
               late_entry=True)
    assert info.value.field == "reason"


def test_late_entry_is_a_boolean(engine: Engine) -> None:
    case_id = kap_case(engine)
    with pytest.raises(InvalidFact) as info:
        book(engine, case_id, ny(2026, 2, 27), late_entry="yes", reason="entered late")
    assert info.value.field == "late_entry" and info.value.reason == "must be true or false"


def test_only_a_new_time_is_a_late_entry(engine: Engine) -> None:
    case_id = kap_case(engine)
    appt = book(engine, case_id, ny(2026, 3, 5))
    with pytest.raises(InvalidFact) as info:
        update(engine, case_id, appointment=appt, action="cancel", late_entry=True, reason="entered late")
    assert info.value.field == "late_entry" and "book or reschedule" in info.value.reason


@pytest.mark.parametrize("action", ["cancel", "no_show", "attended"])
def test_a_past_appointment_can_still_be_closed(engine: Engine, clock: FakeClock, action: str) -> None:
    case_id = kap_case(engine)
    appt = book(engine, case_id, ny(2026, 3, 3))
    clock.set(ny(2026, 3, 4))
    update(engine, case_id, appointment=appt, action=action, reason="closed after the day")
    assert engine.appointments(case_id)[0].status == {"cancel": "cancelled"}.get(action, action)


def test_psychotherapy_refuses_a_past_booking_too(engine: Engine) -> None:
    case_id = engine.open_case(PSY_INQUIRY, actor=FRONT_DESK, workflow="psychotherapy").case_id
    refusal = refused(engine, case_id, "appointment",
                      {"kind": "intake", **WHO, "starts_at": ny(2026, 2, 20).isoformat()})
    assert [b.code for b in refusal.blockers] == ["appointment_in_past"]
    appt = book(engine, case_id, ny(2026, 3, 4), kind="intake")
    refusal = refused(engine, case_id, "appointment_update",
                      {"appointment": appt, "action": "reschedule", "starts_at": ny(2026, 3, 1).isoformat()})
    assert [b.code for b in refusal.blockers] == ["appointment_in_past"]
    book(engine, case_id, ny(2026, 2, 20), kind="intake", late_entry=True, reason="phone intake, entered late")
    assert [a.starts_at for a in engine.appointments(case_id)] == [ny(2026, 3, 4), ny(2026, 2, 20)]



def test_the_cli_books_and_reschedules_late_entries(tmp_path: Path) -> None:
    """``kapflow appointment book/reschedule`` refuse a past time, and take one with --late-entry --reason."""
    import json

    from support import INQUIRY
    from typer.testing import CliRunner

    from kapflow.cli import app

    url = f"sqlite:///{tmp_path / 'k.db'}"
    desk = ("--actor", "fd-1", "--role", "front_desk")
    dr, other = ("--clinician", "np-rowan"), ("--clinician", "np-sky")

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, ["--db", url, *args])
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run("open", *desk, "--data", json.dumps(INQUIRY), "--json")
    assert code == 0, err
    case_id = json.loads(out)["case_id"]
    past = "2020-01-06T10:00:00-05:00"
    code, out, err = run("appointment", "book", case_id, "evaluation", *dr, past, *desk)
    assert code != 0 and "appointment_in_past" in err + out
    code, out, err = run("appointment", "book", case_id, "evaluation", *dr, past, *desk, "--late-entry")
    assert code != 0 and "reason" in err + out
    code, out, err = run("appointment", "book", case_id, "evaluation", *dr, past, *desk, "--late-entry",
                         "--reason", "paper chart entered late")
    assert code == 0, err
    assert "recorded appointment a1" in out
    code, out, err = run("appointment", "book", case_id, "evaluation", *other, "2099-01-05T15:00:00+00:00", *desk)
    assert code == 0, err
    code, out, err = run("appointment", "reschedule", case_id, "a2", past, *desk)
    assert code != 0 and "appointment_in_past" in err + out
    code, out, err = run("appointment", "reschedule", case_id, "a2", past, *desk, "--late-entry",
                         "--reason", "moved on paper, entered late")
    assert code == 0, err
    code, out, err = run("appointment", "list", case_id, "--json")
    assert [a["starts_at"][:16] for a in json.loads(out)] == ["2020-01-06T15:00", "2020-01-06T15:00"]
