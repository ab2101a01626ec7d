"""Turning a due reminder into messages: who receives it, at which address, saying what.

Messages carry the minimum: templates may name an appointment's kind and
time and the intake fields the workflow allows in messages (``ClientFields.
in_messages``, such as a first name), never a diagnosis, a score or a note.
Clients are reached at the address their intake gives for the channel
(``ClientFields.addresses``); staff roles at the addresses the practice
configures (``contacts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kapflow.domain.appointments import Appointment
from kapflow.domain.case import CaseFacts
from kapflow.domain.effects import OutboxMessage
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


def recipient(
    audience: str, channel: str, facts: CaseFacts, contacts: Contacts, intake_kind: str, client: ClientFields
) -> str | None:
    """The address of ``audience`` on ``channel``, or None when none is known."""
    if audience == CLIENT:
        intake = facts.latest(intake_kind)
        field = client.addresses.get(channel)
        value = intake.data.get(field) if intake and field else None
        return str(value) if value else None
    return contacts.get(audience, {}).get(channel)


def render(
    text: str, appointment: Appointment | None, facts: CaseFacts, intake_kind: str, client: ClientFields,
    tz: ZoneInfo,
) -> str:
    intake = facts.latest(intake_kind)
    values = _Blank({name: str(intake.data.get(name) or "") if intake else "" for name in client.in_messages})
    if appointment is not None:
        values["starts_at"] = _when(appointment.starts_at, tz)
        values["kind"] = appointment.kind.replace("_", " ")
    return text.format_map(values)


def _when(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local:%A %d %B %Y at %H:%M} ({tz.key})"


def reminder_message(
    reminder: Reminder,
    *,
    timer_key: str,
    case_id: str,
    address: str,
    appointment: Appointment | None,
    facts: CaseFacts,
    intake_kind: str,
    client: ClientFields,
    tz: ZoneInfo,
) -> OutboxMessage:
    return OutboxMessage(
        key=f"{timer_key}:{reminder.channel}",
        case_id=case_id,
        channel=reminder.channel,
        audience=reminder.audience,
        recipient=address,
        subject=render(reminder.subject, appointment, facts, intake_kind, client, tz),
        body=render(reminder.template, appointment, facts, intake_kind, client, tz),
        payload={"reminder": reminder.name, "timer": timer_key},
    )
