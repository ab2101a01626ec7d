"""Workflow versions from the command line: ``kapflow workflow list``, ``diff`` and ``migrate``.

The versions are those the settings name (``workflows = [...]``, oldest
first); the last is the one new cases open on. ``migrate --dry-run`` writes
nothing; ``migrate`` moves each case that can move in its own transaction,
audited, and lists those that cannot (exit 0 all the same: they are reported,
not failures).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from kapflow.bootstrap import load_workflows
from kapflow.cli import AsJson, _console, _engine, _handled, _print_json, _Settings, app
from kapflow.config import Settings
from kapflow.domain.case import Actor, Outcome
from kapflow.domain.errors import Blocker, ConcurrencyConflict, InvalidInput, MigrationRefused
from kapflow.domain.versions import diff_workflows
from kapflow.domain.workflow import Workflow
from kapflow.engine import Engine
from kapflow.migrate import CaseMigrationPlan, migrate_case, plan_migration

workflow_app = typer.Typer(help="Workflow versions: list them, compare two, move cases in flight.",
                           no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(workflow_app, name="workflow")

_CHANGED = Blocker("changed_meanwhile", "the case changed while the migration ran; run it again")


def _versions(ctx: typer.Context) -> list[Workflow]:
    found = ctx.find_object(_Settings)
    return load_workflows((found.settings if found else Settings()).workflows)


def _pick(versions: list[Workflow], version: str | None, default: Workflow, option: str) -> Workflow:
    """The loaded version of the current workflow named ``version`` (``default`` if not given)."""
    if version is None:
        return default
    for wf in versions:
        if wf.name == default.name and wf.version == version:
            return wf
    loaded = ", ".join(wf.version for wf in versions if wf.name == default.name)
    raise InvalidInput(f"{option}: version {version!r} of {default.name!r} is not loaded; loaded: {loaded}",
                       field=option.lstrip("-"))


@workflow_app.command("list")
@_handled
def list_command(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Every version loaded (the last opens new cases) and how many cases are on each."""
    versions = _versions(ctx)
    engine = _engine(ctx)
    total, in_flight = Counter[tuple[str, str]](), Counter[tuple[str, str]]()
    loaded = {wf.key: wf for wf in versions}
    for case in engine.store.iter_cases():  # streamed: one case in memory at a time
        key = (case.workflow, case.workflow_version)
        total[key] += 1
        wf = loaded.get(key)
        if wf is not None and not wf.state(case.state).final:
            in_flight[key] += 1
    rows = [{"name": wf.name, "version": wf.version, "current": wf is versions[-1], "loaded": True,
             "cases": total[wf.key], "in_flight": in_flight[wf.key]} for wf in versions]
    # Cases on a version nobody loaded cannot be moved or even read: show them rather than hide them.
    rows += [{"name": k[0], "version": k[1], "current": False, "loaded": False, "cases": n, "in_flight": None}
             for k, n in sorted(total.items()) if k not in loaded]
    if as_json:
        _print_json(rows)
        return
    table = Table("workflow", "version", "status", "cases", "in flight", box=box.SIMPLE_HEAD, pad_edge=False)
    for r in rows:
        status = "current (new cases)" if r["current"] else ("loaded" if r["loaded"] else "NOT LOADED")
        table.add_row(*(Text(str(v)) for v in (r["name"], r["version"], status, r["cases"],
                                                 "?" if r["in_flight"] is None else r["in_flight"])))
    _console().print(table)


@workflow_app.command("diff")
@_handled
def diff_command(
    ctx: typer.Context,
    from_version: Annotated[str | None, typer.Option("--from", metavar="V", help="Default: the one before --to.")]
    = None,
    to_version: Annotated[str | None, typer.Option("--to", metavar="V", help="Default: the current version.")]
    = None,
    as_json: AsJson = False,
) -> None:
    """What changes between two versions: states, transitions, guards, thresholds, facts, roles."""
    versions = _versions(ctx)
    same = [wf for wf in versions if wf.name == versions[-1].name]
    new = _pick(versions, to_version, same[-1], "--to")
    before = same[: same.index(new)]
    if from_version is None and not before:
        raise InvalidInput(f"no version of {new.name!r} before {new.version!r} is loaded; give --from V, or list "
                           "two versions in the settings' workflows", field="from")
    old = _pick(versions, from_version, before[-1] if before else new, "--from")
    diff = diff_workflows(old, new)
    if as_json:
        _print_json(diff.as_dict())
    else:
        _console().print(Text(diff.text()), soft_wrap=True)


@workflow_app.command("migrate")
@_handled
def migrate_command(
    ctx: typer.Context,
    to_version: Annotated[str, typer.Option("--to", metavar="V", help="The version to move cases to.")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who migrates (not needed for --dry-run).")] = None,
    role: Annotated[str | None, typer.Option("--role", help="Their role: staff (front_desk, prescriber, ...).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what can move and why not; write nothing.")]
    = False,
    as_json: AsJson = False,
) -> None:
    """Move in-flight cases to another version: each that can, in its own audited transaction."""
    if not dry_run and (actor is None or role is None):
        raise InvalidInput("give --actor and --role: a migration is audited under who did it", field="actor")
    versions = _versions(ctx)
    target = _pick(versions, to_version, versions[-1], "--to")
    engine = _engine(ctx)
    plans = plan_migration(engine, target)  # collected first: no cursor stays open while cases are written
    if dry_run or actor is None or role is None:
        _report(target, plans, [], [p for p in plans if not p.ok], as_json, dry_run=True)
        return
    moved, not_moved = _migrate_all(engine, target, plans, Actor(actor, role))
    _report(target, plans, moved, not_moved, as_json, dry_run=False)


def _migrate_all(
    engine: Engine, target: Workflow, plans: list[CaseMigrationPlan], actor: Actor
) -> tuple[list[Outcome], list[CaseMigrationPlan]]:
    moved: list[Outcome] = []
    not_moved = [p for p in plans if not p.ok]
    for plan in (p for p in plans if p.ok):
        try:
            # The version planned: a case that changed since is left alone, not judged again unseen.
            moved.append(migrate_case(engine, plan.case_id, target, actor, expected_version=plan.version))
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
        _print_json(body)
        return
    console = _console()
    if dry_run:
        table = Table("case", "state", "from", "can move", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("why not", overflow="fold")
        for p in plans:
            table.add_row(Text(p.case_id), Text(p.state), Text(p.verdict.from_version),
                          Text("yes" if p.ok else "no"), Text("" if p.ok else p.verdict.text()))
        console.print(table)
        console.print(Text(f"dry run, nothing written: {len(can_move)} case(s) can move to {target.name} version "
                           f"{target.version}, {len(not_moved)} cannot"))
        return
    for o in moved:
        console.print(Text(f"{o.case_id}: moved from version {o.extra['from_version']} to "
                           f"{o.extra['to_version']} ({o.state}), version {o.version}"), soft_wrap=True)
    for p in not_moved:
        console.print(Text(f"{p.case_id}: not moved ({p.state}): {p.verdict.text()}"), soft_wrap=True)
    console.print(Text(f"moved {len(moved)} case(s) to {target.name} version {target.version}; "
                       f"{len(not_moved)} could not move"))
