"""The ``kapflow`` command line: look at cases, move them, check the audit history, run the demo.

Every command takes the database from the root option ``--db URL`` (else the
settings' ``database``, else ``$KAPFLOW_DB``, else ``sqlite:///kapflow.db``) and
the practice's settings from ``--config FILE``. A ``KapflowError`` becomes one
line on stderr and an exit code, never a traceback (the table is in
``kapflow.present``):

    0 done · 1 other failure (or a broken audit chain) · 2 bad input or settings
    3 refused, blocked or changed meanwhile (a refusal is audited) · 4 unknown case

This module builds the app; each command group lives in its own module
(``cases``, ``appointments``, ``worker``, ``db``, ``workflow``, ``audit``,
``demo``, ``apikey``, ``user``), which imports only ``common`` and ``render`` of this package and
shapes its output with ``kapflow.present``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kapflow.bootstrap import database_url
from kapflow.cli import apikey, appointments, audit, billing, cases, db, demo, serve, user, worker, workflow
from kapflow.cli.common import CliSettings, fail_with
from kapflow.config import load_settings
from kapflow.errors import KapflowError
from kapflow.present import EXIT_INPUT

__all__ = ["app", "main"]

app = typer.Typer(
    name="kapflow",
    help="kapflow: audited clinical workflows.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    db_url: Annotated[
        str | None,
        typer.Option("--db", metavar="URL", help="Database URL (else $KAPFLOW_DB, else sqlite:///kapflow.db)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", envvar="KAPFLOW_CONFIG",
                     help="The practice's settings (TOML): workflows, channels, calendar, contacts, time zone."),
    ] = None,
) -> None:
    try:
        # Only the worker delivers: every other command works without the channels' secrets.
        settings = load_settings(config, secrets=ctx.invoked_subcommand == "worker")
    except KapflowError as err:
        fail_with(err, EXIT_INPUT)  # a settings file that cannot be read or is wrong is bad input
    ctx.obj = CliSettings(database_url(db_url, settings), settings, config)


for _group in (cases, appointments, billing, audit, workflow, demo, worker, db, apikey, user, serve):
    app.add_typer(_group.commands)


def main() -> None:
    """The console script ``kapflow``."""
    app()
