"""The case list's appointment-day and overdue-reminder filters, in the engine, the API and the console, on SQLite
and PostgreSQL.

A day is the practice's (America/New_York here): an appointment at 00:30 UTC on 7 March is on 6 March. Only active
appointments count (a cancelled one does not; a rescheduled one counts on its new day). A reminder is overdue when
its timer is still pending (or claimed) more than ``OVERDUE_GRACE`` after its time, or was given up on (missed,
failed). The filters combine with state, workflow and each other, and keep the keyset paging.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from console_support import Console, console_serving
from http_server import serving
from sqlalchemy import text
from support import FRONT_DESK, clinician_of, open_case

from kapflow.app.engine import Engine
from kapflow.app.queries import OVERDUE_GRACE
from kapflow.domain.errors import InvalidInput
from kapflow.domain.events import TimerStatus
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

DAY = date(2026, 3, 6)  # in New York: 05:00 UTC on 6 March to 05:00 UTC on 7 March (EST)


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def ny(any_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    """The KAP pathway at a practice in New York, on each backend in turn."""
    store = SqlStore(any_ready_url)
    yield Engine(store, KAP_PATHWAY, clock=clock, timezone="America/New_York")
    store.close()


def new_case(engine: Engine, clock: FakeClock, name: str) -> str:
    clock.advance(minutes=1)  # each case opened after the one before: the list's order is the opening order
    return open_case(engine, last_name=name)


def book(engine: Engine, case_id: str, starts: datetime) -> str:
    outcome = engine.book_appointment(case_id, "evaluation", starts, actor=FRONT_DESK, clinician=clinician_of(case_id))
    return str(outcome.extra["appointment"])


def on(engine: Engine, day: date, **filters: object) -> list[str]:
    return [c.id for c in engine.case_page(appointment_on=day, limit=100, **filters).cases]  # type: ignore[arg-type]


def set_timers(engine: Engine, case_id: str, status: str, due: datetime | None = None) -> None:
    """Put every timer of the case in ``status`` (and due at ``due``): a worker's outcome, without a worker."""
    store = engine.app.store
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE timers SET status = :s, due_at = COALESCE(:d, due_at) WHERE case_id = :c"),
                     {"s": status, "c": case_id, "d": due.isoformat(timespec="microseconds") if due else None})


# ------------------------------------------------------------------ appointment on a day


def test_an_appointment_counts_on_its_day_in_the_practices_time_zone(ny: Engine, clock: FakeClock) -> None:
    evening = new_case(ny, clock, "Evening")  # 19:30 in New York on the 6th: 00:30 UTC on the 7th
    book(ny, evening, utc(7, 0, 30))
    late = new_case(ny, clock, "Late")  # 23:59 on the 6th
    book(ny, late, utc(7, 4, 59))
    night_before = new_case(ny, clock, "NightBefore")  # 22:00 on the 5th: 03:00 UTC on the 6th
    book(ny, night_before, utc(6, 3))
    next_day = new_case(ny, clock, "NextDay")  # 00:00 on the 7th
    book(ny, next_day, utc(7, 5))
    morning = new_case(ny, clock, "Morning")  # 00:00 on the 6th, and again at 09:00: listed once
    book(ny, morning, utc(6, 5))
    book(ny, morning, utc(6, 14))
    new_case(ny, clock, "NoAppointment")

    assert on(ny, DAY) == [evening, late, morning]
    assert on(ny, date(2026, 3, 5)) == [night_before]
    assert on(ny, date(2026, 3, 7)) == [next_day]
    assert on(ny, date(2026, 3, 4)) == []


def test_a_day_the_clocks_change_is_23_hours_long(ny: Engine, clock: FakeClock) -> None:
    """8 March 2026 in New York: 05:00 UTC to 04:00 UTC on the 9th (EDT from 02:00 local)."""
    before = new_case(ny, clock, "Before")
    book(ny, before, utc(9, 3, 30))  # 23:30 EDT on the 8th
    after = new_case(ny, clock, "After")
    book(ny, after, utc(9, 4, 30))  # 00:30 EDT on the 9th
    assert on(ny, date(2026, 3, 8)) == [before]
    assert on(ny, date(2026, 3, 9)) == [after]


def test_cancelled_and_rescheduled_appointments_leave_their_day(ny: Engine, clock: FakeClock) -> None:
    kept = new_case(ny, clock, "Kept")
    book(ny, kept, utc(6, 15))
    cancelled = new_case(ny, clock, "Cancelled")
    ny.cancel_appointment(cancelled, book(ny, cancelled, utc(6, 16)), actor=FRONT_DESK, reason="client asked")
    moved = new_case(ny, clock, "Moved")
    ny.reschedule_appointment(moved, book(ny, moved, utc(6, 17)), utc(10, 15), actor=FRONT_DESK, reason="clash")
    moved_in = new_case(ny, clock, "MovedIn")
    ny.reschedule_appointment(moved_in, book(ny, moved_in, utc(11, 15)), utc(6, 18), actor=FRONT_DESK,
                              reason="earlier")
    assert on(ny, DAY) == [kept, moved_in]
    assert on(ny, date(2026, 3, 10)) == [moved]
    assert on(ny, date(2026, 3, 11)) == []


