"""Rich renderings more than one command group prints: audit events, the audit report, an outcome.

Built from the shapes and texts of ``kapflow.present``. Each table has a wide
layout (one column per field, for a wide terminal or a pipe) and, below
``common.NARROW`` columns, a stacked one that shows every column whole at 80.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kapflow.audit import AuditReport
from kapflow.audit.log_verify import LogReport
from kapflow.cli.common import cell, console, json_cell, narrow, print_json, stacked_time, time_text
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
from kapflow.domain.case import AuditEvent, Outcome
from kapflow.domain.events import EventKind
from kapflow.present import (
    audit_problem_text,
    audit_summary_text,
    defang,
    event_summary,
    log_problem_text,
    log_summary_lines,
    outcome_text,
)

_ONE_LINE_TIMES = 160
"""From this many columns, the wide history writes each time on one line (``2026-03-09 10:00 AM EDT``)."""


def events_table(
    events: Iterable[AuditEvent], *, details: bool, out: Console, calendar: PracticeCalendar = UTC_CALENDAR,
) -> Table:
    """An audit history as a table: who did what and when (in ``calendar``'s zone and clock style, each time with
    its zone's abbreviation), the move, every blocker's sentence."""
    if narrow(out):
        return _stacked_events(events, details, calendar)
    return _wide_events(events, details, calendar, one_line=out.width >= _ONE_LINE_TIMES)


def _blocker_lines(blockers: Iterable[Mapping[str, object]]) -> list[str]:
    """Each blocker as ``code: the sentence staff can act on``."""
    return [f"{b.get('code', '')}: {b.get('message', '')}" if b.get("message") else str(b.get("code", ""))
            for b in blockers]


def _wide_events(events: Iterable[AuditEvent], details: bool, calendar: PracticeCalendar, *, one_line: bool) -> Table:
    """One column per field; each time on one line when ``one_line``, else its date over its time of day."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("actor / role", overflow="fold")
    table.add_column("event", no_wrap=True)
    for column in ("trigger / fact", "from -> to", "blockers"):
        table.add_column(column, overflow="fold", min_width=12)
    if details:
        table.add_column("data", overflow="fold", ratio=1)
    for ev in events:
        summary = event_summary(ev)
        shown = time_text(calendar, ev.at) if one_line else stacked_time(calendar, ev.at)
        row = [str(ev.case_seq), shown, f"{ev.actor}\n{ev.role}", ev.kind, summary.what,
               summary.move("\n"), "\n".join(_blocker_lines(ev.blockers))]
        cells = [cell(c) for c in row]
        if details:
            cells.append(json_cell(dict(ev.data)))
        table.add_row(*cells, style="red" if ev.kind == EventKind.REFUSED else None)
    return table


def _stacked_events(events: Iterable[AuditEvent], details: bool, calendar: PracticeCalendar) -> Table:
    """Four columns; the event's kind, what, move, blockers (and data) stacked in the last."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", no_wrap=True)
    table.add_column("time", no_wrap=True)
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
        table.add_row(cell(ev.case_seq), cell(stacked_time(calendar, ev.at)), cell(f"{ev.actor}\n{ev.role}"),
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


def print_log(out: Console, report: LogReport) -> None:
    """The audit log's verdict: each problem in red, then the summary (red, yellow if not yet covered, green)."""
    for problem in report.problems:
        out.print(Text(defang(log_problem_text(problem)), style="red"), soft_wrap=True)
    if report.problem_count > len(report.problems):
        out.print(Text(f"... and {report.problem_count - len(report.problems)} more", style="red"))
    style = {"failed": "bold red", "not_yet_covered": "yellow", "ok": "green"}[report.status]
    for line in log_summary_lines(report):
        out.print(Text(defang(line), style=style), soft_wrap=True)


def print_outcome(outcome: Outcome, as_json: bool) -> None:
    """What a command did: its JSON shape, or one line."""
    if as_json:
        print_json(outcome.as_dict())
        return
    console().print(cell(outcome_text(outcome)), soft_wrap=True)
