"""The worker routes reminders as the practice lives them: SMS to clients who prefer it, the case named to staff."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from support import FRONT_DESK, INQUIRY, who

from kapflow.config import parse_settings
from kapflow.errors import ConfigError
from kapflow.testing import ReminderKit

DESK = {"front_desk": {"email": "desk@practice.example"}}


def test_a_client_who_prefers_sms_gets_the_appointment_reminders_by_sms(tmp_path: Path) -> None:
    """The evaluation's reminders reach the phone of a client whose inquiry says they prefer SMS."""
    kit = ReminderKit(tmp_path, contacts=DESK)
    try:
        case_id = kit.engine.open_case({**INQUIRY, "preferred_contact": "sms"}, actor=FRONT_DESK).case_id
        kit.engine.book_appointment(case_id, "evaluation", kit.clock.now() + timedelta(days=5), actor=FRONT_DESK,
                                    **who(case_id))
        kit.engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
        kit.advance(days=5)
        to_client = [m for m in [*kit.email.sent, *kit.sms.sent] if m.audience == "client"]
        assert to_client and all(m.channel == "sms" and m.recipient == INQUIRY["phone"] for m in to_client)
    finally:
        kit.close()


def test_the_front_desks_alert_says_which_case(tmp_path: Path) -> None:
    """An inquiry left unanswered alerts the desk with the case's reference, and nothing of the client."""
    kit = ReminderKit(tmp_path, contacts=DESK)
    try:
        case_id = kit.engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
        kit.advance(days=4)
        (alert,) = [m for m in kit.email.sent if m.audience == "front_desk"]
        assert f"Case: {case_id}" in alert.body
        assert all(str(v) not in alert.body for v in (INQUIRY["first_name"], INQUIRY["email"], INQUIRY["phone"]))
    finally:
        kit.close()


def test_the_console_url_must_be_https() -> None:
    """The console's base URL (for alert links) is https, or http on this machine only."""
    assert parse_settings({"console_url": "https://kapflow.practice.example"}, "t", {}).console_url
    assert parse_settings({"console_url": "http://127.0.0.1:8000"}, "t", {}).console_url
    with pytest.raises(ConfigError, match="console_url must be an https URL"):
        parse_settings({"console_url": "http://kapflow.practice.example"}, "t", {})
