"""Local accounts of the web console: ``kapflow user add``, ``list``, ``disable``, ``passwd`` and ``totp``.

For practices without an OpenID provider. A password is read with a hidden prompt (twice), or for
scripts from the environment variable ``--password-env`` names; it is never an argument (a command
line is visible to every user of the machine). Only its argon2id hash is kept. A TOTP secret is
shown once, as the ``otpauth://`` URI an authenticator app takes, on stdout alone.
"""

from __future__ import annotations

import os
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
    os_user,
    print_json,
    reader,
    shown_calendar,
    time_text,
)
from kapflow.domain.case import Actor
from kapflow.errors import InvalidInput

commands = typer.Typer()
user_app = group("Local accounts of the web console (without an OpenID provider): add, list, disable, passwd, totp.")
commands.add_typer(user_app, name="user")

Name = Annotated[str, typer.Argument(metavar="NAME", help="The login name, e.g. jordan.lee.")]
PasswordEnv = Annotated[
    str | None,
    typer.Option("--password-env", metavar="VAR",
                 help="Read the password from this environment variable (for scripts), not a prompt."),
]


def _admin() -> Actor:
    """Who ran the command: the operating-system account, as the accounts' table records it."""
    return Actor(os_actor_id(), "administrator", os_user=os_user())


def _password(env: str | None) -> str:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise InvalidInput(f"--password-env: the environment variable {env} is unset or empty",
                               field="password_env")
        return value
    entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return entered


def _show_totp(uri: str, name: str) -> None:
    print(uri)
    print(f"kapflow: scan this otpauth:// URI into {name}'s authenticator app now (as a QR code, or paste its "
          "secret): it is shown only this once.", file=sys.stderr)


@user_app.command("add")
@handled
def add_command(
    ctx: typer.Context,
    name: Name,
    role: Annotated[str, typer.Option("--role", help="Their role, one a loaded workflow names.")],
    totp: Annotated[bool, typer.Option("--totp", help="Require a TOTP code too; prints its URI once.")] = False,
    password_env: PasswordEnv = None,
) -> None:
    """Add an account (asks for its password twice)."""
    password = _password(password_env)
    built = engine(ctx)
    user, secret = built.add_user(name, role, password, totp=totp, actor=_admin())
    if secret is not None:
        _show_totp(built.totp_uri(user.name, secret), user.name)
    print(f"kapflow: console user {user.name!r} added in role {user.role}.", file=sys.stderr)


@user_app.command("list")
@handled
def list_command(ctx: typer.Context, as_json: AsJson = False, utc: InUtc = False) -> None:
    """Every account, disabled ones too (never a password hash or a TOTP secret)."""
    found = reader(ctx)
    users = found.list_users()
    if as_json:
        print_json([u.as_dict() for u in users])
        return
    if not users:
        print("no console users yet: add one with kapflow user add NAME --role ROLE")
        return
    calendar = shown_calendar(found, utc)
    table = Table("name", "role", "totp", "created", "disabled")
    for u in users:
        table.add_row(*(cell(v) for v in (
            u.name, u.role, "yes" if u.totp else "no", f"{time_text(calendar, u.created_at)} by {u.created_by}",
            time_text(calendar, u.disabled_at) if u.disabled_at is not None else "",
        )))
    console().print(table)


@user_app.command("disable")
@handled
def disable_command(ctx: typer.Context, name: Name) -> None:
    """Disable an account: it cannot sign in, and its sessions end now."""
    user = engine(ctx).disable_user(name, actor=_admin())
    print(f"disabled console user {user.name}")


@user_app.command("passwd")
@handled
def passwd_command(ctx: typer.Context, name: Name, password_env: PasswordEnv = None) -> None:
    """Set an account's password (asks twice); its sessions end."""
    password = _password(password_env)
    user = engine(ctx).set_password(name, password, actor=_admin())
    print(f"password of console user {user.name} set")


@user_app.command("totp")
@handled
def totp_command(ctx: typer.Context, name: Name) -> None:
    """Give an account a new TOTP secret (the old one stops working); prints its URI once."""
    built = engine(ctx)
    secret = built.reset_totp(name, actor=_admin())
    _show_totp(built.totp_uri(name, secret), name)
