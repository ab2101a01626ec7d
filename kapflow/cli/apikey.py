"""API keys of services: ``kapflow apikey create``, ``list`` and ``revoke``.

A key is printed once, when it is created, on stdout alone (so a script can capture it); only its
hash is kept, so a lost key is revoked and replaced, never shown again. Listings never show a
secret or a hash: the key's public id and the last four characters of its secret tell keys apart.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from kapflow.cli.common import (
    AsJson,
    InUtc,
    cell,
    console,
    engine,
    group,
    handled,
    os_actor_id,
    print_json,
    reader,
    shown_calendar,
    time_text,
)

commands = typer.Typer()
apikey_app = group("API keys for services (a practice management system, an intake form): create, list, revoke.")
commands.add_typer(apikey_app, name="apikey")

def _by() -> str:
    """Who ran the command, as the keys' table records it: the operating-system account."""
    return os_actor_id()


@apikey_app.command("create")
@handled
def create_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The service's name, e.g. pms (unique, never reused).")],
    role: Annotated[str, typer.Option("--role", help="The role the service acts in, one a workflow names.")],
    delegate: Annotated[
        list[str] | None,
        typer.Option("--delegate", metavar="ROLE",
                     help="A role of the people the service may act for (Kapflow-On-Behalf-Of); repeat for more."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Create a key and print it once: store it now, it cannot be shown again."""
    text, key = engine(ctx).create_api_key(name, role, delegate or (), created_by=_by())
    if as_json:
        print_json({"key": text, **key.as_dict()})
    else:
        print(text)
    print(f"kapflow: API key {key.id} for {key.name!r} created. Store it now, somewhere safe: it is shown only "
          "this once (kapflow keeps only its hash); if it is lost, revoke it and create another.",
          file=sys.stderr)


@apikey_app.command("list")
@handled
def list_command(ctx: typer.Context, as_json: AsJson = False, utc: InUtc = False) -> None:
    """Every key, revoked ones too: id, name, roles, who created and revoked it (never a secret)."""
    found = reader(ctx)
    keys = found.list_api_keys()
    if as_json:
        print_json([k.as_dict() for k in keys])
        return
    calendar = shown_calendar(found, utc)
    table = Table("id", "name", "role", "may act for", "key", "created", "revoked")
    for k in keys:
        revoked = f"{time_text(calendar, k.revoked_at)} by {k.revoked_by}" if k.revoked_at is not None else ""
        table.add_row(*(cell(v) for v in (
            k.id, k.name, k.role, ", ".join(k.delegate_roles), k.hint,
            f"{time_text(calendar, k.created_at)} by {k.created_by}", revoked,
        )))
    console().print(table)


@apikey_app.command("revoke")
@handled
def revoke_command(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (kapflow apikey list).")],
) -> None:
    """Revoke a key: refused from now on (by running servers within half a minute)."""
    key = engine(ctx).revoke_api_key(key_id, revoked_by=_by())
    print(f"revoked API key {key.id} ({key.name})")
