"""The ``kapflow`` command line: look at cases, move them, check the audit history, run the demo.

Every command takes the database from the root option ``--db URL`` (else
``$KAPFLOW_DB``, else ``sqlite:///kapflow.db``). A ``KapflowError`` becomes
one line on stderr and an exit code, never a traceback:

    0 done · 1 other failure (or a broken audit chain) · 2 bad input
    3 refused or blocked (the refusal is audited) · 4 unknown case

Text from the database (names, notes) may hold anything, including rich
markup such as ``[bold]``: consoles here are built with markup and emoji off,
so it is printed exactly as stored. Nothing is logged from here.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec

import typer
from rich import box
from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from kapflow.audit import AuditReport
from kapflow.bootstrap import build_engine, database_url
from kapflow.config import Settings, load_settings
from kapflow.demo import ClientStory, DemoRun, demo_engine, run_demo
from kapflow.diagram import mermaid, write_png
from kapflow.domain.case import Actor, AuditEvent, CaseRecord, FactEntry, Outcome, to_iso
from kapflow.domain.payload import canonical_json
from kapflow.domain.verdict import Verdict
from kapflow.engine import Engine
from kapflow.errors import InvalidInput, KapflowError, Refused, UnknownCase

EXIT_OTHER, EXIT_INPUT, EXIT_REFUSED, EXIT_UNKNOWN_CASE = 1, 2, 3, 4
_PIPE_WIDTH = 200
# C1 control characters (U+0080-U+009F; U+009B is a terminal's CSI) shown as JSON-style escapes, never raw.
_C1_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x80, 0xA0)}
_RULE_WIDTH = 120

app = typer.Typer(
    name="kapflow",
    help="kapflow: audited clinical workflows (Ketamine-Assisted Psychotherapy pathway).",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)
case_app = typer.Typer(help="Look at one case.", pretty_exceptions_enable=False, no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit history.", pretty_exceptions_enable=False, no_args_is_help=True)
app.add_typer(case_app, name="case")
app.add_typer(audit_app, name="audit")

CaseId = Annotated[str, typer.Argument(help="The case id, e.g. case-0123456789abcdef.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ActorId = Annotated[str, typer.Option("--actor", help="Who acts: an id the practice knows them by.")]
Role = Annotated[str, typer.Option("--role", help="The role they act in, e.g. front_desk, prescriber.")]
Data = Annotated[str | None, typer.Option("--data", help='A JSON object, e.g. \'{"reason": "travelling"}\'.')]
Fact = Annotated[str, typer.Option("--data", help="The intake form or fact as a JSON object.")]
Key = Annotated[str | None, typer.Option("--idempotency-key", help="Repeat a command safely: same key, same result.")]
Expected = Annotated[int | None, typer.Option("--expected-version", help="Refuse unless the case is at this version.")]

P = ParamSpec("P")


@dataclass(frozen=True)
class _Settings:
    url: str
    settings: Settings


# ------------------------------------------------------------------ plumbing


def main() -> None:
    """The console script ``kapflow``."""
    app()


def _handled(command: Callable[P, None]) -> Callable[P, None]:
    """Turn kapflow's errors into one line on stderr and an exit code; never show a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except KapflowError as err:
            _fail(f"{err.code}: {err.message}", _exit_code(err))
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            # A traceback's frames can hold a client's data; show only the type unless debugging.
            if os.environ.get("KAPFLOW_DEBUG"):
                raise
            _fail(f"internal_error: unexpected {type(exc).__name__}; this is a bug in kapflow, "
                  "please report it (KAPFLOW_DEBUG=1 shows the traceback)", EXIT_OTHER)

    return run


def _exit_code(err: KapflowError) -> int:
    if isinstance(err, UnknownCase):
        return EXIT_UNKNOWN_CASE
    if isinstance(err, InvalidInput):
        return EXIT_INPUT
    if isinstance(err, Refused):
        return EXIT_REFUSED
    return EXIT_OTHER


def _fail(line: str, code: int) -> NoReturn:
    print(f"kapflow: {' '.join(line.split())}", file=sys.stderr)
    raise typer.Exit(code)


