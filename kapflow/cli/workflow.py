"""Workflows: ``kapflow workflow list``, ``diff``, ``migrate``, and ``kapflow diagram``.

The workflows are those the settings load (``workflows = [...]``, oldest
version first); the last version of each is the one its new cases open on.
Where several workflows are loaded, ``--workflow NAME`` says which one.
``migrate --dry-run`` writes nothing; ``migrate`` moves each case that can
move in its own transaction, audited, and lists those that cannot (exit 0 all
the same: they are reported, not failures).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from kapflow.app.engine import Engine
from kapflow.app.migrate import CaseMigrationPlan
from kapflow.bootstrap import load_workflows
from kapflow.cli.common import (
    AsJson,
    WorkflowName,
    acting,
    cell,
    console,
    engine,
    group,
    handled,
    print_json,
    reader,
    settings_of,
    workflow_name,
)
from kapflow.diagram import mermaid, write_png
from kapflow.domain.case import Actor, Outcome
from kapflow.domain.versions import diff_workflows
from kapflow.domain.workflow import Workflow
from kapflow.errors import Blocker, ConcurrencyConflict, InvalidInput, MigrationRefused
from kapflow.present import outcome_text

commands = typer.Typer()
workflow_app = group("Workflow versions: list them, compare two, move cases in flight.")
commands.add_typer(workflow_app, name="workflow")

_CHANGED = Blocker("changed_meanwhile", "the case changed while the migration ran; run it again")


class DiagramFormat(StrEnum):
    mermaid = "mermaid"
    png = "png"


def _loaded(ctx: typer.Context) -> list[Workflow]:
    """The versions the settings load, without touching the database."""
    return load_workflows(settings_of(ctx).settings.workflows)


def _versions_of(versions: Sequence[Workflow], name: str | None) -> list[Workflow]:
    """The loaded versions of workflow ``name``, oldest first (``name`` may be left out when one is loaded)."""
    chosen = workflow_name(list(dict.fromkeys(wf.name for wf in versions)), name)
    return [wf for wf in versions if wf.name == chosen]


def _pick(same: list[Workflow], version: str | None, default: Workflow, option: str) -> Workflow:
    """The loaded version ``version`` of the workflow of ``same`` (``default`` if not given)."""
    if version is None:
        return default
    for wf in same:
        if wf.version == version:
            return wf
    loaded = ", ".join(wf.version for wf in same)
    raise InvalidInput(f"{option}: version {version!r} of {default.name!r} is not loaded; loaded: {loaded}",
                       field=option.lstrip("-"))


@workflow_app.command("list")
@handled
def list_command(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Every version loaded (the last of each workflow opens new cases) and how many cases are on each."""
    found = reader(ctx)
    versions = found.workflows.versions()
    total, in_flight = Counter[tuple[str, str]](), Counter[tuple[str, str]]()
    loaded = {wf.key: wf for wf in versions}
    for case in found.iter_cases():  # streamed: one case in memory at a time
        key = (case.workflow, case.workflow_version)
        total[key] += 1
        wf = loaded.get(key)
        if wf is not None and not wf.state(case.state).final:
            in_flight[key] += 1
    rows = [{"name": wf.name, "version": wf.version, "current": wf is found.workflows.current(wf.name),
             "loaded": True, "cases": total[wf.key], "in_flight": in_flight[wf.key]} for wf in versions]
    # Cases on a version nobody loaded cannot be moved or even read: show them rather than hide them.
    rows += [{"name": k[0], "version": k[1], "current": False, "loaded": False, "cases": n, "in_flight": None}
             for k, n in sorted(total.items()) if k not in loaded]
    if as_json:
        print_json(rows)
        return
    table = Table("workflow", "version", "status", "cases", "in flight", box=box.SIMPLE_HEAD, pad_edge=False)
    for r in rows:
        status = "current (new cases)" if r["current"] else ("loaded" if r["loaded"] else "NOT LOADED")
        table.add_row(*(cell(v) for v in (r["name"], r["version"], status, r["cases"],
                                          "?" if r["in_flight"] is None else r["in_flight"])))
    console().print(table)


@workflow_app.command("diff")
@handled
def diff_command(
    ctx: typer.Context,
    from_version: Annotated[str | None, typer.Option("--from", metavar="V", help="Default: the one before --to.")]
    = None,
    to_version: Annotated[str | None, typer.Option("--to", metavar="V", help="Default: the current version.")]
    = None,
    workflow: WorkflowName = None,
    as_json: AsJson = False,
) -> None:
    """What changes between two versions: states, transitions, guards, thresholds, facts, roles."""
    same = _versions_of(_loaded(ctx), workflow)
    new = _pick(same, to_version, same[-1], "--to")
    before = same[: same.index(new)]
    if from_version is None and not before:
        raise InvalidInput(f"no version of {new.name!r} before {new.version!r} is loaded; give --from V, or list "
                           "two versions in the settings' workflows", field="from")
    old = _pick(same, from_version, before[-1] if before else new, "--from")
    diff = diff_workflows(old, new)
    if as_json:
        print_json(diff.as_dict())
    else:
        console().print(cell(diff.text()), soft_wrap=True)