def test_the_day_combines_with_state_and_workflow_and_pages_with_the_cursor(ny: Engine, clock: FakeClock) -> None:
    matching: list[str] = []
    for n in range(7):
        case_id = new_case(ny, clock, f"Paged-{n}")
        book(ny, case_id, utc(6, 14) + timedelta(minutes=n))
        matching.append(case_id)
        other = new_case(ny, clock, f"Other-{n}")  # opened in between, booked on another day
        book(ny, other, utc(9, 14) + timedelta(minutes=n))
    booked = matching[2]
    ny.fire(booked, "book_evaluation", actor=FRONT_DESK)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = ny.case_page(appointment_on=DAY, limit=3, cursor=cursor)
        seen += [c.id for c in page.cases]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == matching and pages == 3  # oldest first, each once: 3 + 3 + 1

    assert on(ny, DAY, state="evaluation_booked") == [booked]
    assert on(ny, DAY, state="inquiry") == [c for c in matching if c != booked]
    assert on(ny, DAY, state="inquiry", workflow="kap")[:2] == matching[:2]
    assert on(ny, DAY, workflow="psychotherapy") == []


def test_a_bad_day_or_flag_is_invalid_input(ny: Engine) -> None:
    for bad in ("2026-03-06", datetime(2026, 3, 6, tzinfo=UTC), 20260306):
        with pytest.raises(InvalidInput) as raised:
            ny.case_page(appointment_on=bad)  # type: ignore[arg-type]
        assert raised.value.field == "appointment_on"
    with pytest.raises(InvalidInput) as raised:
        ny.case_page(overdue="yes")  # type: ignore[arg-type]
    assert raised.value.field == "overdue"
    with pytest.raises(InvalidInput):
        ny.case_page(appointment_on=date.max)


# ------------------------------------------------------------------ overdue reminders


def test_a_pending_reminder_is_overdue_only_past_the_grace(engine: Engine, clock: FakeClock) -> None:
    assert timedelta(minutes=15) == OVERDUE_GRACE
    quiet = open_case(engine, last_name="Quiet")  # its first reminder is due in two days
    booked = open_case(engine, last_name="Booked")
    book(engine, booked, clock.now() + timedelta(days=30))  # the booking's notice is due now
    assert engine.case_page(overdue=True).cases == []
    clock.advance(minutes=15)  # the worker is down: nothing settles the notice
    assert engine.case_page(overdue=True).cases == []
    clock.advance(seconds=1)
    assert [c.id for c in engine.case_page(overdue=True).cases] == [booked]
    assert {c.id for c in engine.case_page().cases} == {quiet, booked}
    clock.advance(days=2, minutes=16)  # now the quiet case's reminder is late too
    assert [c.id for c in engine.case_page(overdue=True).cases] == sorted([quiet, booked])  # opened at one time


def test_missed_failed_and_stuck_claimed_timers_are_overdue_settled_ones_are_not(
    engine: Engine, clock: FakeClock
) -> None:
    ids = {name: open_case(engine, last_name=name) for name in
           ("Missed", "Failed", "Claimed", "Done", "Skipped", "Cancelled", "Undeliverable", "Pending")}
    for name in ("Missed", "Failed", "Done", "Skipped", "Cancelled", "Undeliverable"):
        set_timers(engine, ids[name], TimerStatus[name.upper()].value)
    set_timers(engine, ids["Claimed"], "claimed", clock.now() - timedelta(hours=1))  # retrying for an hour
    overdue = [c.id for c in engine.case_page(overdue=True).cases]
    assert overdue == sorted([ids["Missed"], ids["Failed"], ids["Claimed"]])  # opened at one time: by id


def test_overdue_combines_with_state_the_day_and_the_cursor(ny: Engine, clock: FakeClock) -> None:
    late = [new_case(ny, clock, f"Late-{n}") for n in range(5)]
    for case_id in late:
        set_timers(ny, case_id, "missed")
    on_time = new_case(ny, clock, "OnTime")
    for case_id in (late[1], late[3], on_time):
        book(ny, case_id, utc(6, 15))
    for case_id in (late[1], on_time):
        ny.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    # The booking's notice is due now, and no worker sends it: the day's only overdue reminders are the missed.
    assert [c.id for c in ny.case_page(overdue=True, appointment_on=DAY).cases] == [late[1], late[3]]
    assert [c.id for c in ny.case_page(overdue=True, appointment_on=DAY, state="inquiry").cases] == [late[3]]
    clock.advance(minutes=16)
    assert [c.id for c in ny.case_page(overdue=True, state="evaluation_booked").cases] == [late[1], on_time]

    first = ny.case_page(overdue=True, state="inquiry", limit=2)
    assert [c.id for c in first.cases] == [late[0], late[2]] and first.next_cursor
    second = ny.case_page(overdue=True, state="inquiry", limit=2, cursor=first.next_cursor)
    assert [c.id for c in second.cases] == [late[3], late[4]] and second.next_cursor
    assert ny.case_page(overdue=True, state="inquiry", limit=2, cursor=second.next_cursor).cases == []


