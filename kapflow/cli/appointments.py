"""Appointments: ``kapflow appointment book``, ``reschedule``, ``cancel``, ``no-show``.

The kinds of appointment and the facts that carry them are the case's
workflow's (``Workflow.appointments``); a workflow that books none says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from kapflow.cli.common import ActorId, AsJson, CaseId, Key, Role, engine, group, handled
from kapflow.cli.render import print_outcome
from kapflow.domain.case import Actor
from kapflow.errors import InvalidInput

commands = typer.Typer()
appointment_app = group("Book, reschedule, cancel appointments, mark no-shows.")
commands.add_typer(appointment_app, name="appointment")

When = Annotated[str, typer.Argument(help="Start time with a UTC offset, e.g. 2026-03-06T15:00:00-05:00.")]
AppointmentId = Annotated[str, typer.Argument(help="The appointment id, e.g. a1.")]


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("give the time as ISO 8601 with an offset, e.g. 2026-03-06T15:00:00-05:00",
                           field="starts_at") from None
    if moment.tzinfo is None:
        raise InvalidInput("the time needs a UTC offset, e.g. -05:00 or +00:00", field="starts_at")
    return moment


@appointment_app.command("book")
@handled
def book_command(
    ctx: typer.Context, case_id: CaseId,
    kind: Annotated[str, typer.Argument(help="The kind of appointment, one the case's workflow books.")],
    starts_at: When, actor: ActorId, role: Role,
    minutes: Annotated[int | None, typer.Option("--minutes", help="Length, if not the kind's usual.")] = None,
    idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Book an appointment; its reminders and calendar event follow."""
    outcome = engine(ctx).book_appointment(case_id, kind, _instant(starts_at), actor=Actor(actor, role),
                                           minutes=minutes, idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)


@appointment_app.command("reschedule")
@handled
def reschedule_command(
    ctx: typer.Context, case_id: CaseId, appointment: AppointmentId,
    starts_at: When, actor: ActorId, role: Role, idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Move an appointment; its reminders and calendar event move with it."""
    outcome = engine(ctx).reschedule_appointment(case_id, appointment, _instant(starts_at),
                                                 actor=Actor(actor, role), idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)


@appointment_app.command("cancel")
@handled
def cancel_command(
    ctx: typer.Context, case_id: CaseId, appointment: AppointmentId, actor: ActorId, role: Role,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Cancel an appointment: its reminders stop and its calendar event is cancelled."""
    outcome = engine(ctx).cancel_appointment(case_id, appointment, actor=Actor(actor, role), reason=reason,
                                             idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)


@appointment_app.command("no-show")
@handled
def no_show_command(
    ctx: typer.Context, case_id: CaseId, appointment: AppointmentId,
    actor: ActorId, role: Role, idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Record that the client did not come."""
    outcome = engine(ctx).mark_no_show(case_id, appointment, actor=Actor(actor, role),
                                       idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)
