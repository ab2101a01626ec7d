"""``kapflow demo``: an example practice with synthetic clients, each story printed, the audit verified."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from kapflow.cli.common import (
    InUtc,
    cell,
    console,
    handled,
    narrow,
    settings_of,
    shown_calendar,
    stacked_time,
    time_text,
)
from kapflow.cli.render import events_table, print_audit
from kapflow.demo import DEMO_SETTINGS, ClientStory, DemoAccount, DemoRun, demo_engine, make_demo_accounts, run_demo
from kapflow.domain.calendar import PracticeCalendar
from kapflow.present import EXIT_OTHER

commands = typer.Typer()

_RULE_WIDTH = 120


@commands.command("demo")
@handled
def demo_command(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Run even if the database already holds cases.")] = False,
    mail: Annotated[
        Path | None,
        typer.Option("--mail", metavar="FOLDER",
                     help="Where the demo's worker delivers reminders (a Maildir; default: beside the database)."),
    ] = None,
    utc: InUtc = False,
) -> None:
    """Run an example practice with synthetic clients; print each timeline and the reminders delivered."""
    url = settings_of(ctx).url
    mail = mail or _beside_database(url, "-mail")
    engine, clock = demo_engine(url, mail_folder=mail)
    ctx.call_on_close(engine.close)
    run = run_demo(engine, clock, allow_existing=force)
    accounts = make_demo_accounts(engine) if run.audit.ok else ()
    settings = _write_settings(_beside_database(url, "-settings.toml"))
    _print_demo(console(), run, shown_calendar(engine, utc), mail)
    # The demo's cases are on both pathways; the default settings load KAP only.
    out = console()
    out.print(Text("Next, with the demo's settings (its cases are on both of its pathways):"))
    out.print(Text(f"  kapflow --db {url} --config {settings} cases"), soft_wrap=True)  # whole, to copy
    out.print(Text("  then: case show ID · history ID · appointment list ID"))
    if accounts:
        _print_console(out, url, settings, accounts)
    if not run.audit.ok:
        raise typer.Exit(EXIT_OTHER)


def _print_console(out: Console, url: str, settings: Path, accounts: tuple[DemoAccount, ...]) -> None:
    """How to open the practice console on the demo's database, and its accounts (shown this once)."""
    out.print()
    out.print(Text("The practice console on this database:", style="bold"))
    out.print(Text(f"  kapflow --db {url} --config {settings} serve"), soft_wrap=True)
    out.print(Text("  then open http://127.0.0.1:8443/console/ and sign in as one of these:"))
    table = Table.grid(padding=(0, 2), pad_edge=True)
    for account in accounts:
        table.add_row(account.name, account.role.replace("_", " "), account.passphrase)
    out.print(table)
    out.print(Text("  (the passphrases are shown only now: kapflow user passwd NAME sets another)"))


def _beside_database(url: str, suffix: str) -> Path:
    """``<db file><suffix>`` next to a SQLite file; in a fresh temporary folder for any other database."""
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        db = Path(url.removeprefix("sqlite:///"))
        return db.with_name(db.name + suffix)
    return Path(tempfile.mkdtemp(prefix="kapflow-demo-")) / f"kapflow-demo{suffix}"


def _write_settings(path: Path) -> Path:
    """The demo's settings file (its workflows only: no address, no secret), readable by its owner alone."""
    path.write_text(DEMO_SETTINGS, encoding="utf-8")
    path.chmod(0o600)
    return path


def _print_demo(out: Console, run: DemoRun, calendar: PracticeCalendar, mail_folder: Path | None = None) -> None:
    out.print(Text("kapflow demo: an example practice with synthetic clients", style="bold"))
    out.print(Text(f"(a fake clock starting {time_text(calendar, run.start)}; all names and data are made up)"))
    out.print()
    for story in run.stories:
        _print_story(out, story, calendar)
    if mail_folder is not None:
        _print_mail(out, run, calendar, mail_folder)
    print_audit(out, run.audit)


def _print_story(out: Console, story: ClientStory, calendar: PracticeCalendar) -> None:
    out.print(Rule(cell(f"{story.client} · {story.case_id}")), width=min(out.width, _RULE_WIDTH))
    out.print(cell(story.headline), style="bold")
    out.print(Text("Key moments:"))
    # A grid, so a long moment (a refusal's sentence) wraps under itself, not under the time.
    moments = Table.grid(padding=(0, 2), pad_edge=True)
    moments.add_column(no_wrap=True)
    moments.add_column(overflow="fold")
    for m in story.moments:
        moments.add_row(time_text(calendar, m.at), cell(m.text))
    out.print(moments)
    out.print(events_table(story.history, details=False, out=out, calendar=calendar))
    out.print(cell(f"ends in state: {story.state}"))
    out.print()


def _print_mail(out: Console, run: DemoRun, calendar: PracticeCalendar, folder: Path) -> None:
    out.rule(Text(f"Reminders the worker delivered · {len(run.messages)} messages in {folder}"))
    if narrow(out):
        table = Table("sent", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("to", overflow="fold")
        table.add_column("subject / reminder", overflow="fold", ratio=1)
        for m in run.messages:
            table.add_row(cell(stacked_time(calendar, m.at)), cell(f"{m.audience}\n{m.recipient}"),
                          cell(f"{m.subject}\n{m.reminder}"))
    else:
        table = Table("sent", "to", "address", "subject", "reminder")
        for m in run.messages:
            table.add_row(time_text(calendar, m.at), m.audience, cell(m.recipient), cell(m.subject), m.reminder)
    out.print(table)
    out.print(Text(f"Calendar events (.ics) are in {folder / 'calendar'}"))
    out.print()