# ------------------------------------------------------------------ the API and the console


@pytest.fixture
def api(ny: Engine) -> Iterator[tuple[str, str]]:
    key = ny.create_api_key("pms-front-desk", "front_desk", created_by="test-admin")[0]
    with serving(create_app(ny, RequestAuthenticator(ny))) as base:
        yield base, key


def test_the_api_filters_by_appointment_day_and_overdue(ny: Engine, clock: FakeClock, api: tuple[str, str]) -> None:
    base, key = api
    evening = new_case(ny, clock, "Evening")
    book(ny, evening, utc(7, 0, 30))  # 19:30 on the 6th in New York
    late = new_case(ny, clock, "Late")
    set_timers(ny, late, "failed")
    both = new_case(ny, clock, "Both")
    book(ny, both, utc(6, 15))
    set_timers(ny, both, "missed")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as desk:
        def listed(**params: str) -> list[str]:
            answer = desk.get("/v1/cases", params=params)
            assert answer.status_code == 200, answer.text
            return [c["id"] for c in answer.json()["cases"]]

        assert listed(appointment_on="2026-03-06") == [evening, both]
        assert listed(overdue="true") == [late, both]
        assert listed(appointment_on="2026-03-06", overdue="true") == [both]
        assert listed(appointment_on="2026-03-06", overdue="false", state="inquiry") == [evening, both]
        assert listed(appointment_on="2026-03-07") == []
        page = desk.get("/v1/cases", params={"appointment_on": "2026-03-06", "limit": 1}).json()
        assert [c["id"] for c in page["cases"]] == [evening]
        rest = desk.get("/v1/cases", params={"appointment_on": "2026-03-06", "cursor": page["next_cursor"]}).json()
        assert [c["id"] for c in rest["cases"]] == [both] and rest["next_cursor"] is None
        for bad in ("2026-02-30", "tomorrow", "06/03/2026"):
            answer = desk.get("/v1/cases", params={"appointment_on": bad})
            assert answer.status_code == 422, bad
            assert "appointment_on" in answer.text
        assert desk.get("/v1/cases", params={"overdue": "maybe"}).status_code == 422


@pytest.fixture
def console(ny: Engine) -> Iterator[Console]:
    with console_serving(ny) as served:
        yield served


def test_the_console_lists_cases_by_appointment_day_and_overdue(
    ny: Engine, clock: FakeClock, console: Console
) -> None:
    evening = new_case(ny, clock, "Client-Evening")
    book(ny, evening, utc(7, 0, 30))
    late = new_case(ny, clock, "Client-Late")
    set_timers(ny, late, "missed")
    both = new_case(ny, clock, "Client-Both")
    book(ny, both, utc(6, 15))
    set_timers(ny, both, "failed")
    with console.signed_in("desk-1") as b:
        form = b.get("/console/cases").text
        assert re.search(r'<label for="f-appointment-on">Appointment on</label>\s*'
                         r'<input id="f-appointment-on" name="appointment_on" type="date"', form)
        assert re.search(r'<label class="check" for="f-overdue"><input id="f-overdue" name="overdue" '
                         r'type="checkbox" value="true"\s*> Overdue reminders only</label>', form)

        by_day = b.get("/console/cases", params={"appointment_on": "2026-03-06"}).text
        assert "Client-Evening" in by_day and "Client-Both" in by_day and "Client-Late" not in by_day
        assert 'value="2026-03-06"' in by_day  # the form shows the filter it applied

        overdue = b.get("/console/cases", params={"overdue": "true"}).text
        assert "Client-Late" in overdue and "Client-Both" in overdue and "Client-Evening" not in overdue
        assert re.search(r'name="overdue" type="checkbox" value="true" checked', overdue)

        combined = b.get("/console/cases", params={"appointment_on": "2026-03-06", "overdue": "true",
                                                    "state": "inquiry"}).text
        assert "Client-Both" in combined and "Client-Late" not in combined and "Client-Evening" not in combined

        bad = b.get("/console/cases", params={"appointment_on": "not-a-date"})
        assert bad.status_code == 422 and "appointment_on" in bad.text


def test_the_consoles_next_page_keeps_the_new_filters(ny: Engine, clock: FakeClock, console: Console) -> None:
    from kapflow.http.console.pages import CASES_PAGE

    for n in range(CASES_PAGE + 1):
        case_id = open_case(ny, last_name=f"Client-{n:03d}")
        set_timers(ny, case_id, "missed")
        book(ny, case_id, utc(6, 15))
    with console.signed_in("desk-1") as b:
        first = b.get("/console/cases", params={"appointment_on": "2026-03-06", "overdue": "true"}).text
        link = re.search(r'href="([^"]+)" rel="next"', first)
        assert link is not None
        target = link.group(1).replace("&amp;", "&")
        assert "appointment_on=2026-03-06" in target and "overdue=true" in target and "cursor=" in target
        second = b.get(target).text
        assert second.count('data-label="Case"') == 1 and 'rel="next"' not in second
