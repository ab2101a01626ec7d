"""The audit history: ``kapflow audit verify``."""

from __future__ import annotations

from typing import Annotated

import typer

from kapflow.cli.common import AsJson, console, group, handled, print_json, reader
from kapflow.cli.render import print_audit
from kapflow.present import EXIT_OTHER, audit_report_shape

commands = typer.Typer()
audit_app = group("Check the audit history.")
commands.add_typer(audit_app, name="audit")


@audit_app.command("verify")
@handled
def audit_verify(
    ctx: typer.Context,
    case_id: Annotated[str | None, typer.Option("--case", help="Verify one case only.")] = None,
    as_json: AsJson = False,
) -> None:
    """Verify the hash-chained audit history; exit 1 naming the first broken row of each case."""
    report = reader(ctx).verify_audit(case_id)
    if as_json:
        print_json(audit_report_shape(report))
    else:
        print_audit(console(), report)
    if not report.ok:
        raise typer.Exit(EXIT_OTHER)
