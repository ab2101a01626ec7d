"""Rich renderings more than one command group prints: audit events, the audit report, an outcome.

Built from the shapes and texts of ``kapflow.present``. Each table has a wide
layout (one column per field, for a wide terminal or a pipe) and, below
``common.NARROW`` columns, a stacked one that shows every column whole at 80.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, tzinfo

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kapflow.audit import AuditReport
from kapflow.cli.common import cell, console, json_cell, narrow, print_json, when
from kapflow.domain.case import AuditEvent, Outcome
from kapflow.domain.events import EventKind
from kapflow.present import audit_problem_text, audit_summary_text, defang, event_summary, outcome_text


def events_table(events: Iterable[AuditEvent], *, details: bool, out: Console, tz: tzinfo = UTC) -> Table:
    """An audit history as a table: who did what and when (in ``tz``), the move, every blocker's sentence."""
    return _stacked_events(events, details, tz) if narrow(out) else _wide_events(events, details, tz)


def _zone(tz: tzinfo) -> str:
    return "UTC" if tz is UTC else str(getattr(tz, "key", tz))


def _blocker_lines(blockers: Iterable[Mapping[str, object]]) -> list[str]:
    """Each blocker as ``code: the sentence staff can act on``."""
    return [f"{b.get('code', '')}: {b.get('message', '')}" if b.get("message") else str(b.get("code", ""))
            for b in blockers]


def _wide_events(events: Iterable[AuditEvent], details: bool, tz: tzinfo) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", no_wrap=True)
    table.add_column(f"time ({_zone(tz)})", min_width=10)
    table.add_column("actor / role", overflow="fold")
    table.add_column("event", no_wrap=True)
    for column in ("trigger / fact", "from -> to", "blockers"):
        table.add_column(column, overflow="fold", min_width=12)
    if details:
        table.add_column("data", overflow="fold", ratio=1)
    for ev in events:
        summary = event_summary(ev)
        row = [str(ev.case_seq), when(ev.at.astimezone(tz)), f"{ev.actor}\n{ev.role}", ev.kind, summary.what,
               summary.move("\n"), "\n".join(_blocker_lines(ev.blockers))]
        cells = [cell(c) for c in row]
        if details:
            cells.append(json_cell(dict(ev.data)))
        table.add_row(*cells, style="red" if ev.kind == EventKind.REFUSED else None)
    return table


def _stacked_events(events: Iterable[AuditEvent], details: bool, tz: tzinfo) -> Table:
    """Four columns; the event's kind, what, move, blockers (and data) stacked in the last."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", no_wrap=True)
    table.add_column("time" if tz is not UTC else "time (UTC)", no_wrap=True)
    table.add_column("actor / role", overflow="fold")
    table.add_column("event", overflow="fold", ratio=1)
    for ev in events:
        summary = event_summary(ev)
        lines = [f"{ev.kind} {summary.what}".rstrip()]
        if summary.dest is not None:
            lines.append(summary.move())
        lines += [f"blocked: {line}" for line in _blocker_lines(ev.blockers)]
        body = cell("\n".join(lines))
        if details and ev.data:
            data = json_cell(dict(ev.data), spaced=True)
            data.stylize("dim")
            body.append("\n").append_text(data)
        at = ev.at.astimezone(tz)
        table.add_row(cell(ev.case_seq), cell(f"{at:%Y-%m-%d}\n{at:%H:%M %Z}"), cell(f"{ev.actor}\n{ev.role}"),
                      body, style="red" if ev.kind == EventKind.REFUSED else None)
    return table


def print_audit(out: Console, report: AuditReport) -> None:
    """The audit verification: ``ok`` in green, or each failing case in red and the count."""
    if report.ok:
        out.print(Text(audit_summary_text(report), style="green"))
        return
    for problem in report.problems:
        out.print(Text(defang(audit_problem_text(problem)), style="red"), soft_wrap=True)
    out.print(Text(audit_summary_text(report), style="bold red"))


def print_outcome(outcome: Outcome, as_json: bool) -> None:
    """What a command did: its JSON shape, or one line."""
    if as_json:
        print_json(outcome.as_dict())
        return
    console().print(cell(outcome_text(outcome)), soft_wrap=True)
