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


_NOTICES = (
    ("booked", "Appointment booked",
     "Hello {first_name}, your appointment is booked for {starts_at}, in person at the practice."),
    ("moved", "Appointment moved",
     "Hello {first_name}, your appointment has moved: it is now on {starts_at}, in person at the practice. "
     "Earlier reminders of it no longer apply."),
    ("cancelled", "Appointment cancelled",
     "Hello {first_name}, your appointment on {starts_at} is cancelled. Contact the practice to book "
     "another time if you need one."),
)


def appointment_notices() -> tuple[Reminder, ...]:
    """The client's notices, at once, when any appointment is booked, moved or cancelled.

    A client told of a time always hears of its change: a confirmation for every booking, the new
    time for every move, and every cancellation (by the practice, or when the case closes).
    """
    return tuple(
        Reminder(f"appointment_{event}_notice", CLIENT, "email", template, on_appointment=event, subject=subject)
        for event, subject, template in _NOTICES
    )


def not_booked_prompts(
    name: str, staff: str, after: timedelta, guard: str, *, client_text: str, staff_text: str, staff_subject: str
) -> tuple[Reminder, Reminder]:
    """The client's and ``staff``'s prompts when ``guard`` (an appointment booked) still blocks ``after``
    entering the state: ``{name}_client`` to the client, ``name`` to staff; skipped once it is booked."""
    return (
        Reminder(f"{name}_client", CLIENT, "email", client_text, after=after, while_blocked_by=guard,
                 subject="Time to book your next session"),
        Reminder(name, staff, "email", staff_text, after=after, while_blocked_by=guard, subject=staff_subject),
    )
