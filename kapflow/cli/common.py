"""What every command group shares: options, error handling, the console, the engine, --data and JSON.

A ``KapflowError`` becomes one line on stderr and the exit code
``kapflow.present.exit_code`` gives it, never a traceback. Consoles are built
with markup and emoji off, so text from the database (names, notes) holding
``[bold]`` or ``:smile:`` is printed exactly as stored; C1 control characters
are escaped (``kapflow.present.defang``). Nothing is logged from here.

Times are shown for staff in the practice's calendar (``shown_calendar``): its zone, with the
abbreviation on every value (``EDT``/``EST``), in its clock style; UTC under ``--utc``. ``--json``
keeps ISO 8601 UTC.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec

import typer
from rich.console import Console
from rich.text import Text

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine, database_url
from kapflow.config import Settings
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import Actor
from kapflow.domain.payload import canonical_json
from kapflow.domain.workflow import WORKER_ROLE
from kapflow.errors import InvalidInput, KapflowError
from kapflow.present import EXIT_OTHER, defang, error_body, exit_code

P = ParamSpec("P")

_PIPE_WIDTH = 200
NARROW = 120
"""Below this many columns, tables stack their cells (a terminal of 80 shows every column whole)."""

CaseId = Annotated[str, typer.Argument(help="The case id, e.g. case-0123456789abcdef.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ActorId = Annotated[str, typer.Option("--actor", help="Who acts: an id the practice knows them by.")]
Role = Annotated[str, typer.Option("--role", help="The role they act in, one the case's workflow names.")]
Data = Annotated[str | None, typer.Option("--data", help='A JSON object, e.g. \'{"reason": "travelling"}\'.')]
Fact = Annotated[str, typer.Option("--data", help="The intake form or fact as a JSON object.")]
Key = Annotated[str | None, typer.Option("--idempotency-key", help="Repeat a command safely: same key, same result.")]
Expected = Annotated[int | None, typer.Option("--expected-version", help="Refuse unless the case is at this version.")]
WorkflowName = Annotated[
    str | None, typer.Option("--workflow", metavar="NAME", help="Which loaded workflow (needed when several are).")
]
InUtc = Annotated[
    bool, typer.Option("--utc", help="Show times in UTC, not in the practice's time zone (--json is always UTC).")
]


@dataclass(frozen=True)
class CliSettings:
    """What the root options chose: the database URL and the practice's settings."""

    url: str
    settings: Settings = field(default_factory=Settings)
    config: Path | None = None  # the settings file, for processes this one starts (kapflow serve's workers)


def group(help_text: str) -> typer.Typer:
    """A typer for a command group, configured as the root is."""
    return typer.Typer(help=help_text, pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)


def settings_of(ctx: typer.Context) -> CliSettings:
    found = ctx.find_object(CliSettings)
    return found if found is not None else CliSettings(database_url())


