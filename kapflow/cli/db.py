"""The schema: ``kapflow db upgrade``, ``kapflow db current``, ``kapflow db check``.

They work on the URL alone (through the composition root, ``kapflow.bootstrap``)
and never build an engine, so ``current`` and ``check`` write nothing, even on
a database that is behind.
"""

from __future__ import annotations

import typer

from kapflow.bootstrap import BASELINE_REVISION, newest_revision, schema_differences, schema_revision, upgrade_schema
from kapflow.cli.common import fail, group, handled, settings_of
from kapflow.present import EXIT_OTHER

commands = typer.Typer()
db_app = group("Create, upgrade and check the database schema.")
commands.add_typer(db_app, name="db")


def _name(revision: str | None) -> str:
    return revision or "(empty)"


@db_app.command("upgrade")
@handled
def upgrade_command(ctx: typer.Context) -> None:
    """Create the schema, or upgrade it to this kapflow's newest revision (safe to run again)."""
    done = upgrade_schema(settings_of(ctx).url)
    start = done.before
    if done.stamped:
        start = BASELINE_REVISION
        print(f"kapflow db: tables made before migrations found; marked as revision {start}")
    if start == done.after:
        print(f"kapflow db: already at revision {_name(done.after)} (head)")
    else:
        print(f"kapflow db: upgraded from {_name(start)} to {_name(done.after)}")


@db_app.command("current")
@handled
def current_command(ctx: typer.Context) -> None:
    """The database's schema revision, and whether it is this kapflow's newest."""
    revision, newest = schema_revision(settings_of(ctx).url), newest_revision()
    if revision == newest:
        print(f"{revision} (head)")
    else:
        print(f"{_name(revision)} (not at head {newest}: run kapflow db upgrade)")


@db_app.command("check")
@handled
def check_command(ctx: typer.Context) -> None:
    """Exit 1, listing each difference, unless the database matches this kapflow's models."""
    url = settings_of(ctx).url
    revision, newest = schema_revision(url), newest_revision()
    differences = schema_differences(url)
    for difference in differences:
        print(f"  {difference}")
    if revision != newest:
        fail(f"schema_mismatch: the database is at revision {_name(revision)}, not {newest}; "
             "run kapflow db upgrade", EXIT_OTHER)
    if differences:
        places = f"{len(differences)} place" + ("s" if len(differences) > 1 else "")
        fail(f"schema_mismatch: the database differs from the models in {places} (listed above); "
             "a migration is missing or the database was changed by hand", EXIT_OTHER)
    print(f"kapflow db: revision {newest}, matches the models")
