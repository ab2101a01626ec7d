"""The schema's commands: ``kapflow db upgrade``, ``kapflow db current``, ``kapflow db check``.

They work on the URL alone and never build an engine, so ``current`` and
``check`` write nothing, even on a database that is behind.
"""

from __future__ import annotations

import typer

from kapflow.bootstrap import database_url
from kapflow.cli import EXIT_OTHER, _fail, _handled, _Settings, app
from kapflow.store import schema

db_app = typer.Typer(help="Create, upgrade and check the database schema.", no_args_is_help=True,
                     pretty_exceptions_enable=False)
app.add_typer(db_app, name="db")


def _url(ctx: typer.Context) -> str:
    found = ctx.find_object(_Settings)
    return found.url if found else database_url()


def _name(revision: str | None) -> str:
    return revision or "(empty)"


@db_app.command("upgrade")
@_handled
def upgrade_command(ctx: typer.Context) -> None:
    """Create the schema, or upgrade it to this kapflow's newest revision (safe to run again)."""
    done = schema.upgrade(_url(ctx))
    start = done.before
    if done.stamped:
        start = schema.BASELINE
        print(f"kapflow db: tables made before migrations found; marked as revision {start}")
    if start == done.after:
        print(f"kapflow db: already at revision {_name(done.after)} (head)")
    else:
        print(f"kapflow db: upgraded from {_name(start)} to {_name(done.after)}")


@db_app.command("current")
@_handled
def current_command(ctx: typer.Context) -> None:
    """The database's schema revision, and whether it is this kapflow's newest."""
    revision, newest = schema.current(_url(ctx)), schema.head()
    if revision == newest:
        print(f"{revision} (head)")
    else:
        print(f"{_name(revision)} (not at head {newest}: run kapflow db upgrade)")


@db_app.command("check")
@_handled
def check_command(ctx: typer.Context) -> None:
    """Exit 1, listing each difference, unless the database matches this kapflow's models."""
    url = _url(ctx)
    revision, newest = schema.current(url), schema.head()
    differences = schema.check(url)
    for difference in differences:
        print(f"  {difference}")
    if revision != newest:
        _fail(f"schema_mismatch: the database is at revision {_name(revision)}, not {newest}; "
              "run kapflow db upgrade", EXIT_OTHER)
    if differences:
        places = f"{len(differences)} place" + ("s" if len(differences) > 1 else "")
        _fail(f"schema_mismatch: the database differs from the models in {places} (listed above); "
              "a migration is missing or the database was changed by hand", EXIT_OTHER)
    print(f"kapflow db: revision {newest}, matches the models")