def handled(command: Callable[P, None]) -> Callable[P, None]:
    """Turn kapflow's errors into one line on stderr and an exit code; never show a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except KapflowError as err:
            fail_with(err)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            # A traceback's frames can hold a client's data; show only the type unless debugging.
            if os.environ.get("KAPFLOW_DEBUG"):
                raise
            fail(f"internal_error: unexpected {type(exc).__name__}; this is a bug in kapflow, "
                 "please report it (KAPFLOW_DEBUG=1 shows the traceback)", EXIT_OTHER)

    return run


def acting(actor: str, role: str) -> Actor:
    """The actor a command claims, with the operating-system account that ran it recorded beside.

    The command line takes ``--actor`` and ``--role`` on the caller's word until the HTTP API
    brings real identity, so every event it writes also names the account (from its uid, not
    ``$USER``, which the caller sets). The worker's role is never the caller's to claim.
    """
    if role == WORKER_ROLE:
        raise InvalidInput(
            f"the role {WORKER_ROLE!r} is the worker's: it cannot be claimed from the command line", field="role"
        )
    return Actor(actor, role, os_user=os_user())


def os_user() -> str:
    """The name of the account this process runs as (its effective uid)."""
    try:
        import pwd
    except ImportError:  # Windows: no uids
        try:
            return getpass.getuser()
        except OSError:
            return "unknown"
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without an account (containers)
        return f"uid:{os.geteuid()}"


_NOT_IDENT = re.compile(r"[^A-Za-z0-9_.:@-]")


def os_actor_id() -> str:
    """Who ran an administrative command (keys, accounts), as an id: ``os:`` and the operating-system account."""
    return "os:" + _NOT_IDENT.sub("_", os_user())[:190]


def fail_with(err: KapflowError, code: int | None = None) -> NoReturn:
    """``err`` as one line on stderr, exiting with ``code`` (default: its exit code)."""
    body = error_body(err)
    fail(f"{body['error']}: {body['message']}", exit_code(err) if code is None else code)


def fail(line: str, code: int) -> NoReturn:
    print(f"kapflow: {defang(' '.join(line.split()))}", file=sys.stderr)
    raise typer.Exit(code)


def console() -> Console:
    """A console for tables and text: markup and emoji off; 200 wide when piped, unless $COLUMNS says."""
    made = Console(markup=False, emoji=False, highlight=False)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = _PIPE_WIDTH  # piped into a file or grep: keep rows whole rather than 80 wide
    return made


def narrow(out: Console) -> bool:
    return out.width < NARROW


def engine(ctx: typer.Context) -> Engine:
    """The engine the root options describe (composition root: ``kapflow.bootstrap``), closed with the command.

    For commands that write: it creates the database, or brings its schema up to date, if needed.
    """
    return _built(ctx, create_database=True)


def reader(ctx: typer.Context) -> Engine:
    """``engine`` for commands that only read: a database that does not exist yet is an error, never created."""
    return _built(ctx, create_database=False)


def _built(ctx: typer.Context, *, create_database: bool) -> Engine:
    found = settings_of(ctx)
    built = build_engine(found.url, settings=found.settings, create_database=create_database)
    ctx.call_on_close(built.close)
    return built


def workflow_name(loaded: Sequence[str], name: str | None) -> str:
    """``--workflow``: the name given, if loaded; else the only workflow loaded; else a clear ``InvalidInput``."""
    if name is None:
        if len(loaded) != 1:
            raise InvalidInput(f"several workflows are loaded ({', '.join(loaded)}): give --workflow NAME",
                               field="workflow")
        return loaded[0]
    if name not in loaded:
        raise InvalidInput(f"unknown workflow {name!r}; loaded: {', '.join(loaded)}", field="workflow")
    return name


def parse_data(text: str | None) -> dict[str, Any] | None:
    """``--data``: a JSON object, or a clear ``InvalidInput`` saying what is wrong with it."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"--data is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            'give an object like \'{"reason": "travelling"}\'',
            field="data",
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput('--data must be a JSON object like \'{"reason": "travelling"}\'', field="data")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # json.loads turns "\\ud800" into a lone surrogate, which no database can store as text.
        raise InvalidInput("--data holds a lone surrogate (\\ud800-\\udfff): give valid Unicode text",
                           field="data") from None
    return value


def print_json(value: object) -> None:
    # C1 characters only occur inside JSON strings, where their \\u escape means the same.
    print(defang(json.dumps(value, indent=2, ensure_ascii=False)))


def cell(value: object) -> Text:
    """A table cell of text as stored (defanged)."""
    return Text(defang(str(value)))


def json_cell(value: object, *, spaced: bool = False) -> Text:
    """JSON as stored (canonical); ``spaced``: with a space after each comma and colon, to wrap between items."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if spaced else canonical_json(value)
    return Text(defang(text))


def shown_calendar(built: Engine, utc: bool = False) -> PracticeCalendar:
    """The calendar to show times with: the practice's (its zone and clock style), or UTC in its clock style (--utc)."""
    practice = built.app.practice
    return PracticeCalendar(UTC, clock=practice.clock) if utc else practice


def _instant(moment: datetime | str) -> datetime:
    """``moment``, or the instant an ISO 8601 text (the JSON shapes') names."""
    at = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # kapflow stores UTC


def time_text(calendar: PracticeCalendar, moment: datetime | str) -> str:
    """A time for staff on one line, in ``calendar``'s zone and style: ``2026-03-09 10:00 EDT`` (``10:00 AM EDT``)."""
    return calendar.time_text(_instant(moment))


def stacked_time(calendar: PracticeCalendar, moment: datetime | str) -> str:
    """``time_text`` with the date over the time of day, for a narrow column."""
    at = _instant(moment)
    return f"{calendar.local_date(at):%Y-%m-%d}\n{calendar.clock_text(at)}"


def write_private(path: Path, data: bytes) -> None:
    """``data`` to ``path``, readable by its owner only (the mode is set even on a file that existed)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:  # os.write may write less than asked (a large PDF on a pipe or a full disk)
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path} ({exc.strerror or type(exc).__name__})", field="out") from None
