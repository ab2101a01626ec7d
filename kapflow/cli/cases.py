"""Cases: ``kapflow cases``, ``case show``, ``open``, ``fire``, ``record``, ``check``, ``history``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kapflow.app.engine import Engine
from kapflow.cli.common import (
    ActorId,
    AsJson,
    CaseId,
    Data,
    Expected,
    Fact,
    InUtc,
    Key,
    Role,
    WorkflowName,
    acting,
    cell,
    console,
    engine,
    group,
    handled,
    json_cell,
    narrow,
    parse_data,
    print_json,
    reader,
    shown_calendar,
    stacked_time,
    time_text,
    workflow_name,
)
from kapflow.cli.render import events_table, print_outcome
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import Actor
from kapflow.errors import InvalidInput
from kapflow.present import (
    EXIT_REFUSED,
    blocker_lines,
    case_shape,
    case_summaries,
    case_workflow,
    fact_summary,
    verdict_shape,
)

commands = typer.Typer()
case_app = group("Look at one case.")
commands.add_typer(case_app, name="case")


@commands.command("cases")
@handled
def cases_command(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="Only cases in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many cases (1-10000).")] = 50,
    as_json: AsJson = False,
    utc: InUtc = False,
) -> None:
    """List cases, oldest first."""
    found = reader(ctx)
    if state is not None:
        _check_state(found, state)
    rows = [case_shape(c, case_workflow(found.workflows, c)) for c in found.cases(state=state, limit=limit)]
    if as_json:
        print_json(rows)
        return
    out, calendar = console(), shown_calendar(found, utc)
    out.print(_stacked_cases(rows, calendar) if narrow(out) else _wide_cases(rows, calendar))
    out.print(Text(f"{len(rows)} case(s)"))


def _check_state(found: Engine, state: str) -> None:
    """``state`` must be a state of some loaded workflow version."""
    states = list(dict.fromkeys(s.name for wf in found.workflows.versions() for s in wf.states))
    if state not in states:
        raise InvalidInput(f"unknown state {state!r}; states: {', '.join(states)}", field="state")


def _wide_cases(rows: list[dict[str, object]], calendar: PracticeCalendar) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("case", "client", "state", "version", "workflow", "updated"):
        table.add_column(column, overflow="fold")
    for r in rows:
        workflow, updated = f"{r['workflow']} v{r['workflow_version']}", time_text(calendar, str(r["updated_at"]))
        table.add_row(*(cell(v) for v in (r["id"], r["client"], r["state"], r["version"], workflow, updated)))
    return table


def _stacked_cases(rows: list[dict[str, object]], calendar: PracticeCalendar) -> Table:
    """The case id whole; the workflow and version under the state; the date over the time."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("case", no_wrap=True)
    table.add_column("client", ratio=1)
    table.add_column("state\nworkflow · version", overflow="fold")
    table.add_column("updated", no_wrap=True)
    for r in rows:
        updated = stacked_time(calendar, str(r["updated_at"]))
        state = f"{r['state']}\n{r['workflow']} v{r['workflow_version']} · version {r['version']}"
        table.add_row(cell(r["id"]), cell(r["client"]), cell(state), cell(updated))
    return table


@case_app.command("show")
@handled
def case_show(ctx: typer.Context, case_id: CaseId, as_json: AsJson = False, utc: InUtc = False) -> None:
    """One case: state, versions, facts recorded, the workflow's summaries of it (such as symptom measures),
    and what can happen next (with every blocker)."""
    found = reader(ctx)
    case = found.case(case_id)
    workflow = found.workflow_of(case)
    shape = case_shape(case, workflow)
    facts = fact_summary(case)
    summaries = case_summaries(case, workflow)
    verdicts = found.available(case_id)
    if as_json:
        print_json({"case": shape, "facts": facts, "summaries": summaries,
                    "available": [verdict_shape(v) for v in verdicts]})
        return
    out, calendar = console(), shown_calendar(found, utc)
    out.print(cell(f"case {case.id}  client: {shape['client']}"), style="bold", soft_wrap=True)
    where = f"state {case.state} (previous: {case.previous_state or '-'})  version {case.version}"
    what = f"workflow {case.workflow} v{case.workflow_version}  audit events {case.event_count}"
    out.print(Text(f"{where}\n{what}" if narrow(out) else f"{where}  {what}"))
    opened, updated = time_text(calendar, case.opened_at), time_text(calendar, case.updated_at)
    out.print(Text(f"opened {opened}\nupdated {updated}" if narrow(out) else f"opened {opened}, updated {updated}"))
    out.print(_facts_table(facts, out, calendar))
    if any(summaries.values()):
        shown = Table("summary", box=box.SIMPLE_HEAD, title="Summaries")
        shown.add_column("computed from the facts", overflow="fold", ratio=1 if narrow(out) else None)
        for name, summary in summaries.items():
            if summary:
                shown.add_row(cell(name), json_cell(summary, spaced=True))
        out.print(shown)
    next_table = Table("trigger", "ready", box=box.SIMPLE_HEAD, title="What can happen next")
    next_table.add_column("blockers", overflow="fold", ratio=1 if narrow(out) else None)
    for v in verdicts:
        next_table.add_row(cell(v.trigger), Text("yes" if v.allowed else "no"), cell("\n".join(blocker_lines(v))))
    out.print(next_table if verdicts else Text("nothing: the case is in a final state"))


