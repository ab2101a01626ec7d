"""One case's audit history as a PDF for a records request (HIPAA right of access): the only importer of fpdf2.

The PDF is for reading, not for proving: it names the signed checkpoint the history was exported
against (its size, the start of its root hash, when it was signed) and, for each event, its place in
the audit log and whether that checkpoint covers it; the JSONL or FHIR export of the same case is the
one ``kapflow audit prove`` checks. Times are in the practice's zone (``PdfView.calendar``), each with
its zone's abbreviation.

Text is set in the PDF's built-in core fonts (Helvetica), which hold Latin-1 only: nothing is
downloaded or embedded, and any other character is written as its closest Latin-1 form (``é`` stays,
``—`` becomes ``-``, ``ł`` becomes ``l``) or ``?``. The metadata carry a title and the generator,
never a person's name.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fpdf import FPDF, FontFace
from fpdf.enums import CellBordersLayout, TableBordersLayout, VAlign
from fpdf.errors import FPDFException

from kapflow.audit.export_formats import CaseExport, ExportedEvent, Paper, PdfView, plain_words
from kapflow.audit.note import Checkpoint, SignedNote
from kapflow.domain.case import AuditEvent
from kapflow.domain.errors import CheckpointFormatError
from kapflow.errors import AdapterConfigError

_FPDF_PAPER = {Paper.A4: "A4", Paper.LETTER: "Letter"}

COLUMNS = ("#", "time", "who", "what", "move", "audit log")
_WIDTHS = (5, 17, 20, 26, 20, 16)  # relative: the table fills the page between its margins
_ROOT_PREFIX = 16  # hex digits of the checkpoint's root shown
_CHUNK = 1600  # characters of an event's data per table row: a row never outgrows a page
_GREY = (235, 235, 235)
_TEXT_SIZE, _DATA_SIZE = 8.5, 7.5

_LATIN1_STANDINS = {
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2026": "...", "\u2022": "*", "\u2192": "->", "\u2190": "<-", "\u2194": "<->", "\u21d2": "=>",
    "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u2122": "(TM)", "\u20ac": "EUR", "\u2248": "~",
    "\u00a0": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ", "\u2007": " ", "\u2002": " ", "\u2003": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "", "\u0141": "L", "\u0142": "l",
    "\u0111": "d", "\u0110": "D", "\u0131": "i", "\u0153": "oe", "\u0152": "OE",
}


def latin1(text: str) -> str:
    """``text`` as the core fonts can set it: Latin-1 kept, look-alikes swapped, accents dropped, the rest ``?``.

    Line breaks and tabs stay (as a newline and a space); other control characters go.
    """
    out: list[str] = []
    for char in text.replace("\r\n", "\n").replace("\r", "\n"):
        if char in ("\n", " "):
            out.append(char)
        elif char == "\t":
            out.append(" ")
        elif unicodedata.category(char).startswith("C") and char not in _LATIN1_STANDINS:
            continue  # control, format, surrogate or unassigned: nothing to show
        elif char in _LATIN1_STANDINS:
            out.append(_LATIN1_STANDINS[char])
        elif ord(char) < 0x100:
            out.append(char)
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if ord(c) < 0x100 and not
                           unicodedata.combining(c))
            out.append(base or "?")
    return "".join(out)


class _Document(FPDF):
    """The page: a footer naming the case and ``page N of M`` on every page."""

    def __init__(self, case_id: str, paper: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format=paper)
        self.case_id = case_id
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=16)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("Helvetica", size=7.5)
        self.set_text_color(90)
        self.cell(0, 5, latin1(f"Audit history of case {self.case_id}"), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)


def pdf_bytes(export: CaseExport, view: PdfView) -> bytes:
    """``export`` as a PDF: the title, the time zone, when and against which checkpoint, a row per event.

    Each event's row gives its time (in ``view.calendar``'s zone), who (actor and role), what happened
    (``view.summarize``'s words), the move it made, its audit log position and whether the checkpoint
    covers it; its data and blockers follow under it as ``key: value`` lines.
    """
    doc = _Document(export.case_id, _FPDF_PAPER[Paper(view.paper)])  # ValueError: not a paper size
    title = f"Audit history of case {export.case_id}"
    doc.set_title(latin1(title))
    doc.set_subject("Audit history of one case, exported against a signed checkpoint of the audit log")
    doc.set_creator("kapflow")
    doc.set_lang("en")
    doc.set_creation_date(view.generated_at.astimezone(UTC))
    try:
        doc.add_page()
        _heading(doc, export, view, title)
        _events(doc, export, view)
        return bytes(doc.output())
    except FPDFException as exc:  # a layout this module got wrong, never the data's fault: no half-written PDF
        raise AdapterConfigError("pdf", f"fpdf2 could not lay the audit history out: {exc}") from None


def _heading(doc: FPDF, export: CaseExport, view: PdfView, title: str) -> None:
    doc.set_font("Helvetica", style="B", size=15)
    doc.multi_cell(0, 7, latin1(title), new_x="LMARGIN", new_y="NEXT")
    doc.ln(1.5)
    doc.set_font("Helvetica", size=9)
    cal = view.calendar
    for label, value in _heading_lines(export, view):
        doc.set_font("Helvetica", style="B", size=9)
        doc.cell(34, 5, latin1(label))
        doc.set_font("Helvetica", size=9)
        doc.multi_cell(0, 5, latin1(value), align="L", new_x="LMARGIN", new_y="NEXT")
    doc.ln(1.5)
    doc.set_font("Helvetica", style="I", size=8)
    doc.multi_cell(0, 4, latin1(
        f"Times are in {cal.zone_name}. This PDF is for reading; the same history exported as JSONL or FHIR "
        "carries an inclusion proof per covered event, which kapflow audit prove checks against the signed "
        "checkpoint with the practice's public key."), align="L", new_x="LMARGIN", new_y="NEXT")
    doc.ln(2.5)


def _heading_lines(export: CaseExport, view: PdfView) -> list[tuple[str, str]]:
    cal, cp = view.calendar, export.checkpoint
    events = len(export.events)
    uncovered = events - export.covered
    if cp.size > 0:
        signed = _checkpoint_details(cp.signed_note, view)
        checkpoint = (f"signed checkpoint of {cp.size} log entries, root {cp.root.hex()[:_ROOT_PREFIX]}..."
                      f"{signed} (log {export.origin})")
    else:
        checkpoint = "not yet covered by a checkpoint"
    covered = f"{export.covered} of {events} events covered by the checkpoint"
    if uncovered:
        covered += f"; {uncovered} not yet covered by a checkpoint (written after it)"
    return [
        ("Case", export.case_id),
        ("Time zone", f"{cal.zone_name} (times below are the practice's local times)"),
        ("Generated", cal.time_text(view.generated_at)),
        ("Checkpoint", checkpoint),
        ("Events", covered),
    ]


def _checkpoint_details(note: str, view: PdfView) -> str:
    """``, signed <time> with key <name>`` from the signed note (unverified: for a reader's eye only)."""
    try:
        parsed = SignedNote.parse(note)
        body = Checkpoint.parse_body(parsed.body)
    except (CheckpointFormatError, ValueError):
        return ""
    keys = ", ".join(s.name for s in parsed.signatures)
    return f", signed {view.calendar.time_text(body.at)}" + (f" with key {keys}" if keys else "")


def _events(doc: FPDF, export: CaseExport, view: PdfView) -> None:
    doc.set_font("Helvetica", size=_TEXT_SIZE)
    data_style = FontFace(size_pt=_DATA_SIZE, color=(60, 60, 60))
    with doc.table(
        col_widths=_WIDTHS, text_align="LEFT", v_align=VAlign.T, line_height=3.9, padding=(1.2, 1.4),
        borders_layout=TableBordersLayout.NONE, headings_style=FontFace(emphasis="BOLD",
                                                                                  fill_color=_GREY),
        first_row_as_headings=True, repeat_headings=1,
    ) as table:
        table.row(COLUMNS)
        if not export.events:
            table.row().cell("This case has no event in the audit history.", colspan=len(COLUMNS))
        for exported in export.events:
            event = _as_event(exported)
            words = view.summarize(event) if event is not None else plain_words(exported.fields)
            row = table.row()
            for text in (str(exported.case_seq), _time(view, exported.fields.get("at")),
                         _who(exported.fields), f"{exported.fields.get('kind', '')} {words.what}".strip(),
                         words.move(), _position(exported)):
                row.cell(latin1(text), border=CellBordersLayout.TOP)  # a line above each event, none in it
            for chunk in _chunks(_detail_lines(exported.fields)):
                table.row().cell(latin1(chunk), colspan=len(COLUMNS), style=data_style, padding=(0.2, 1.4, 1.4))
    doc.set_draw_color(0)
    doc.line(doc.l_margin, doc.get_y(), doc.w - doc.r_margin, doc.get_y())


def _as_event(ev: ExportedEvent) -> AuditEvent | None:
    """The exported fields as the ``AuditEvent`` they were hashed from (``None`` when they do not fit one)."""
    f = ev.fields
    try:
        at = datetime.fromisoformat(str(f.get("at")))
        blockers = tuple(b for b in _list(f.get("blockers")) if isinstance(b, Mapping))
        return AuditEvent(
            case_id=str(f.get("case_id", "")), case_seq=int(str(f.get("case_seq", 0))), at=at,
            actor=str(f.get("actor", "")), role=str(f.get("role", "")), kind=str(f.get("kind", "")),
            trigger=_text_or_none(f.get("trigger")), from_state=_text_or_none(f.get("from_state")),
            to_state=_text_or_none(f.get("to_state")), workflow=str(f.get("workflow", "")),
            workflow_version=str(f.get("workflow_version", "")), data=_mapping(f.get("data")),
            blockers=blockers, idempotency_key=_text_or_none(f.get("idempotency_key")),
            prev_hash=str(f.get("prev_hash", "")), hash=ev.hash, os_user=_text_or_none(f.get("os_user")),
        )
    except (TypeError, ValueError):
        return None


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[object]:
    return value if isinstance(value, list | tuple) else ()


def _time(view: PdfView, at: object) -> str:
    """The event's time on two lines (date, time of day with the zone), in the practice's zone."""
    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError:
        return str(at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # kapflow stores UTC
    return f"{view.calendar.local_date(moment):%Y-%m-%d}\n{view.calendar.clock_text(moment)}"


def _who(fields: Mapping[str, object]) -> str:
    lines = [str(fields.get("actor", "")), str(fields.get("role", ""))]
    if fields.get("os_user"):
        lines.append(f"as {fields['os_user']}")
    return "\n".join(lines)


def _position(ev: ExportedEvent) -> str:
    if ev.covered:
        return f"position {ev.log_position}\ncovered"
    return "not yet covered by a checkpoint"


def _detail_lines(fields: Mapping[str, object]) -> list[str]:
    """The event's data as ``key: value`` and its blockers, one line each (long values wrap in the cell)."""
    lines: list[str] = []
    data = fields.get("data")
    if isinstance(data, Mapping):
        lines += [f"{key}: {_value_text(value)}" for key, value in _flat(data)]
    for blocker in _list(fields.get("blockers")):
        if isinstance(blocker, Mapping):
            code, message = blocker.get("code", ""), blocker.get("message")
            lines.append(f"blocked: {code}: {message}" if message else f"blocked: {code}")
    return lines


def _flat(data: Mapping[object, object], prefix: str = "") -> Iterator[tuple[str, object]]:
    """``data``'s leaves with dotted keys: ``{"fact": {"amount": "250.00"}}`` is ``fact.amount``."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flat(value, name + ".")
        else:
            yield name, value


def _value_text(value: object) -> str:
    """A value as a reader reads it: text as is, ``-`` for none, a list of plain values joined by commas."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "), default=str)


def _chunks(lines: Sequence[str]) -> Iterator[str]:
    """``lines`` joined into cells of at most about ``_CHUNK`` characters (a longer line is cut), so no table
    row is taller than a page."""
    block: list[str] = []
    size = 0
    for line in lines:
        pieces = [line[i:i + _CHUNK] for i in range(0, len(line), _CHUNK)] or [""]
        for piece in pieces:
            if block and size + len(piece) > _CHUNK:
                yield "\n".join(block)
                block, size = [], 0
            block.append(piece)
            size += len(piece) + 1
    if block:
        yield "\n".join(block)