def _console() -> Console:
    # Markup and emoji off: "[bold]" or ":smile:" stored in a note is printed as typed.
    console = Console(markup=False, emoji=False, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH  # piped into a file or grep: keep rows whole rather than 80 wide
    return console


def _engine(ctx: typer.Context) -> Engine:
    found = ctx.find_object(_Settings)
    engine = build_engine(found.url, settings=found.settings) if found else build_engine(database_url())
    ctx.call_on_close(engine.store.close)
    return engine


def _data(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"--data is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            'give an object like \'{"reason": "travelling"}\'',
            field="data",
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput('--data must be a JSON object like \'{"reason": "travelling"}\'', field="data")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # json.loads turns "\\ud800" into a lone surrogate, which no database can store as text.
        raise InvalidInput("--data holds a lone surrogate (\\ud800-\\udfff): give valid Unicode text",
                           field="data") from None
    return value


def _defang(text: str) -> str:
    """``text`` as stored, except that C1 control characters cannot reach the terminal."""
    return text.translate(_C1_ESCAPES)


def _print_json(value: object) -> None:
    # C1 characters only occur inside JSON strings, where their \\u escape means the same.
    print(_defang(json.dumps(value, indent=2, ensure_ascii=False)))


@app.callback()
def _root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", metavar="URL", help="Database URL (else $KAPFLOW_DB, else sqlite:///kapflow.db)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", envvar="KAPFLOW_CONFIG",
                     help="The practice's settings (TOML): channels, calendar, contacts, time zone."),
    ] = None,
) -> None:
    try:
        settings = load_settings(config)
    except KapflowError as err:
        _fail(f"{err.code}: {err.message}", EXIT_INPUT)
    ctx.obj = _Settings(database_url(db, settings), settings)


# ------------------------------------------------------------------ rendering


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def _when_iso(text: str) -> str:
    return text[:16].replace("T", " ")


def _client(case: CaseRecord, intake_kind: str) -> str:
    intake = case.projection.latest(intake_kind)
    if intake is None:
        return ""
    return _defang(" ".join(str(intake.data[k]) for k in ("first_name", "last_name") if intake.data.get(k)))


def _case_dict(case: CaseRecord, client: str) -> dict[str, object]:
    return {
        "id": case.id, "client": client, "state": case.state, "previous_state": case.previous_state,
        "version": case.version, "workflow": case.workflow, "workflow_version": case.workflow_version,
        "events": case.event_count, "opened_at": to_iso(case.opened_at), "updated_at": to_iso(case.updated_at),
    }


def _facts_summary(case: CaseRecord) -> list[dict[str, object]]:
    by_kind: dict[str, list[FactEntry]] = {}
    for fact in case.projection.facts():
        by_kind.setdefault(fact.kind, []).append(fact)
    return [
        {"kind": kind, "count": len(facts), "last_at": to_iso(facts[-1].at), "last_by": facts[-1].by,
         "latest": dict(facts[-1].data)}
        for kind, facts in by_kind.items()
    ]


def _json_cell(value: object) -> Text:
    return Text(_defang(canonical_json(value)))


def _what(ev: AuditEvent) -> str:
    if ev.kind == "fact":
        return f"{ev.data.get('kind', '')}"
    if ev.kind == "opened":
        return f"{ev.data.get('intake_kind', '')}"
    if ev.kind == "reminder":
        return f"{ev.data.get('reminder', '')}: {ev.data.get('outcome', '')}"
    if ev.kind == "delivery_failed":
        return f"{ev.data.get('channel', '')} gave up after {ev.data.get('attempts', '')}"
    return ev.trigger or ""


def _move(ev: AuditEvent) -> str:
    if ev.kind == "opened":
        return f"-> {ev.to_state}"
    return f"{ev.from_state}\n-> {ev.to_state}" if ev.kind == "transition" else ""


