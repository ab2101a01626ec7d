"""One case's audit history with its proofs, and the files it is written as: JSONL, CSV, FHIR and PDF.

A records request or an outside auditor gets a case's events together with what makes each one
checkable without the database: its place in the audit log (``log_position``), its Merkle leaf and
an RFC 9162 inclusion proof against a signed checkpoint. ``kapflow.audit.proof.prove_export`` checks
such a file with the practice's public key only.

The formats:

* **JSONL** (``kapflow-audit-export/1``), the one to prove: a header line
  ``{"format", "case_id", "origin", "checkpoint": {"size", "root" (base64), "signed_note"}}``, then one
  line per event with every hashed field, ``hash`` (the chain hash), ``log_position``, ``leaf`` (hex)
  and ``inclusion_proof`` (hex, bottom first), or ``"covered": false`` (and no position or proof) for
  an event the checkpoint does not cover yet.
* **CSV**, for reading in a spreadsheet: a first row ``#checkpoint, size, root (base64), origin,
  signed note``, a row of column names, then one row per event (``data`` and ``blockers`` as JSON,
  ``inclusion_proof`` as hex joined by ``;``, an empty position when not yet covered). Cells a
  spreadsheet would run as a formula are prefixed with ``'``, so the CSV is not byte-exact and is
  not a proof format: prove the JSONL or the FHIR file.
* **FHIR**: a Bundle of R4B AuditEvent and Provenance (``kapflow.audit.fhir``, optional extra).
* **PDF**, for a records request: the history as a table in the practice's time zone, naming the
  checkpoint and each event's log position and coverage (``kapflow.audit.export_pdf``, the ``pdf``
  extra). It is for reading, not a proof format, and it is bytes: ``render_bytes`` writes every form,
  ``render`` the text ones.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from kapflow.audit.note import Checkpoint, SignedNote
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
from kapflow.domain.case import AuditEvent
from kapflow.domain.errors import CheckpointFormatError
from kapflow.domain.payload import canonical_json
from kapflow.errors import missing_extra

FORMAT = "kapflow-audit-export/1"
"""The JSONL header's ``format``: a reader refuses any other."""

FIELD_ORDER = (
    "case_id", "case_seq", "at", "actor", "role", "kind", "trigger", "from_state", "to_state", "workflow",
    "workflow_version", "data", "blockers", "idempotency_key", "os_user", "prev_hash",
)
"""The hashed fields of an event (``AuditEvent.hashed_fields``), in the order the CSV shows them."""

