"""The schema and backups: ``kapflow db upgrade``, ``current``, ``check``, ``backup`` and ``restore``.

They work on the URL alone (through the composition root, ``kapflow.bootstrap``)
and never build an engine, so ``current`` and ``check`` write nothing, even on
a database that is behind.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from kapflow.bootstrap import (
    BASELINE_REVISION,
    NAME_INDEX_REVISION,
    backup_database,
    index_client_names,
    newest_revision,
    restore_database,
    schema_differences,
    schema_revision,
    upgrade_schema,
)
from kapflow.cli.common import fail, group, handled, settings_of
from kapflow.present import EXIT_OTHER, defang

BackupFile = Annotated[Path, typer.Argument(metavar="FILE", help="The backup file, e.g. kapflow-2026-12-06.db.")]

commands = typer.Typer()
db_app = group("Create, upgrade and check the database schema; back up and restore a SQLite database.")
commands.add_typer(db_app, name="db")


def _name(revision: str | None) -> str:
    return revision or "(empty)"


@db_app.command("upgrade")
@handled
def upgrade_command(ctx: typer.Context) -> None:
    """Create the schema, or upgrade it to this kapflow's newest revision (safe to run again)."""
    chosen = settings_of(ctx)
    done = upgrade_schema(chosen.url)
    start = done.before
    if done.stamped:
        start = BASELINE_REVISION
        print(f"kapflow db: tables made before migrations found; marked as revision {start}")
    if start == done.after:
        print(f"kapflow db: already at revision {_name(done.after)} (head)")
    else:
        print(f"kapflow db: upgraded from {_name(start)} to {_name(done.after)}")
    if done.before is not None and done.before < NAME_INDEX_REVISION:  # cases opened before the name index
        indexed = index_client_names(chosen.url, chosen.settings)
        print(f"kapflow db: indexed the client names of {indexed} case(s) for the case list's search")


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


def _size(count: int) -> str:
    """A file's size for people: 1.2 MB (powers of 1000, as file managers show them)."""
    size = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _counted(cases: int, events: int) -> str:
    return (f"{cases} case{'' if cases == 1 else 's'} and "
            f"{events} audit event{'' if events == 1 else 's'}")


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@db_app.command("backup")
@handled
def backup_command(
    ctx: typer.Context,
    target: BackupFile,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE if it exists.")] = False,
) -> None:
    """Copy the SQLite database to FILE (readable by you only), consistently, while kapflow keeps running."""
    done = backup_database(settings_of(ctx).url, target, overwrite=overwrite)
    print(defang(f"kapflow db: backed up {_counted(done.cases, done.audit_events)} ({_size(done.bytes)}) "
                 f"to {done.path} at {_utc(done.taken_at)}"))


@db_app.command("restore")
@handled
def restore_command(
    ctx: typer.Context,
    source: BackupFile,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a database that holds cases (stop the worker and API first).")
    ] = False,
) -> None:
    """Put a backup made by kapflow db backup back into the database (a new one, or any with --replace)."""
    done = restore_database(source, settings_of(ctx).url, replace=replace)
    print(defang(f"kapflow db: restored {_counted(done.cases, done.audit_events)} (revision {done.revision}) "
                 f"from {done.source} into {done.path}"))
