"""Appointments: ``kapflow appointment list``, ``book``, ``reschedule``, ``cancel``, ``no-show``.

The kinds of appointment and the facts that carry them are the case's
workflow's (``Workflow.appointments``); a workflow that books none says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from kapflow.cli.common import (
    ActorId,
    AsJson,
    CaseId,
    Key,
    Role,
    acting,
    cell,
    console,
    engine,
    group,
    handled,
    print_json,
    reader,
)
from kapflow.cli.render import print_outcome
from kapflow.errors import InvalidInput
from kapflow.present import appointment_shape

commands = typer.Typer()
appointment_app = group("List, book, reschedule, cancel appointments, mark no-shows.")
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


@appointment_app.command("list")
@handled
def list_command(ctx: typer.Context, case_id: CaseId, as_json: AsJson = False) -> None:
    """A case's appointments in booking order: id, kind, start, length and status."""
    shapes = [appointment_shape(a) for a in reader(ctx).appointments(case_id)]
    if as_json:
        print_json(shapes)
        return
    table = Table("id", "kind", "starts (UTC)", "minutes", "status", box=box.SIMPLE_HEAD, pad_edge=False)
    for a in shapes:
        table.add_row(*(cell(str(a[k])) for k in ("id", "kind")), cell(str(a["starts_at"])[:16].replace("T", " ")),
                      cell(str(a["minutes"])), cell(str(a["status"])))
    console().print(table if shapes else Text("no appointments"))


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
    outcome = engine(ctx).book_appointment(case_id, kind, _instant(starts_at), actor=acting(actor, role),
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
                                                 actor=acting(actor, role), idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)


@appointment_app.command("cancel")
@handled
def cancel_command(
    ctx: typer.Context, case_id: CaseId, appointment: AppointmentId, actor: ActorId, role: Role,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Cancel an appointment: its reminders stop and its calendar event is cancelled."""
    outcome = engine(ctx).cancel_appointment(case_id, appointment, actor=acting(actor, role), reason=reason,
                                             idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)


@appointment_app.command("no-show")
@handled
def no_show_command(
    ctx: typer.Context, case_id: CaseId, appointment: AppointmentId,
    actor: ActorId, role: Role, idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Record that the client did not come."""
    outcome = engine(ctx).mark_no_show(case_id, appointment, actor=acting(actor, role),
                                       idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)