@workflow_app.command("migrate")
@handled
def migrate_command(
    ctx: typer.Context,
    to_version: Annotated[str, typer.Option("--to", metavar="V", help="The version to move cases to.")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who migrates (not needed for --dry-run).")] = None,
    role: Annotated[str | None, typer.Option("--role", help="Their role: one of the workflow's staff roles.")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what can move and why not; write nothing.")]
    = False,
    workflow: WorkflowName = None,
    as_json: AsJson = False,
) -> None:
    """Move in-flight cases to another version: each that can, in its own audited transaction."""
    if not dry_run and (actor is None or role is None):
        raise InvalidInput("give --actor and --role: a migration is audited under who did it", field="actor")
    found = engine(ctx)
    same = _versions_of(found.workflows.versions(), workflow)
    target = _pick(same, to_version, same[-1], "--to")
    plans = found.plan_migration(target)  # collected first: no cursor stays open while cases are written
    if dry_run or actor is None or role is None:
        _report(target, plans, [], [p for p in plans if not p.ok], as_json, dry_run=True)
        return
    moved, not_moved = _migrate_all(found, target, plans, acting(actor, role))
    _report(target, plans, moved, not_moved, as_json, dry_run=False)


def _migrate_all(
    found: Engine, target: Workflow, plans: list[CaseMigrationPlan], actor: Actor
) -> tuple[list[Outcome], list[CaseMigrationPlan]]:
    moved: list[Outcome] = []
    not_moved = [p for p in plans if not p.ok]
    for plan in (p for p in plans if p.ok):
        try:
            # The version planned: a case that changed since is left alone, not judged again unseen.
            moved.append(found.migrate_case(plan.case_id, target, actor=actor, expected_version=plan.version))
        except MigrationRefused as refused:  # audited on the case
            not_moved.append(_not_moved(plan, refused.reasons))
        except ConcurrencyConflict:
            not_moved.append(_not_moved(plan, (_CHANGED,)))
    return moved, not_moved


def _not_moved(plan: CaseMigrationPlan, reasons: tuple[Blocker, ...]) -> CaseMigrationPlan:
    return replace(plan, verdict=replace(plan.verdict, reasons=reasons))


def _report(
    target: Workflow, plans: list[CaseMigrationPlan], moved: list[Outcome], not_moved: list[CaseMigrationPlan],
    as_json: bool, *, dry_run: bool,
) -> None:
    can_move = [p for p in plans if p.ok]
    if as_json:
        body: dict[str, object] = {"workflow": target.name, "to_version": target.version, "dry_run": dry_run,
                                   "cases": [p.as_dict() for p in plans]}
        if not dry_run:
            body |= {"moved": [o.as_dict() for o in moved], "not_moved": [p.as_dict() for p in not_moved]}
        print_json(body)
        return
    out = console()
    if dry_run:
        table = Table("case", "state", "from", "can move", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("why not", overflow="fold", ratio=1)
        for p in plans:
            table.add_row(cell(p.case_id), cell(p.state), cell(p.verdict.from_version),
                          Text("yes" if p.ok else "no"), cell("" if p.ok else p.verdict.text()))
        out.print(table)
        out.print(Text(f"dry run, nothing written: {len(can_move)} case(s) can move to {target.name} version "
                       f"{target.version}, {len(not_moved)} cannot"))
        return
    for o in moved:
        out.print(cell(outcome_text(o)), soft_wrap=True)
    for p in not_moved:
        out.print(cell(f"{p.case_id}: not moved ({p.state}): {p.verdict.text()}"), soft_wrap=True)
    out.print(Text(f"moved {len(moved)} case(s) to {target.name} version {target.version}; "
                   f"{len(not_moved)} could not move"))


@commands.command("diagram")
@handled
def diagram_command(
    ctx: typer.Context,
    workflow: WorkflowName = None,
    version: Annotated[str | None, typer.Option("--version", metavar="V", help="Default: the current version.")]
    = None,
    fmt: Annotated[DiagramFormat, typer.Option("--format", help="mermaid text, or png (needs kapflow[diagram]).")]
    = DiagramFormat.mermaid,
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Draw a loaded workflow as a state diagram, straight from its definition."""
    same = _versions_of(_loaded(ctx), workflow)
    chosen = _pick(same, version, same[-1], "--version")
    if fmt is DiagramFormat.png:
        if output is None:
            raise InvalidInput("a PNG needs a file: give --output FILE.png", field="output")
        write_png(chosen, output)
        print(f"wrote {output}")
    elif output is not None:
        output.write_text(mermaid(chosen), encoding="utf-8")
        print(f"wrote {output}")
    else:
        sys.stdout.write(mermaid(chosen))
