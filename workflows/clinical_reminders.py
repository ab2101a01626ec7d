"""Reminders every clinical pathway of the practice sends with the same wording and timing."""

from __future__ import annotations

from datetime import timedelta

from kapflow.domain.workflow import Reminder

CLIENT, FRONT_DESK = "client", "front_desk"
APPOINTMENT_LEADS_HOURS = (72, 24)


def appointment_reminders(kind: str) -> tuple[Reminder, ...]:
    """The client's reminders of an appointment of ``kind``: 72 and 24 hours before it."""
    return tuple(
        Reminder(
            f"{kind}_reminder_{hours}h", CLIENT, "email",
            "Hello {first_name}, this is a reminder of your appointment on {starts_at}, in person at the practice.",
            before_appointment=timedelta(hours=hours), appointment_kind=kind, subject="Appointment reminder",
        )
        for hours in APPOINTMENT_LEADS_HOURS
    )


def inquiry_unanswered() -> Reminder:
    """The front desk's alert when an inquiry has waited 2 business days for an answer."""
    return Reminder(
        "inquiry_unanswered", FRONT_DESK, "email",
        "An inquiry has waited 2 business days for an answer.",
        after=timedelta(days=2), business_days=True, subject="kapflow: inquiry waiting for an answer",
    )
