"""Turning a due reminder into messages: who receives it, at which address, saying what.

Messages carry the minimum: templates may name an appointment's kind and
time and the intake fields the workflow allows in messages (``ClientFields.
in_messages``, such as a first name), never a diagnosis, a score or a note.
Clients are reached at the address their intake gives for the channel
(``ClientFields.addresses``); staff roles at the addresses the practice
configures (``contacts``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kapflow.domain.appointments import Appointment
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts
from kapflow.domain.effects import OutboxMessage
from kapflow.domain.entries import to_iso
from kapflow.domain.errors import InvalidInput
from kapflow.domain.workflow import ClientFields, Reminder

Contacts = Mapping[str, Mapping[str, str]]
"""Role -> channel -> address, for the practice's staff (``{"front_desk": {"email": "desk@..."}}``)."""

def practice_timezone(name: str) -> ZoneInfo:
    """The practice's time zone (reminders show local times), or a clear error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as America/New_York", field="timezone"
        ) from None


class _Blank(dict[str, str]):
    """Leaves unknown template fields visible instead of failing at send time."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


CLIENT = "client"
"""The audience a reminder names to reach the case's own client (every other audience is a staff role)."""


def route(
    audience: str, channel: str, facts: CaseFacts, contacts: Contacts, intake_kind: str, client: ClientFields,
    deliverable: Collection[str] | None = None,
) -> tuple[str, str] | None:
    """Where a reminder for ``audience`` goes: (channel, address), or None when no address is known.

    The client: on the channel their intake says they prefer, when they gave an address for it
    (and the practice delivers on it), else on the reminder's channel. Staff: on the reminder's
    channel if the practice gave the role an address there, else on the first channel it did
    (a practice may alert its front desk by webhook only). ``deliverable``: the channels the
    practice's worker can send on (None: any).
    """
    def usable(name: str) -> bool:
        return deliverable is None or name in deliverable

    if audience == CLIENT:
        intake = facts.latest(intake_kind)
        if intake is None:
            return None
        preferred = str(intake.data.get(client.preference) or "") if client.preference else ""
        for name in (preferred, channel):
            address = intake.data.get(client.addresses.get(name, "")) if name and usable(name) else None
            if address:
                return name, str(address)
        return None
    addresses = contacts.get(audience, {})
    for name in (channel, *addresses):
        if name in addresses and usable(name):
            return name, addresses[name]
    return None


def render(
    text: str, appointment: Appointment | None, facts: CaseFacts, intake_kind: str, client: ClientFields,
    cal: PracticeCalendar,
) -> str:
    intake = facts.latest(intake_kind)
    values = _Blank({name: str(intake.data.get(name) or "") if intake else "" for name in client.in_messages})
    if appointment is not None:
        values["starts_at"] = cal.long_text(appointment.starts_at)
        values["kind"] = appointment.kind.replace("_", " ")
    return text.format_map(values)




def reminder_message(
    reminder: Reminder,
    *,
    timer_key: str,
    case_id: str,
    channel: str,
    address: str,
    appointment: Appointment | None,
    facts: CaseFacts,
    intake_kind: str,
    client: ClientFields,
    cal: PracticeCalendar,
    console_url: str | None = None,
    deadline: datetime | None = None,
) -> OutboxMessage:
    """The message of a due reminder on ``channel``; staff alerts say which case (never what is in it)."""
    body = render(reminder.template, appointment, facts, intake_kind, client, cal)
    if reminder.audience != CLIENT:
        body += f"\n\nCase: {case_id}"
        if console_url:
            body += f"\n{case_link(console_url, case_id)}"
    return OutboxMessage(
        key=f"{timer_key}:{channel}",
        case_id=case_id,
        channel=channel,
        audience=reminder.audience,
        recipient=address,
        subject=render(reminder.subject, appointment, facts, intake_kind, client, cal),
        body=body,
        payload=message_payload(reminder.name, timer_key, appointment if reminder.about_appointment else None,
                                deadline),
    )


def message_payload(
    reminder: str, timer_key: str, appointment: Appointment | None, deadline: datetime | None
) -> dict[str, str | int]:
    """What the worker checks before each delivery attempt: the appointment the message speaks of (as
    it was: its id and change count) and the moment after which it is worth nothing."""
    payload: dict[str, str | int] = {"reminder": reminder, "timer": timer_key}
    if appointment is not None:
        payload |= {"appointment": appointment.id, "sequence": appointment.sequence}
    if deadline is not None:
        payload["deadline"] = to_iso(deadline)
    return payload


def stale_reason(payload: Mapping[str, object], appointment: Appointment | None, now: datetime) -> str | None:
    """Why a queued message must not go out now (its appointment changed since, or its deadline passed),
    or None. The reason is for the audit history: it names no client and no treatment."""
    deadline = payload.get("deadline")
    if deadline is not None and now >= datetime.fromisoformat(str(deadline)):
        return f"its deadline passed ({deadline}): the appointment had started"
    if "appointment" in payload:
        if appointment is None:
            return f"appointment {payload['appointment']} no longer exists"
        if appointment.sequence != payload.get("sequence"):
            what = "cancelled" if appointment.status == "cancelled" else f"changed ({appointment.status})"
            return f"appointment {appointment.id} was {what} after the message was queued"
    return None


def case_link(console_url: str, case_id: str) -> str:
    """The console's page of a case: the case's id in the path, nothing else about it."""
    return f"{console_url.rstrip('/')}/cases/{case_id}"


def missed_step_message(
    *, timer_key: str, case_id: str, channel: str, audience: str, address: str, step: str, due: str,
    console_url: str | None,
) -> OutboxMessage:
    """The alert that an automatic step was not taken in time (the worker was down): staff act now."""
    body = (f"The automatic step '{step}' was due at {due} and was not taken: the worker was not running "
            f"in time. The case waits for a person: check it and do the step by hand if it still applies."
            f"\n\nCase: {case_id}")
    if console_url:
        body += f"\n{case_link(console_url, case_id)}"
    return OutboxMessage(
        key=f"{timer_key}:missed:{channel}", case_id=case_id, channel=channel, audience=audience,
        recipient=address, subject="kapflow: an automatic step was missed", body=body,
        payload={"timer": timer_key, "missed_step": step},
    )
