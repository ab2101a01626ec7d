"""The worker and what it works on: ``kapflow worker``, ``kapflow timers``, ``kapflow outbox``."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from kapflow.bootstrap import build_checkpointer, build_dispatcher
from kapflow.cli.common import (
    AsJson,
    InUtc,
    cell,
    console,
    engine,
    handled,
    narrow,
    print_json,
    reader,
    settings_of,
    shown_calendar,
    stacked_time,
    time_text,
)
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.events import TimerStatus
from kapflow.errors import InvalidInput
from kapflow.logging import logging_configured
from kapflow.present import outbox_shape, timer_shape
from kapflow.worker import Worker

commands = typer.Typer()


@commands.command("worker")
@handled
def worker_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Handle everything due now, then exit.")] = False,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between polls.")] = None,
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="A name for this worker's leases.")] = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log lines as JSON (for a log collector).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log warnings and errors only.")] = False,
) -> None:
    """Send due reminders and deliver queued messages and calendar changes until stopped (SIGTERM/SIGINT).

    Logs a line per delivery and per failure (message key, channel, outcome: never a client's details)
    and a summary every minute, on stderr.
    """
    with logging_configured(json=log_json, level=logging.WARNING if quiet else logging.INFO):
        _work(ctx, once=once, interval=interval, worker_id=worker_id)


def _work(ctx: typer.Context, *, once: bool, interval: float | None, worker_id: str | None) -> None:
    settings = settings_of(ctx).settings
    built = engine(ctx)
    dispatcher = build_dispatcher(built, settings, worker_id=worker_id)
    dispatcher.check()  # a bad SMTP host or CalDAV URL stops here, with what to fix
    if once:
        handled_count = dispatcher.run_until_idle()
        print(f"kapflow worker {dispatcher.worker_id}: handled {handled_count} timers and messages")
        return
    every = interval if interval is not None else settings.worker.interval_seconds
    if every <= 0:
        raise InvalidInput("--interval must be a positive number of seconds", field="interval")

    def started() -> None:
        print(f"kapflow worker {dispatcher.worker_id}: polling every {every:g}s; stop with Ctrl-C or SIGTERM",
              flush=True)

    checkpointer = build_checkpointer(built, settings)
    if checkpointer is None:
        # On stderr: stdout's first line says the worker has started (scripts and the crash tests wait for it).
        print("kapflow worker: no audit signing key configured: the audit log grows but no checkpoint is signed "
              "(kapflow audit keygen; docs/audit.md)", file=sys.stderr, flush=True)
    Worker(dispatcher, interval=every, checkpointer=checkpointer,
           checkpoint_every=settings.audit.checkpoint_every_minutes * 60).run(on_start=started)
    print(f"kapflow worker {dispatcher.worker_id}: stopped", flush=True)


@commands.command("timers")
@handled
def timers_command(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option("--case", help="Only this case's timers.")] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only timers parked after every attempt failed; see their case."),
    ] = False,
    as_json: AsJson = False,
    utc: InUtc = False,
) -> None:
    """Reminders planned, sent, skipped, missed, cancelled or failed, and why."""
    found = reader(ctx)
    rows = [timer_shape(r) for r in found.timers(case) if not failed or r["status"] == TimerStatus.FAILED]
    if as_json:
        print_json(rows)
        return
    out, calendar = console(), shown_calendar(found, utc)
    out.print(_stacked_timers(rows, calendar) if narrow(out) else _wide_timers(rows, calendar))


def _wide_timers(rows: list[dict[str, Any]], calendar: PracticeCalendar) -> Table:
    table = Table("due", "case", "reminder", "status", "outcome")
    for r in rows:
        table.add_row(*(cell(v) for v in (time_text(calendar, r["due_at"]), r["case_id"], r["reminder"], r["status"],
                                          r["outcome"] or "")))
    return table


def _stacked_timers(rows: list[dict[str, Any]], calendar: PracticeCalendar) -> Table:
    table = Table("due", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("case / reminder", no_wrap=True)
    table.add_column("status")
    table.add_column("outcome", ratio=1)
    for r in rows:
        table.add_row(cell(stacked_time(calendar, r["due_at"])), cell(f"{r['case_id']}\n{r['reminder']}"),
                      cell(r["status"]), cell(r["outcome"] or ""))
    return table


@commands.command("outbox")
@handled
def outbox_command(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option("--case", help="Only this case's messages.")] = None,
    as_json: AsJson = False,
    utc: InUtc = False,
) -> None:
    """Messages and calendar changes: pending, sent, or given up (with the last error)."""
    found = reader(ctx)
    rows = [outbox_shape(r) for r in found.outbox(case)]
    if as_json:
        print_json(rows)
        return
    out, calendar = console(), shown_calendar(found, utc)
    out.print(_stacked_outbox(rows, calendar) if narrow(out) else _wide_outbox(rows, calendar))


def _wide_outbox(rows: list[dict[str, Any]], calendar: PracticeCalendar) -> Table:
    table = Table("created", "case", "channel", "to", "status", "attempts", "last error")
    for r in rows:
        created = time_text(calendar, r["created_at"])
        table.add_row(*(cell(v) for v in (created, r["case_id"], r["channel"], r["audience"], r["status"],
                                          r["attempts"], r["last_error"] or "")))
    return table


def _stacked_outbox(rows: list[dict[str, Any]], calendar: PracticeCalendar) -> Table:
    table = Table("created", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("case / channel: to", no_wrap=True)
    table.add_column("status")
    table.add_column("last error", ratio=1)
    for r in rows:
        tries = f"{r['status']}\n{r['attempts']} attempt" + ("" if r["attempts"] == 1 else "s")
        table.add_row(cell(stacked_time(calendar, r["created_at"])),
                      cell(f"{r['case_id']}\n{r['channel']}: {r['audience']}"), cell(tries),
                      cell(r["last_error"] or ""))
    return table
