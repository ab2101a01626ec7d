"""Where a due reminder goes: the client's preferred channel, the practice's channel for staff, the case named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, fold_fact
from kapflow.domain.messages import CLIENT, reminder_message, route
from kapflow.domain.workflow import Reminder
from kapflow.workflows.clinical_facts import INQUIRY_CLIENT

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
DESK = {"front_desk": {"webhook": "https://pms.practice.example/hooks/kapflow"}}


def _intake(**fields: object) -> CaseFacts:
    data = {"first_name": "Sample", "email": "sample@example.org", "phone": "+1 555 010 0101", **fields}
    return CaseFacts(fold_fact({"facts": [], "moves": []}, "inquiry", T0, "tester", data))


def _route(audience: str, facts: CaseFacts, deliverable: frozenset[str] | None = None) -> tuple[str, str] | None:
    return route(audience, "email", facts, DESK, "inquiry", INQUIRY_CLIENT, deliverable)


def test_a_client_who_prefers_sms_gets_an_sms() -> None:
    """A reminder written for email goes by SMS to a client whose intake prefers SMS and gives a phone."""
    assert _route(CLIENT, _intake(preferred_contact="sms")) == ("sms", "+1 555 010 0101")


def test_the_reminders_channel_when_the_preference_cannot_be_used() -> None:
    """No phone given, a preference with no channel (a call), or SMS not delivered here: the reminder's email."""
    email = ("email", "sample@example.org")
    assert _route(CLIENT, _intake(preferred_contact="sms", phone=None)) == email
    assert _route(CLIENT, _intake(preferred_contact="phone")) == email
    assert _route(CLIENT, _intake(preferred_contact="sms"), frozenset({"email", "webhook"})) == email
    assert _route(CLIENT, _intake(preferred_contact="sms", email=None), frozenset({"email"})) is None


def test_staff_get_the_channel_the_practice_configured() -> None:
    """A front desk reached only by webhook gets its email-channel alerts by webhook; an unknown role nothing."""
    assert _route("front_desk", _intake()) == ("webhook", DESK["front_desk"]["webhook"])
    assert _route("therapist", _intake()) is None


def _message(audience: str, console_url: str | None) -> str:
    reminder = Reminder("r", audience, "email", "Hello {first_name}.", after=timedelta(days=1))
    return reminder_message(
        reminder, timer_key="case-1:m1:r", case_id="case-1", channel="email", address="x@example.org",
        appointment=None, facts=_intake(), intake_kind="inquiry", client=INQUIRY_CLIENT,
        cal=PracticeCalendar(ZoneInfo("UTC")),
        console_url=console_url,
    ).body


def test_staff_alerts_name_the_case_and_link_to_it() -> None:
    """A staff alert ends with the case's id (and its console page when configured); a client's does not."""
    assert _message("front_desk", None).endswith("\n\nCase: case-1")
    assert _message("front_desk", "https://kapflow.practice.example/").endswith(
        "Case: case-1\nhttps://kapflow.practice.example/cases/case-1"
    )
    assert "case-1" not in _message(CLIENT, "https://kapflow.practice.example")
