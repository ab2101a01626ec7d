"""The audit history: ``kapflow audit verify``, ``checkpoint``, ``keygen``, ``export``, ``prove``, ``access``."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from kapflow.audit.checkpoint_file import note_opener, read_lines
from kapflow.audit.export_formats import ExportFormat, Paper, PdfView, render_bytes
from kapflow.audit.proof import prove_export
from kapflow.bootstrap import audit_verifiers, build_checkpointer, write_key_pair
from kapflow.cli.common import (
    AsJson,
    InUtc,
    cell,
    console,
    engine,
    fail,
    group,
    handled,
    narrow,
    print_json,
    reader,
    settings_of,
    shown_calendar,
    stacked_time,
    time_text,
    write_private,
)
from kapflow.cli.render import print_audit, print_log
from kapflow.domain.calendar import PracticeCalendar
from kapflow.errors import InvalidInput
from kapflow.present import EXIT_INPUT, EXIT_OTHER, audit_report_shape, defang, event_summary, proof_text

commands = typer.Typer()
audit_app = group("Check the audit history, sign its checkpoints, and manage the signing key.")
commands.add_typer(audit_app, name="audit")

Checkpoints = Annotated[Path | None, typer.Option(
    "--checkpoints", help="The checkpoint file (kept outside the database) to verify the log against.")]
PublicKey = Annotated[Path | None, typer.Option(
    "--public-key", help="The log's public key file (every key it has used); with --checkpoints.")]


@audit_app.command("verify")
@handled
def audit_verify(
    ctx: typer.Context,
    case_id: Annotated[str | None, typer.Option(
        "--case", help="Verify one case: its chain, and with --checkpoints its events' proofs.")] = None,
    checkpoints: Checkpoints = None,
    public_key: PublicKey = None,
    as_json: AsJson = False,
) -> None:
    """Verify every case's hash chain and the audit log against signed checkpoints; exit 1 naming what differs.

    With --checkpoints and --public-key, the log is held against checkpoints kept outside the database:
    an edit, deletion or rewrite made before the newest one is found. Entries after it are reported as
    not yet covered, never as verified.
    """
    if (checkpoints is None) != (public_key is None):
        fail("input_error: --checkpoints and --public-key go together: the file's signatures are checked "
             "with the key", EXIT_INPUT)
    built = reader(ctx)
    report = built.verify_audit(case_id)
    lines = opener = None
    if checkpoints is not None and public_key is not None:
        opener = note_opener(audit_verifiers(public_key))
        lines = read_lines(checkpoints)
    if case_id is not None:
        proof = None if lines is None or opener is None else built.verify_case_log(case_id, lines, opener)
        if as_json:
            shape = report.as_dict()
            if proof is not None:
                shape.update(proof=proof.as_dict(), ok=report.ok and proof.ok)
            print_json(shape)
        else:
            print_audit(console(), report)
            if proof is not None:
                print(defang(proof_text(proof)))
        if not report.ok or (proof is not None and not proof.ok):
            raise typer.Exit(EXIT_OTHER)
        return
    log = built.verify_log(lines, opener)
    if as_json:
        print_json(audit_report_shape(report, log))
    else:
        out = console()
        print_audit(out, report)
        print_log(out, log)
    if not report.ok or log.status == "failed":
        raise typer.Exit(EXIT_OTHER)


@audit_app.command("checkpoint")
@handled
def audit_checkpoint(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Sign a checkpoint even if the log has not grown.")] = False,
    as_json: AsJson = False,
) -> None:
    """Place every waiting entry in the audit log, then sign its head and write it to the checkpoint file."""
    settings = settings_of(ctx).settings
    built = engine(ctx)
    checkpointer = build_checkpointer(built, settings)
    if checkpointer is None:
        fail("config_error: no signing key: set KAPFLOW_AUDIT_SIGNING_KEY (or [audit] signing_key_env) or "
             "[audit] signing_key_file; kapflow audit keygen makes one", EXIT_INPUT)
    record = checkpointer(force=force)
    size = built.store.log().size()
    if as_json:
        print_json({"signed": record is not None, "size": size,
                    "checkpoint": None if record is None else record.note})
    elif record is None:
        print(f"kapflow audit: the newest checkpoint already covers all {size} entries")
    else:
        where = settings.audit.checkpoint_file or "the database only (set [audit] checkpoint_file)"
        print(f"kapflow audit: signed a checkpoint of {record.size} entries (key {record.key_name} "
              f"{record.key_id}); written to {where}")


@audit_app.command("keygen")
@handled
def audit_keygen(
    name: Annotated[str, typer.Option("--name", help="The key's name, e.g. example-practice-2026.")],
    private: Annotated[Path, typer.Option("--private", help="Where to write the private key (0600; never logged).")],
    public: Annotated[Path, typer.Option("--public", help="The public key file to append the new key to.")],
) -> None:
    """Make a checkpoint signing key: the private key file (0600) and its public key, appended to the public file."""
    verifier = write_key_pair(name, private, public)
    print(f"kapflow audit: wrote the private key to {private} (keep it secret, back it up offline) and "
          f"appended the public key to {public}:\n{verifier}")


@audit_app.command("export")
@handled
def audit_export(
    ctx: typer.Context,
    case_id: Annotated[str, typer.Option("--case", help="The case whose history to export.")],
    form: Annotated[ExportFormat, typer.Option(
        "--format", help="jsonl and fhir can be proven (kapflow audit prove); csv is for a spreadsheet; pdf is "
                         "for a records request (the pdf extra).")
    ] = ExportFormat.JSONL,
    checkpoint: Annotated[int | None, typer.Option(
        "--checkpoint", metavar="SIZE", help="Prove against the checkpoint of this size (default: the newest).")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "--output", help="Write to this file (0600: it holds client data) instead of stdout.")] = None,
    paper: Annotated[Paper, typer.Option("--paper", help="The PDF's paper size (--format pdf).")] = Paper.LETTER,
    utc: InUtc = False,
) -> None:
    """Write a case's history, each event with its log position and inclusion proof against a signed checkpoint.

    Events written after the checkpoint are marked not yet covered, without a proof. The file holds the
    client's data: hand it over as such. --format pdf lays the history out for reading, its times in the
    practice's time zone; it is written to --output, or to stdout only when that is not a terminal.
    """
    if form.binary and out is None and _is_terminal():
        fail(f"input_error: a {form} file is not for a terminal: give --output FILE (written 0600), or redirect "
             "stdout to a file", EXIT_INPUT)
    built = reader(ctx)
    export = built.export_case(case_id, checkpoint_size=checkpoint)
    view = PdfView(shown_calendar(built, utc), built.clock.now(), event_summary, paper)
    data = render_bytes(export, form, view if form is ExportFormat.PDF else None)
    if out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_private(out, data)


def _is_terminal() -> bool:
    """Whether stdout is a terminal (a PDF is never written to one)."""
    return sys.stdout.isatty()


@audit_app.command("prove")
@handled
def audit_prove(
    file: Annotated[Path, typer.Argument(help="A case export in the jsonl or fhir format (kapflow audit export).")],
    public_key: Annotated[Path, typer.Option(
        "--public-key", help="The log's public key file (every key it has used).")],
    as_json: AsJson = False,
) -> None:
    """Check a case export offline with the public key only; exit 1 naming the first event that fails.

    Needs no database: the checkpoint's signature, each event's chain hash and each inclusion proof are
    checked from the file. Events the checkpoint does not cover yet are counted, never called proven.
    """
    opener = note_opener(audit_verifiers(public_key))
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {file} as UTF-8 text ({type(exc).__name__})", field="file") from None
    report = prove_export(text, opener)
    if as_json:
        print_json(report.as_dict())
    else:
        print(defang(proof_text(report)))
    if not report.ok:
        raise typer.Exit(EXIT_OTHER)


_WHEN_HELP = ("A date (a whole day in the practice's time zone; UTC with --utc) or a time, e.g. 2026-12-01 or "
              "2026-12-01T09:00-05:00.")


@audit_app.command("access")
@handled
def audit_access(
    ctx: typer.Context,
    case_id: Annotated[str | None, typer.Option("--case", metavar="ID", help="Who read this case.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this day or time on. " + _WHEN_HELP)] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Up to this day (the whole day included) or time (excluded). " + _WHEN_HELP)] = None,
    actor: Annotated[str | None, typer.Option("--actor", metavar="ID", help="Only this person's reads.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Show at most this many.")] = 1000,
    as_json: AsJson = False,
    utc: InUtc = False,
) -> None:
    """Who read a case through the API (and through which service), which view, and when; oldest first.

    Give --case, --actor or both: "who looked at this case this month" is --case ID --since 2026-12-01.
    The access log holds ids, roles and view names only, never what was read.
    """
    if case_id is None and actor is None:
        fail("input_error: give --case ID (who read the case), --actor ID (what they read), or both", EXIT_INPUT)
    built = reader(ctx)
    calendar = shown_calendar(built, utc)
    found = built.accesses(case_id=case_id, since=_bound(calendar, since, "since", end=False),
                           until=_bound(calendar, until, "until", end=True), actor=actor, limit=limit)
    if len(found) == limit:
        print(f"kapflow audit: showing the first {limit} reads; narrow with --since/--until or raise --limit",
              file=sys.stderr)
    if as_json:
        print_json([r.as_dict() for r in found])
        return
    out = console()
    stacked = narrow(out)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for title in ("when", *(() if case_id is not None else ("case",)), "who", "role", "via", "view"):
        table.add_column(title, overflow="fold")
    for r in found:
        when = stacked_time(calendar, r.at) if stacked else time_text(calendar, r.at)
        table.add_row(cell(when), *(() if case_id is not None else (cell(r.case_id),)), cell(r.actor),
                      cell(r.role), cell(r.via or ""), cell(r.view))
    if not found:  # an empty table says less than a sentence
        print("kapflow audit: no read of a case matches (its case, actor and dates)")
        return
    out.print(table)


def _bound(calendar: PracticeCalendar, text: str | None, name: str, *, end: bool) -> datetime | None:
    """``--since``/``--until``: a date is a whole day of ``calendar`` (``end``: the instant after it ends)."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return calendar.start_of_day(day + timedelta(days=1) if end else day)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--{name}: {text!r} is neither a date (2026-12-01) nor a time "
                           "(2026-12-01T09:00-05:00)", field=name) from None
    return moment if moment.tzinfo is not None else calendar.at_wall_time(moment)