def _events_table(events: Iterable[AuditEvent], *, details: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", no_wrap=True)
    table.add_column("time (UTC)", min_width=10)
    table.add_column("actor / role", overflow="fold")
    table.add_column("event", no_wrap=True)
    for column in ("trigger / fact", "from -> to", "blockers"):
        table.add_column(column, overflow="fold", min_width=12)
    if details:
        table.add_column("data", overflow="fold", ratio=1)
    for ev in events:
        row = [str(ev.case_seq), _when(ev.at), f"{ev.actor}\n{ev.role}", ev.kind, _what(ev), _move(ev),
               "\n".join(str(b.get("code", "")) for b in ev.blockers)]
        cells: list[Text] = [Text(c) for c in row]
        if details:
            cells.append(_json_cell(dict(ev.data)))
        table.add_row(*cells, style="red" if ev.kind == "refused" else None)
    return table


def _blocker_lines(verdict: Verdict) -> list[str]:
    return [f"{b.code}: {b.message}" for b in verdict.blockers]


def _print_audit(console: Console, report: AuditReport) -> None:
    counts = f"{report.cases} cases, {report.events} events"
    if report.ok:
        console.print(Text(f"audit verified: {counts}, ok", style="green"))
        return
    for p in report.problems:
        row = f" first broken row: seq {p.seq} (event {p.case_seq} of the case):" if p.seq is not None else ""
        console.print(Text(f"case {p.case_id}:{row} {p.reason}", style="red"), soft_wrap=True)
    broken = len(report.problems)
    console.print(Text(f"audit BROKEN: {broken} case(s) fail verification ({counts} checked)", style="bold red"))


def _print_story(console: Console, story: ClientStory) -> None:
    console.print(Rule(Text(f"{story.client} · {story.case_id}")), width=min(console.width, _RULE_WIDTH))
    console.print(Text(story.headline, style="bold"), soft_wrap=True)
    console.print(Text("Key moments:"))
    for m in story.moments:
        console.print(Text(f"  {_when(m.at)}  {m.text}"), soft_wrap=True)
    console.print(_events_table(story.history, details=False))
    console.print(Text(f"ends in state: {story.state}"))
    console.print()


def _beside_database(url: str) -> Path:
    """``<db file>-mail`` next to a SQLite file; a fresh temporary folder for any other database."""
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        db = Path(url.removeprefix("sqlite:///"))
        return db.with_name(db.name + "-mail")
    return Path(tempfile.mkdtemp(prefix="kapflow-demo-mail-"))


def _print_mail(console: Console, run: DemoRun, folder: Path) -> None:
    console.rule(Text(f"Reminders the worker delivered · {len(run.messages)} messages in {folder}"))
    table = Table("sent (UTC)", "to", "address", "subject", "reminder")
    for m in run.messages:
        table.add_row(_when(m.at), m.audience, Text(m.recipient), Text(m.subject), m.reminder)
    console.print(table)
    console.print(Text(f"Calendar events (.ics) are in {folder / 'calendar'}"))
    console.print()


def _print_demo(console: Console, run: DemoRun, mail_folder: Path | None = None) -> None:
    console.print(Text("kapflow demo: an example practice with synthetic clients", style="bold"))
    console.print(Text(f"(a fake clock starting {_when(run.start)} UTC; all names and data are made up)"))
    console.print()
    for story in run.stories:
        _print_story(console, story)
    if mail_folder is not None:
        _print_mail(console, run, mail_folder)
    _print_audit(console, run.audit)
    console.print(Text("Next: kapflow cases · kapflow case show ID · kapflow history ID (with the same --db)"))


# ------------------------------------------------------------------ commands


@app.command("cases")
@_handled
def cases_command(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="Only cases in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many cases (1-10000).")] = 50,
    as_json: AsJson = False,
) -> None:
    """List cases, oldest first."""
    engine = _engine(ctx)
    states = [s.name for s in engine.workflow.states]
    if state is not None and state not in states:
        raise InvalidInput(f"unknown state {state!r}; states: {', '.join(states)}", field="state")
    intake = engine.workflow.intake_fact
    rows = [_case_dict(c, _client(c, intake)) for c in engine.cases(state=state, limit=limit)]
    if as_json:
        _print_json(rows)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("case", "client", "state", "version", "workflow", "updated (UTC)"):
        table.add_column(column, overflow="fold")
    for r in rows:
        workflow, updated = f"{r['workflow']} v{r['workflow_version']}", _when_iso(str(r["updated_at"]))
        table.add_row(*(Text(str(v)) for v in (r["id"], r["client"], r["state"], r["version"], workflow, updated)))
    console = _console()
    console.print(table)
    console.print(Text(f"{len(rows)} case(s)"))


