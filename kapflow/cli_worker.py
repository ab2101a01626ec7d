"""The worker's commands: ``kapflow worker``, ``kapflow timers``, ``kapflow outbox``, and appointments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kapflow.bootstrap import build_dispatcher
from kapflow.cli import (
    EXIT_INPUT,
    ActorId,
    AsJson,
    CaseId,
    Key,
    Role,
    _console,
    _engine,
    _fail,
    _handled,
    _print_json,
    _print_outcome,
    _Settings,
    app,
)
from kapflow.domain.case import Actor
from kapflow.worker import Worker

appointment_app = typer.Typer(help="Book, reschedule, cancel appointments, mark no-shows.", no_args_is_help=True,
                              pretty_exceptions_enable=False)
app.add_typer(appointment_app, name="appointment")

When = Annotated[str, typer.Argument(help="Start time with a UTC offset, e.g. 2026-03-06T15:00:00-05:00.")]


@app.command("worker")
@_handled
def worker_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Handle everything due now, then exit.")] = False,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between polls.")] = None,
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="A name for this worker's leases.")] = None,
) -> None:
    """Send due reminders and deliver queued messages and calendar changes until stopped (SIGTERM/SIGINT)."""
    found = ctx.find_object(_Settings)
    assert found is not None
    engine = _engine(ctx)
    dispatcher = build_dispatcher(engine, found.settings, worker_id=worker_id)
    dispatcher.check()  # a bad SMTP host or CalDAV URL stops here, with what to fix
    if once:
        handled = dispatcher.run_until_idle()
        print(f"kapflow worker {dispatcher.worker_id}: handled {handled} timers and messages")
        return
    every = interval if interval is not None else found.settings.worker.interval_seconds
    if every <= 0:
        _fail("invalid_input: --interval must be a positive number of seconds", EXIT_INPUT)

    def started() -> None:
        print(f"kapflow worker {dispatcher.worker_id}: polling every {every:g}s; stop with Ctrl-C or SIGTERM",
              flush=True)

    Worker(dispatcher, interval=every).run(on_start=started)
    print(f"kapflow worker {dispatcher.worker_id}: stopped", flush=True)


@app.command("timers")
@_handled
def timers_command(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option("--case", help="Only this case's timers.")] = None,
    as_json: AsJson = False,
) -> None:
    """Reminders planned, sent, skipped, missed or cancelled, and why."""
    rows = _engine(ctx).store.queue().timers(case)
    if as_json:
        _print_json(list(rows))
        return
    table = Table("due (UTC)", "case", "reminder", "status", "outcome")
    for r in rows:
        table.add_row(r["due_at"][:16].replace("T", " "), r["case_id"], r["reminder"], r["status"],
                      Text(r["outcome"] or ""))
    _console().print(table)


@app.command("outbox")
@_handled
def outbox_command(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option("--case", help="Only this case's messages.")] = None,
    as_json: AsJson = False,
) -> None:
    """Messages and calendar changes: pending, sent, or given up (with the last error)."""
    rows = _engine(ctx).store.queue().outbox(case)
    if as_json:
        _print_json([{k: v for k, v in r.items() if k not in ("body", "payload")} for r in rows])
        return
    table = Table("created (UTC)", "case", "channel", "to", "status", "attempts", "last error")
    for r in rows:
        table.add_row(r["created_at"][:16].replace("T", " "), r["case_id"], r["channel"], r["audience"],
                      r["status"], str(r["attempts"]), Text(r["last_error"] or ""))
    _console().print(table)


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail("invalid_input: give the time as ISO 8601 with an offset, e.g. 2026-03-06T15:00:00-05:00", EXIT_INPUT)
    if moment.tzinfo is None:
        _fail("invalid_input: the time needs a UTC offset, e.g. -05:00 or +00:00", EXIT_INPUT)
    return moment


@appointment_app.command("book")
@_handled
def book_command(
    ctx: typer.Context, case_id: CaseId,
    kind: Annotated[str, typer.Argument(help="evaluation, intention_setting, kap_session, integration_session, ...")],
    starts_at: When, actor: ActorId, role: Role,
    minutes: Annotated[int | None, typer.Option("--minutes", help="Length, if not the kind's usual.")] = None,
    idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Book an appointment; its reminders and calendar event follow."""
    outcome = _engine(ctx).book_appointment(case_id, kind, _instant(starts_at), actor=Actor(actor, role),
                                            minutes=minutes, idempotency_key=idempotency_key)
    _print_outcome(outcome, as_json)


@appointment_app.command("reschedule")
@_handled
def reschedule_command(
    ctx: typer.Context, case_id: CaseId,
    appointment: Annotated[str, typer.Argument(help="The appointment id, e.g. a1.")],
    starts_at: When, actor: ActorId, role: Role, idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Move an appointment; its reminders and calendar event move with it."""
    outcome = _engine(ctx).reschedule_appointment(case_id, appointment, _instant(starts_at),
                                                  actor=Actor(actor, role), idempotency_key=idempotency_key)
    _print_outcome(outcome, as_json)


@appointment_app.command("cancel")
@_handled
def cancel_command(
    ctx: typer.Context, case_id: CaseId,
    appointment: Annotated[str, typer.Argument(help="The appointment id, e.g. a1.")],
    actor: ActorId, role: Role,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Cancel an appointment: its reminders stop and its calendar event is cancelled."""
    outcome = _engine(ctx).cancel_appointment(case_id, appointment, actor=Actor(actor, role), reason=reason,
                                              idempotency_key=idempotency_key)
    _print_outcome(outcome, as_json)


@appointment_app.command("no-show")
@_handled
def no_show_command(
    ctx: typer.Context, case_id: CaseId,
    appointment: Annotated[str, typer.Argument(help="The appointment id, e.g. a1.")],
    actor: ActorId, role: Role, idempotency_key: Key = None, as_json: AsJson = False,
) -> None:
    """Record that the client did not come."""
    outcome = _engine(ctx).mark_no_show(case_id, appointment, actor=Actor(actor, role),
                                        idempotency_key=idempotency_key)
    _print_outcome(outcome, as_json)
