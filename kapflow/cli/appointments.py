"""Appointments: ``kapflow appointment list``, ``book``, ``reschedule``, ``cancel``, ``no-show``.

The kinds of appointment and the facts that carry them are the case's
workflow's (``Workflow.appointments``); a workflow that books none says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from kapflow.app.engine import Engine
from kapflow.cli.common import (
    ActorId,
    AsJson,
    CaseId,
    InUtc,
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
    shown_calendar,
    time_text,
)
from kapflow.cli.render import print_outcome
from kapflow.domain.appointments import AppointmentFacts
from kapflow.errors import InvalidInput
from kapflow.present import appointment_shape

commands = typer.Typer()
appointment_app = group("List, book, reschedule, cancel appointments, mark no-shows.")
commands.add_typer(appointment_app, name="appointment")

When = Annotated[str, typer.Argument(help="Start time with a UTC offset, e.g. 2026-03-06T15:00:00-05:00.")]
AppointmentId = Annotated[str, typer.Argument(help="The appointment id, e.g. a1.")]
LateEntry = Annotated[bool, typer.Option(
    "--late-entry", help="Record a time already past (after the fact); needs --reason. Audited.")]
Reason = Annotated[str | None, typer.Option("--reason", help="Why; required with --late-entry.")]
Clinician = Annotated[str | None, typer.Option(
    "--clinician", help="The clinician's id (required), e.g. dr-lee: held for the appointment's time.")]
Room = Annotated[str | None, typer.Option(
    "--room", help="The room's id, e.g. room-2 (required for the kinds that take a room): held for its time.")]


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
def list_command(ctx: typer.Context, case_id: CaseId, as_json: AsJson = False, utc: InUtc = False) -> None:
    """A case's appointments in booking order: id, kind, start, length, status, clinician and room."""
    built = reader(ctx)
    shapes = [appointment_shape(a) for a in built.appointments(case_id)]
    if as_json:
        print_json(shapes)
        return
    shown = shown_calendar(built, utc)
    table = Table("id", "kind", "starts", "minutes", "status", "with", box=box.SIMPLE_HEAD, pad_edge=False)
    for a in shapes:
        where = "\n".join(str(a[k]) for k in ("clinician", "room") if a[k])
        table.add_row(*(cell(str(a[k])) for k in ("id", "kind")), cell(time_text(shown, str(a["starts_at"]))),
                      cell(str(a["minutes"])), cell(str(a["status"])), cell(where))
    console().print(table if shapes else Text("no appointments"))


def _carriers(eng: Engine, case_id: str) -> AppointmentFacts:
    """The fact kinds that carry the case's appointments (a late entry is recorded as such a fact)."""
    wf = eng.workflow_of(eng.case(case_id))
    if wf.appointments is None:
        raise InvalidInput(f"workflow {wf.name!r} books no appointments", field="kind")
    return wf.appointments


@appointment_app.command("book")
@handled
def book_command(
    ctx: typer.Context, case_id: CaseId,
    kind: Annotated[str, typer.Argument(help="The kind of appointment, one the case's workflow books.")],
    starts_at: When, actor: ActorId, role: Role,
    clinician: Clinician = None, room: Room = None,
    minutes: Annotated[int | None, typer.Option("--minutes", help="Length, if not the kind's usual.")] = None,
    late_entry: LateEntry = False, reason: Reason = None,
    idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Book an appointment with a clinician (and a room, where its kind takes one); its reminders and calendar
    event follow. A clinician or room already booked at an overlapping time refuses it, saying when.
    A past time needs --late-entry."""
    eng = engine(ctx)
    if not late_entry and reason is None:
        outcome = eng.book_appointment(case_id, kind, _instant(starts_at), actor=acting(actor, role),
                                       clinician=clinician, room=room, minutes=minutes,
                                       idempotency_key=idempotency_key)
    else:
        data: dict[str, Any] = {"kind": kind, "starts_at": _instant(starts_at).isoformat(),
                                "late_entry": late_entry, "reason": reason}
        for name, value in (("clinician", clinician), ("room", room), ("minutes", minutes)):
            if value is not None:
                data[name] = value
        outcome = eng.record(case_id, _carriers(eng, case_id).booking, data, actor=acting(actor, role),
                             idempotency_key=idempotency_key)
    print_outcome(outcome, as_json)


@appointment_app.command("reschedule")
@handled
def reschedule_command(
    ctx: typer.Context, case_id: CaseId, appointment: AppointmentId,
    starts_at: When, actor: ActorId, role: Role, late_entry: LateEntry = False, reason: Reason = None,
    idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Move an appointment; its reminders and calendar event move with it. A past time needs --late-entry."""
    eng = engine(ctx)
    if not late_entry:
        outcome = eng.reschedule_appointment(case_id, appointment, _instant(starts_at), actor=acting(actor, role),
                                             reason=reason, idempotency_key=idempotency_key)
    else:
        data = {"appointment": appointment, "action": "reschedule", "starts_at": _instant(starts_at).isoformat(),
                "late_entry": True, "reason": reason}
        outcome = eng.record(case_id, _carriers(eng, case_id).update, data, actor=acting(actor, role),
                             idempotency_key=idempotency_key)
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