@case_app.command("show")
@_handled
def case_show(ctx: typer.Context, case_id: CaseId, as_json: AsJson = False) -> None:
    """One case: state, versions, facts recorded, and what can happen next (with every blocker)."""
    engine = _engine(ctx)
    case = engine.case(case_id)
    client = _client(case, engine.workflow_of(case).intake_fact)
    facts = _facts_summary(case)
    verdicts = engine.available(case_id)
    if as_json:
        _print_json({"case": _case_dict(case, client), "facts": facts, "available": [v.as_dict() for v in verdicts]})
        return
    console = _console()
    console.print(Text(f"case {case.id}  client: {client}", style="bold"), soft_wrap=True)
    console.print(Text(f"state {case.state} (previous: {case.previous_state or '-'})  version {case.version}  "
                       f"workflow {case.workflow} v{case.workflow_version}  audit events {case.event_count}"))
    console.print(Text(f"opened {_when(case.opened_at)} UTC, updated {_when(case.updated_at)} UTC"))
    facts_table = Table("fact", "count", "last (UTC)", "by", box=box.SIMPLE_HEAD, title="Facts")
    facts_table.add_column("latest", overflow="fold")
    for f in facts:
        facts_table.add_row(Text(str(f["kind"])), Text(str(f["count"])), Text(_when_iso(str(f["last_at"]))),
                            Text(str(f["last_by"])), _json_cell(f["latest"]))
    console.print(facts_table)
    next_table = Table("trigger", "ready", box=box.SIMPLE_HEAD, title="What can happen next")
    next_table.add_column("blockers", overflow="fold")
    for v in verdicts:
        next_table.add_row(Text(v.trigger), Text("yes" if v.allowed else "no"), Text("\n".join(_blocker_lines(v))))
    console.print(next_table if verdicts else Text("nothing: the case is in a final state"))


@app.command("open")
@_handled
def open_command(
    ctx: typer.Context, actor: ActorId, role: Role, data: Fact, key: Key = None, as_json: AsJson = False
) -> None:
    """Open a case from an intake form (for KAP: the inquiry), given as --data JSON."""
    outcome = _engine(ctx).open_case(_data(data) or {}, actor=Actor(actor, role), idempotency_key=key)
    _print_outcome(outcome, as_json)


@app.command("fire")
@_handled
def fire_command(
    ctx: typer.Context,
    case_id: CaseId,
    trigger: Annotated[str, typer.Argument(help="The trigger, e.g. book_evaluation.")],
    actor: ActorId,
    role: Role,
    data: Data = None,
    key: Key = None,
    expected_version: Expected = None,
    as_json: AsJson = False,
) -> None:
    """Move a case with a trigger; refused (exit 3, every blocker listed) unless its guards hold."""
    outcome = _engine(ctx).fire(
        case_id, trigger, actor=Actor(actor, role), data=_data(data),
        idempotency_key=key, expected_version=expected_version,
    )
    _print_outcome(outcome, as_json)


@app.command("record")
@_handled
def record_command(
    ctx: typer.Context,
    case_id: CaseId,
    kind: Annotated[str, typer.Argument(help="The kind of fact, e.g. payment, vitals, consent.")],
    actor: ActorId,
    role: Role,
    data: Fact,
    key: Key = None,
    expected_version: Expected = None,
    as_json: AsJson = False,
) -> None:
    """Record a fact on a case (a payment, vitals, consent, ...)."""
    outcome = _engine(ctx).record(
        case_id, kind, _data(data) or {}, actor=Actor(actor, role),
        idempotency_key=key, expected_version=expected_version,
    )
    _print_outcome(outcome, as_json)


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        _print_json(outcome.as_dict())
        return
    if outcome.kind == "transition":
        what = f"{outcome.trigger}: {outcome.from_state} -> {outcome.state}"
    elif outcome.kind == "fact":
        what = f"recorded {outcome.extra.get('fact_kind', 'fact')} (state {outcome.state})"
    else:
        what = f"opened (state {outcome.state})"
    replayed = " [replayed: this key was used before]" if outcome.replayed else ""
    _console().print(Text(f"{outcome.case_id}: {what}, version {outcome.version}{replayed}"), soft_wrap=True)