def _facts_table(facts: list[dict[str, object]], out: Console, calendar: PracticeCalendar) -> Table:
    if narrow(out):  # the fact's count, time and author under its kind: the data gets the width
        table = Table("fact", box=box.SIMPLE_HEAD, title="Facts")
        table.add_column("latest", overflow="fold", ratio=1)
        for f in facts:
            about = f"{f['kind']}\n{f['count']}x, last {stacked_time(calendar, str(f['last_at']))}\nby {f['last_by']}"
            table.add_row(cell(about), json_cell(f["latest"], spaced=True))
        return table
    table = Table("fact", "count", "last", "by", box=box.SIMPLE_HEAD, title="Facts")
    table.add_column("latest", overflow="fold")
    for f in facts:
        last = time_text(calendar, str(f["last_at"]))
        table.add_row(cell(f["kind"]), cell(f["count"]), cell(last), cell(f["last_by"]), json_cell(f["latest"]))
    return table


@commands.command("open")
@handled
def open_command(
    ctx: typer.Context, actor: ActorId, role: Role, data: Fact, key: Key = None,
    workflow: WorkflowName = None, as_json: AsJson = False,
) -> None:
    """Open a case from its workflow's intake form (its intake fact), given as --data JSON."""
    found = engine(ctx)
    outcome = found.open_case(parse_data(data) or {}, actor=acting(actor, role), idempotency_key=key,
                              workflow=workflow_name(found.workflows.names, workflow))
    print_outcome(outcome, as_json)


@commands.command("fire")
@handled
def fire_command(
    ctx: typer.Context,
    case_id: CaseId,
    trigger: Annotated[str, typer.Argument(help="The trigger, one of the case's workflow.")],
    actor: ActorId,
    role: Role,
    data: Data = None,
    key: Key = None,
    expected_version: Expected = None,
    as_json: AsJson = False,
) -> None:
    """Move a case with a trigger; refused (exit 3, every blocker listed) unless its guards hold."""
    outcome = engine(ctx).fire(
        case_id, trigger, actor=acting(actor, role), data=parse_data(data),
        idempotency_key=key, expected_version=expected_version,
    )
    print_outcome(outcome, as_json)


@commands.command("record")
@handled
def record_command(
    ctx: typer.Context,
    case_id: CaseId,
    kind: Annotated[str, typer.Argument(help="The kind of fact, one the case's workflow records.")],
    actor: ActorId,
    role: Role,
    data: Fact,
    key: Key = None,
    expected_version: Expected = None,
    as_json: AsJson = False,
) -> None:
    """Record a fact on a case (a payment, vitals, consent, ...)."""
    outcome = engine(ctx).record(
        case_id, kind, parse_data(data) or {}, actor=acting(actor, role),
        idempotency_key=key, expected_version=expected_version,
    )
    print_outcome(outcome, as_json)


@commands.command("check")
@handled
def check_command(
    ctx: typer.Context,
    case_id: CaseId,
    trigger: Annotated[str, typer.Argument(help="The trigger to check.")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who would act (optional).")] = None,
    role: Annotated[str | None, typer.Option("--role", help="The role they would act in (optional).")] = None,
    as_json: AsJson = False,
) -> None:
    """Could a trigger fire now? Prints every blocker (code and sentence). Writes nothing."""
    if actor is not None and role is None:
        raise InvalidInput("give --role with --actor: the role decides what an actor may do", field="role")
    who = Actor(actor or "cli", role) if role is not None else None
    verdict = reader(ctx).check(case_id, trigger, actor=who)
    if as_json:
        print_json(verdict_shape(verdict))
    elif verdict.allowed:
        console().print(cell(f"{trigger} can happen now"), style="green")
    else:
        out = console()
        out.print(cell(f"{trigger} is blocked ({len(verdict.blockers)}):"), style="red")
        for line in blocker_lines(verdict):
            out.print(cell(f"  {line}"), soft_wrap=True)
    if not verdict.allowed:
        raise typer.Exit(EXIT_REFUSED)  # blocked, as a refused command is (nothing was written)


@commands.command("history")
@handled
def history_command(
    ctx: typer.Context, case_id: CaseId, as_json: AsJson = False, utc: InUtc = False,
) -> None:
    """A case's audit history: every change, fact and refused attempt (with every blocker), who and when."""
    built = reader(ctx)
    events = built.history(case_id)
    if as_json:
        print_json([ev.as_dict() for ev in events])
        return
    out = console()
    out.print(events_table(events, details=True, out=out, calendar=shown_calendar(built, utc)))