_PROOF_KEYS = frozenset({"hash", "log_position", "leaf", "inclusion_proof", "covered"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(StrEnum):
    """The forms ``kapflow audit export`` writes."""

    JSONL = "jsonl"
    CSV = "csv"
    FHIR = "fhir"
    PDF = "pdf"

    @property
    def binary(self) -> bool:
        """Bytes, not text (``render_bytes`` only): the PDF."""
        return self is ExportFormat.PDF


@dataclass(frozen=True)
class ExportedEvent:
    """One event as exported: its hashed fields, its chain hash and, once the checkpoint covers it,
    its log position, leaf and inclusion proof (``None`` for all three when not yet covered)."""

    fields: Mapping[str, object]
    hash: str
    log_position: int | None = None
    leaf: bytes | None = None
    inclusion_proof: tuple[bytes, ...] | None = None

    @property
    def covered(self) -> bool:
        return self.log_position is not None

    @property
    def case_seq(self) -> object:
        return self.fields.get("case_seq")


@dataclass(frozen=True)
class ExportedCheckpoint:
    """The checkpoint the proofs lead to: its size and root, and the C2SP signed note that vouches for them.

    ``size`` and ``root`` are for a reader's eye; a prover trusts only the note, once its signature checks.
    """

    size: int
    root: bytes
    signed_note: str


@dataclass(frozen=True)
class CaseExport:
    """A case's history with a proof per covered event, against one signed checkpoint."""

    case_id: str
    origin: str
    checkpoint: ExportedCheckpoint
    events: tuple[ExportedEvent, ...]

    @property
    def covered(self) -> int:
        return sum(1 for ev in self.events if ev.covered)


def origin_of(signed_note: str) -> str:
    """The log's origin line, read from a signed checkpoint (unverified: for labelling only)."""
    return Checkpoint.parse_body(SignedNote.parse(signed_note).body).origin


# ------------------------------------------------------------------------------------------ JSONL


def jsonl_lines(export: CaseExport) -> Iterator[str]:
    """The JSONL export, one line (without its newline) at a time: the header, then each event."""
    cp = export.checkpoint
    yield json.dumps({
        "format": FORMAT, "case_id": export.case_id, "origin": export.origin,
        "checkpoint": {"size": cp.size, "root": _b64(cp.root), "signed_note": cp.signed_note},
    }, ensure_ascii=False, sort_keys=True)
    for ev in export.events:
        yield json.dumps(_event_object(ev), ensure_ascii=False, sort_keys=True)


def _event_object(ev: ExportedEvent) -> dict[str, object]:
    body: dict[str, object] = {**ev.fields, "hash": ev.hash}
    if ev.covered:
        body["log_position"] = ev.log_position
        body["leaf"] = ev.leaf.hex() if ev.leaf is not None else None
        body["inclusion_proof"] = [h.hex() for h in ev.inclusion_proof or ()]
    else:
        body["covered"] = False
    return body


def parse_jsonl(lines: Iterable[str]) -> CaseExport:
    """A JSONL export read back; a malformed file is a ``CheckpointFormatError`` naming its line."""
    rows = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not rows:
        raise _bad("the file is empty")
    header = _json_object(*rows[0])
    if header.get("format") != FORMAT:
        raise _bad(f"line 1: not a {FORMAT} file (its format is {header.get('format')!r})")
    checkpoint = header.get("checkpoint")
    case_id, origin = header.get("case_id"), header.get("origin")
    if not isinstance(checkpoint, dict) or not isinstance(case_id, str) or not isinstance(origin, str):
        raise _bad("line 1: the header needs case_id, origin and checkpoint")
    events = tuple(_event_from(n, _json_object(n, line)) for n, line in rows[1:])
    return CaseExport(case_id, origin, _checkpoint_from(checkpoint), events)


def _checkpoint_from(body: Mapping[str, Any]) -> ExportedCheckpoint:
    size, root, signed = body.get("size"), body.get("root"), body.get("signed_note")
    if not isinstance(size, int) or not isinstance(root, str) or not isinstance(signed, str):
        raise _bad("line 1: the checkpoint needs size, root and signed_note")
    try:
        raw = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise _bad("line 1: the checkpoint's root is not base64") from None
    return ExportedCheckpoint(size, raw, signed)


def _event_from(number: int, body: Mapping[str, Any]) -> ExportedEvent:
    fields = {k: v for k, v in body.items() if k not in _PROOF_KEYS}
    chain_hash = body.get("hash")
    if not isinstance(chain_hash, str):
        raise _bad(f"line {number}: the event has no hash")
    if body.get("covered") is False:
        return ExportedEvent(fields, chain_hash)
    position, leaf, proof = body.get("log_position"), body.get("leaf"), body.get("inclusion_proof")
    if not isinstance(position, int) or not isinstance(leaf, str) or not isinstance(proof, list):
        raise _bad(f"line {number}: a covered event needs log_position, leaf and inclusion_proof")
    return ExportedEvent(fields, chain_hash, position, _hex(number, leaf), tuple(_hex(number, h) for h in proof))


def _json_object(number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise _bad(f"line {number}: not a JSON object")
    return value


def _hex(number: int, text: object) -> bytes:
    try:
        return bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        raise _bad(f"line {number}: a hash is not hex") from None


def _bad(reason: str) -> CheckpointFormatError:
    return CheckpointFormatError("audit export", reason)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# -------------------------------------------------------------------------------------------- CSV

CSV_COLUMNS = (*FIELD_ORDER, "hash", "log_position", "leaf", "inclusion_proof")


def csv_text(export: CaseExport) -> str:
    """The CSV export: the ``#checkpoint`` row, the column names, one row per event (see the module's doc)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    cp = export.checkpoint
    writer.writerow([_safe_cell(c) for c in ("#checkpoint", str(cp.size), _b64(cp.root), export.origin,
                                              cp.signed_note)])
    writer.writerow(CSV_COLUMNS)
    for ev in export.events:
        writer.writerow([_safe_cell(_cell_text(v)) for v in _csv_row(ev)])
    return out.getvalue()


def _csv_row(ev: ExportedEvent) -> list[object]:
    proof = ";".join(h.hex() for h in ev.inclusion_proof or ())
    leaf = ev.leaf.hex() if ev.leaf is not None else ""
    return [*(ev.fields.get(name) for name in FIELD_ORDER), ev.hash, ev.log_position, leaf, proof]


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return canonical_json(value)


def _safe_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading ``'`` (CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


# ---------------------------------------------------------------------------------------- dispatch


class Paper(StrEnum):
    """The paper a PDF is laid out on."""

    LETTER = "letter"
    A4 = "a4"


class EventWords(Protocol):
    """What an event says in words (``kapflow.present.EventSummary`` is one): what happened, and its move."""

    @property
    def what(self) -> str: ...

    def move(self) -> str:
        """``"from -> to"``, or ``""`` when the event moved nothing."""
        ...


@dataclass(frozen=True)
class PlainWords:
    """The words of an event without a summarizer: its trigger (or nothing), and its move."""

    what: str
    source: str | None = None
    dest: str | None = None

    def move(self) -> str:
        if self.dest is None:
            return ""
        return f"-> {self.dest}" if self.source is None else f"{self.source} -> {self.dest}"


def plain_words(fields: Mapping[str, object]) -> PlainWords:
    """An exported event's trigger and move, for a PDF made without ``PdfView.summarize``."""
    def text(name: str) -> str | None:
        value = fields.get(name)
        return None if value is None else str(value)
    return PlainWords(text("trigger") or "", text("from_state"), text("to_state"))


def _plain_summary(ev: AuditEvent) -> PlainWords:
    return plain_words(ev.hashed_fields())


@dataclass(frozen=True)
class PdfView:
    """How a PDF shows an export: the practice's calendar (its zone and clock style) for every time, when
    it was generated, the words for each event (the entry points pass ``kapflow.present.event_summary``)
    and the paper (``a4`` or ``letter``)."""

    calendar: PracticeCalendar = UTC_CALENDAR
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    summarize: Callable[[AuditEvent], EventWords] = _plain_summary
    paper: Paper = Paper.LETTER


def render(export: CaseExport, form: ExportFormat) -> str:
    """The export as text in ``form`` (FHIR needs the ``fhir`` extra); the PDF is bytes: ``render_bytes``."""
    if form.binary:
        raise ValueError(f"the {form} export is bytes, not text: use render_bytes")
    if form is ExportFormat.JSONL:
        return "".join(line + "\n" for line in jsonl_lines(export))
    if form is ExportFormat.CSV:
        return csv_text(export)
    try:
        from kapflow.audit.fhir import bundle_json  # only when asked for: fhir.resources is an optional extra
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "fhir") from None
    return bundle_json(export)


def render_bytes(export: CaseExport, form: ExportFormat, pdf: PdfView | None = None) -> bytes:
    """The export as the bytes of a file in ``form``: the text forms in UTF-8, the PDF laid out as ``pdf``
    says (default: UTC times, generated now, each event's trigger as its words). The PDF needs the ``pdf``
    extra, FHIR the ``fhir`` one."""
    if form is not ExportFormat.PDF:
        return render(export, form).encode("utf-8")
    try:
        from kapflow.audit.export_pdf import pdf_bytes  # only when asked for: fpdf2 is an optional extra
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "pdf") from None
    return pdf_bytes(export, pdf or PdfView())


def render_pdf(
    export: CaseExport, calendar: PracticeCalendar = UTC_CALENDAR, *, generated_at: datetime | None = None,
    summarize: Callable[[AuditEvent], EventWords] | None = None, paper: Paper = Paper.LETTER,
) -> bytes:
    """``export`` as a PDF with its times in ``calendar``'s zone, generated at ``generated_at`` (default: now);
    ``summarize`` words each event (pass ``kapflow.present.event_summary``; default: its trigger). Needs the
    ``pdf`` extra."""
    view = PdfView(calendar, generated_at or datetime.now(UTC), summarize or _plain_summary, Paper(paper))
    return render_bytes(export, ExportFormat.PDF, view)


def read_export(text: str) -> CaseExport:
    """A provable export read back: a FHIR Bundle (JSON object with ``resourceType``) or JSONL."""
    stripped = text.lstrip()
    if not (stripped.startswith("{") and _is_bundle(stripped)):
        return parse_jsonl(text.splitlines())
    try:
        from kapflow.audit.fhir import read_bundle
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "fhir") from None
    return read_bundle(stripped)


def _is_bundle(text: str) -> bool:
    first = text.split("\n", 1)[0]
    try:
        value = json.loads(first)
    except json.JSONDecodeError:  # a pretty-printed object spans lines: JSONL's header never does
        return True
    return isinstance(value, dict) and value.get("resourceType") == "Bundle"