@app.command("check")
@_handled
def check_command(
    ctx: typer.Context,
    case_id: CaseId,
    trigger: Annotated[str, typer.Argument(help="The trigger to check, e.g. start_kap_session.")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who would act (optional).")] = None,
    role: Annotated[str | None, typer.Option("--role", help="The role they would act in (optional).")] = None,
    as_json: AsJson = False,
) -> None:
    """Could a trigger fire now? Prints every blocker (code and sentence). Writes nothing."""
    if actor is not None and role is None:
        raise InvalidInput("give --role with --actor: the role decides what an actor may do", field="role")
    who = Actor(actor or "cli", role) if role is not None else None
    verdict = _engine(ctx).check(case_id, trigger, actor=who)
    if as_json:
        _print_json(verdict.as_dict())
        return
    console = _console()
    if verdict.allowed:
        console.print(Text(f"{trigger} can happen now", style="green"))
        return
    console.print(Text(f"{trigger} is blocked ({len(verdict.blockers)}):", style="red"))
    for line in _blocker_lines(verdict):
        console.print(Text(f"  {line}"), soft_wrap=True)


@app.command("history")
@_handled
def history_command(ctx: typer.Context, case_id: CaseId, as_json: AsJson = False) -> None:
    """A case's audit history: every change, fact and refused attempt, who did it and when."""
    events = _engine(ctx).history(case_id)
    if as_json:
        _print_json([ev.as_dict() for ev in events])
        return
    _console().print(_events_table(events, details=True))


@audit_app.command("verify")
@_handled
def audit_verify(
    ctx: typer.Context,
    case_id: Annotated[str | None, typer.Option("--case", help="Verify one case only.")] = None,
    as_json: AsJson = False,
) -> None:
    """Verify the hash-chained audit history; exit 1 naming the first broken row of each case."""
    report = _engine(ctx).verify_audit(case_id)
    if as_json:
        _print_json(report.as_dict())
    else:
        _print_audit(_console(), report)
    if not report.ok:
        raise typer.Exit(EXIT_OTHER)


class DiagramFormat(StrEnum):
    mermaid = "mermaid"
    png = "png"


@app.command("diagram")
@_handled
def diagram_command(
    fmt: Annotated[DiagramFormat, typer.Option("--format", help="mermaid text, or png (needs kapflow[diagram]).")]
    = DiagramFormat.mermaid,
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Draw the KAP workflow as a state diagram, straight from its definition."""
    from kapflow.workflows.kap import KAP_PATHWAY

    if fmt is DiagramFormat.png:
        if output is None:
            raise InvalidInput("a PNG needs a file: give --output FILE.png", field="output")
        write_png(KAP_PATHWAY, output)
        print(f"wrote {output}")
    elif output is not None:
        output.write_text(mermaid(KAP_PATHWAY), encoding="utf-8")
        print(f"wrote {output}")
    else:
        sys.stdout.write(mermaid(KAP_PATHWAY))


@app.command("demo")
@_handled
def demo_command(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Run even if the database already holds cases.")] = False,
    mail: Annotated[
        Path | None,
        typer.Option("--mail", metavar="FOLDER",
                     help="Where the demo's worker delivers reminders (a Maildir; default: beside the database)."),
    ] = None,
) -> None:
    """Run an example practice with synthetic clients; print each timeline and the reminders delivered."""
    settings = ctx.find_object(_Settings)
    url = settings.url if settings else database_url()
    mail = mail or _beside_database(url)
    engine, clock = demo_engine(url, mail_folder=mail)
    ctx.call_on_close(engine.store.close)
    run = run_demo(engine, clock, allow_existing=force)
    _print_demo(_console(), run, mail)
    if not run.audit.ok:
        raise typer.Exit(EXIT_OTHER)



# The worker's, the schema's and the workflow versions' commands live in their own modules;
# importing them registers them on ``app``.
from kapflow import cli_db, cli_worker, cli_workflow  # noqa: E402, F401
