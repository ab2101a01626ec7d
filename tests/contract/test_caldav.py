"""CalDAVCalendar beyond the contract, against Radicale: where the calendar lives, what servers refusing look like."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from caldav.davclient import DAVClient
from contract.servers import HttpRecorder, RadicaleServer, free_port

from kapflow.adapters.calendar.caldav import CalDAVCalendar
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import CalendarEvent

USER, PASSWORD = "practice", "synthetic-S3CRET"
START = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)


def evaluation(uid: str | None = None) -> CalendarEvent:
    return CalendarEvent(
        uid=uid or f"case-{uuid.uuid4().hex[:8]}-a1@kapflow",
        summary="Prescriber evaluation (in person)",
        starts_at=START,
        ends_at=START + timedelta(minutes=60),
        alarms=(timedelta(hours=24),),
    )


@pytest.fixture
def name() -> str:
    return f"kap-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(radicale: RadicaleServer) -> Iterator[DAVClient]:
    with DAVClient(url=radicale.url, username=USER, password=PASSWORD, enable_rfc6764=False) as client:
        yield client


def collection(radicale: RadicaleServer, name: str) -> str:
    return f"{radicale.url}{USER}/{name}/"


def test_check_creates_the_calendar_under_the_user(radicale: RadicaleServer, client: DAVClient, name: str) -> None:
    """The calendar appears at /<user>/<calendar>/, named as configured."""
    CalDAVCalendar(radicale.url, USER, PASSWORD, name).check()
    calendar = client.calendar(url=collection(radicale, name))
    assert calendar.get_display_name() == name


def test_check_finds_an_existing_calendar_by_display_name(radicale: RadicaleServer, client: DAVClient) -> None:
    """A calendar the practice made in its own client, under another id, is used rather than duplicated."""
    display = f"Practice {uuid.uuid4().hex[:6]}"
    client.principal().make_calendar(name=display, cal_id=f"made-elsewhere-{uuid.uuid4().hex[:6]}")
    before = len(client.principal().get_calendars())
    kap = CalDAVCalendar(radicale.url, USER, PASSWORD, display)
    kap.check()
    event = evaluation()
    kap.upsert(event)
    assert len(client.principal().get_calendars()) == before
    [found] = client.principal().calendar(name=display).get_events()
    assert found.id == event.uid


def test_events_are_stored_as_written(radicale: RadicaleServer, client: DAVClient, name: str) -> None:
    """The server holds UTC times, the SEQUENCE kapflow chose (not caldav's increment) and the status."""
    kap = CalDAVCalendar(radicale.url, USER, PASSWORD, name)
    event = evaluation()
    kap.upsert(event)
    kap.cancel(event.uid)
    [stored] = client.calendar(url=collection(radicale, name)).get_events()
    text = stored.data
    assert "DTSTART:20260202T150000Z" in text and "DTEND:20260202T160000Z" in text
    assert "SEQUENCE:1" in text and "STATUS:CANCELLED" in text and "TRIGGER:-P1D" in text


def test_an_event_written_by_another_client_is_updated_in_place(
    radicale: RadicaleServer, client: DAVClient, name: str
) -> None:
    """Same UID, a resource name kapflow would not choose: the update rewrites that resource."""
    kap = CalDAVCalendar(radicale.url, USER, PASSWORD, name)
    kap.check()
    uid = f"case-{uuid.uuid4().hex[:8]}-a1@kapflow"
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260202T150000Z\r\nDTEND:20260202T160000Z\r\n"
        "SUMMARY:Booked elsewhere\r\nSEQUENCE:5\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    response = client.put(f"{collection(radicale, name)}other-name.ics", ics, {"Content-Type": "text/calendar"})
    assert response.status in (201, 204)
    kap.upsert(evaluation(uid))
    events = client.calendar(url=collection(radicale, name)).get_events()
    assert [str(e.url).rsplit("/", 1)[1] for e in events] == ["other-name.ics"]
    stored = kap.get(uid)
    assert stored is not None and stored.summary == "Prescriber evaluation (in person)" and stored.sequence == 6


@pytest.mark.parametrize(
    ("path", "says"),
    [("/status/403/", "refused access"), ("/status/404/", "nothing at that URL"), ("/", "CalDAV server")],
)
def test_check_explains_a_refusing_server(http_recorder: HttpRecorder, path: str, says: str) -> None:
    """403, 404 and a plain web server each give a sentence, and never the password."""
    with pytest.raises(AdapterConfigError) as caught:
        CalDAVCalendar(http_recorder.base_url + path, USER, PASSWORD, "kap", timeout=30).check()
    assert says in str(caught.value)
    assert "S3CRET" not in str(caught.value)


def test_check_explains_connection_refused() -> None:
    with pytest.raises(AdapterConfigError, match="cannot be reached"):
        CalDAVCalendar(f"http://127.0.0.1:{free_port()}/", USER, PASSWORD, "kap", timeout=30).check()


def test_writes_after_the_server_went_down_fail_transiently(tmp_path: Path, name: str) -> None:
    """Checked while its server was up, written after it stopped: DeliveryFailed, to retry later."""
    server = RadicaleServer(tmp_path)
    server.start()
    try:
        kap = CalDAVCalendar(server.url, USER, PASSWORD, name, timeout=30)
        kap.check()
    finally:
        server.stop()
    for write in (lambda: kap.upsert(evaluation()), lambda: kap.cancel("any@kapflow"), lambda: kap.get("x")):
        with pytest.raises(DeliveryFailed) as caught:
            write()
        assert caught.value.permanent is False and caught.value.channel == "calendar"


@pytest.mark.parametrize(("status", "permanent"), [(403, False), (404, False), (400, True), (500, False)])
def test_refusals_at_write_time(http_recorder: HttpRecorder, status: int, permanent: bool) -> None:
    """Access problems and server errors are retried; a 400 for the content is not."""
    kap = CalDAVCalendar(f"{http_recorder.base_url}/status/{status}/", USER, PASSWORD, "kap", timeout=30)
    with pytest.raises(DeliveryFailed) as caught:
        kap.upsert(evaluation())
    assert caught.value.permanent is permanent
    assert str(status) in caught.value.reason and "S3CRET" not in str(caught.value)
