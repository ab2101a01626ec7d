"""A case's history as a PDF for a records request: read back with poppler's pdftotext, every event's words,
the checkpoint, the practice's zone and the page numbers are there. Every name and value is synthetic."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kapflow.audit.export_formats import (
    CaseExport,
    ExportedCheckpoint,
    ExportedEvent,
    ExportFormat,
    Paper,
    PdfView,
    render,
    render_bytes,
    render_pdf,
)
from kapflow.audit.export_pdf import latin1
from kapflow.audit.note import Checkpoint
from kapflow.audit.signing import Ed25519Signer, generate_key, sign_note
from kapflow.domain.calendar import PracticeCalendar
from kapflow.errors import AdapterConfigError
from kapflow.present import event_summary

CASE = "case-0000000000000042"
ORIGIN = "example.org/kapflow-test"
ROOT = bytes.fromhex("ab12cd34ef560789" + "00" * 24)
START = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)  # 10:00 EDT in New York
NEW_YORK = PracticeCalendar(ZoneInfo("America/New_York"), clock="12h")
LONG_NOTE = ("Synthetic note: the client reports feeling calmer after the preparation session and asks about "
             "the schedule of the next sessions. " * 6).strip()
REPEATED = 24  # enough events for a second page


def _fields(seq: int, kind: str, **changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "case_id": CASE, "case_seq": seq, "at": (START + timedelta(minutes=7 * seq)).isoformat(),
        "actor": "staff-example-1", "role": "front_desk", "kind": kind, "trigger": None, "from_state": None,
        "to_state": None, "workflow": "example", "workflow_version": "1", "data": {}, "blockers": [],
        "idempotency_key": None, "prev_hash": "00" * 32,
    }
    fields.update(changes)
    return fields


def synthetic_export(*, uncovered: int = 1) -> CaseExport:
    """A made-up case: opened, facts (one long and non-Latin), a refusal with a blocker, moves, reminders."""
    events = [
        _fields(1, "opened", to_state="inquiry", data={"intake_kind": "web_form"}),
        _fields(2, "fact", actor="clinician-example-2", role="prescriber",
                data={"kind": "session_note", "note": LONG_NOTE, "mood": "calm \u2014 steady \u2192 better",
                      "name_seen": "\u0141ukasz \u00c9mile Testperson \u4e2d"}),
        _fields(3, "refused", trigger="approve", from_state="inquiry", to_state="approved",
                blockers=[{"code": "missing_fact", "message": "an example fact is missing"}]),
        _fields(4, "transition", trigger="begin_review", from_state="inquiry", to_state="under_review"),
        *(_fields(5 + i, "reminder", actor="system", role="system",
                  data={"reminder": f"example_reminder_{i}", "outcome": "sent"}) for i in range(REPEATED)),
    ]
    signer = Ed25519Signer.from_text(generate_key("example-practice-2026")[0])
    size = len(events) + 10
    note = sign_note(Checkpoint(ORIGIN, size, ROOT, START + timedelta(days=1)).body(), signer).text()
    covered = len(events) - uncovered
    exported = tuple(
        ExportedEvent(fields, f"{seq:064x}", *((2 + seq, bytes(32), ()) if seq < covered else ()))
        for seq, fields in enumerate(events)
    )
    return CaseExport(CASE, ORIGIN, ExportedCheckpoint(size, ROOT, note), exported)


def _pdf() -> bytes:
    return render_pdf(synthetic_export(), NEW_YORK, generated_at=datetime(2026, 3, 12, 15, 30, tzinfo=UTC),
                      summarize=event_summary)


def _text(pdf: bytes, tmp_path: Path, *options: str) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed; .ci/run installs it")
    path = tmp_path / "history.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdftotext", *options, str(path), "-"], capture_output=True, check=True, text=True)
    return done.stdout


def test_the_pdf_names_the_case_the_zone_the_checkpoint_and_every_event(tmp_path: Path) -> None:
    pdf = _pdf()
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf, tmp_path)
    flat = " ".join(text.split())
    assert f"Audit history of case {CASE}" in flat
    assert "America/New_York" in flat and "2026-03-12 11:30 AM EDT" in flat  # generated, in the practice's zone
    assert "signed checkpoint of 38 log entries, root ab12cd34ef560789..." in flat
    assert "example-practice-2026" in flat
    assert "27 of 28 events covered by the checkpoint; 1 not yet covered by a checkpoint" in flat
    pages = int(re.search(r"page 1 of (\d+)", flat).group(1))  # type: ignore[union-attr]
    assert pages >= 2 and f"page {pages} of {pages}" in flat  # the numbers fill in on every page
    # each event's words, as kapflow.present.event_summary says them
    assert "opened web_form" in flat and "-> inquiry" in flat
    assert "fact session_note" in flat and "refused approve" in flat
    assert "transition begin_review" in flat and "inquiry -> under_review" in flat
    for i in range(REPEATED):
        assert f"example_reminder_{i}: sent" in flat
    assert "2026-03-09" in flat and "10:07 AM EDT" in flat  # the first event's time, 14:07 UTC
    assert "staff-example-1" in flat and "clinician-example-2" in flat and "prescriber" in flat
    assert "position 2" in flat and "covered" in flat and "not yet covered by a checkpoint" in flat
    # data and blockers as key: value lines, long text wrapped (all of it kept), non-Latin-1 text readable
    assert "blocked: missing_fact: an example fact is missing" in flat
    assert "mood: calm - steady -> better" in flat and "name_seen: Lukasz \u00c9mile Testperson ?" in flat
    assert " ".join(LONG_NOTE.split()) in flat  # all of it, wrapped over lines
    assert max(len(line) for line in text.splitlines()) < 200  # wrapped: no line runs off the page


def test_the_columns_keep_apart_in_the_layout(tmp_path: Path) -> None:
    """With the page's layout kept, the first event's row reads left to right, its cells never run together."""
    text = _text(_pdf(), tmp_path, "-layout")
    row = next(line for line in text.splitlines() if "staff-example-1" in line and "opened" in line)
    parts = row.split()
    assert parts[:2] == ["1", "2026-03-09"] and "web_form" in parts and "position" in parts


def test_the_metadata_carry_a_title_and_no_person(tmp_path: Path) -> None:
    if shutil.which("pdfinfo") is None:
        pytest.skip("pdfinfo (poppler-utils) is not installed")
    path = tmp_path / "history.pdf"
    path.write_bytes(_pdf())
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert fields["Title"].strip() == f"Audit history of case {CASE}"
    assert "Author" not in fields and fields["Creator"].strip() == "kapflow"
    assert "staff-example-1" not in info


def test_letter_and_a4_paper(tmp_path: Path) -> None:
    a4 = render_bytes(synthetic_export(), ExportFormat.PDF, PdfView(NEW_YORK, paper=Paper.A4))
    letter = render_bytes(synthetic_export(), ExportFormat.PDF, PdfView(NEW_YORK))
    path = tmp_path / "a4.pdf"
    if shutil.which("pdfinfo") is None:
        pytest.skip("pdfinfo (poppler-utils) is not installed")
    for raw, size in ((a4, "pts (A4)"), (letter, "612 x 792 pts")):
        path.write_bytes(raw)
        info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True).stdout
        assert size in info
    with pytest.raises(ValueError, match="tabloid"):
        render_bytes(synthetic_export(), ExportFormat.PDF, PdfView(paper="tabloid"))  # type: ignore[arg-type]


def test_every_form_as_bytes_and_the_pdf_is_never_text() -> None:
    export = synthetic_export()
    assert render_bytes(export, ExportFormat.JSONL) == render(export, ExportFormat.JSONL).encode("utf-8")
    assert render_bytes(export, ExportFormat.CSV).startswith(b"#checkpoint,")
    assert ExportFormat.PDF.binary and not ExportFormat.CSV.binary
    with pytest.raises(ValueError, match="render_bytes"):
        render(export, ExportFormat.PDF)


def test_a_case_with_every_event_covered_says_so(tmp_path: Path) -> None:
    raw = render_pdf(synthetic_export(uncovered=0), summarize=event_summary)  # UTC by default
    flat = " ".join(_text(raw, tmp_path).split())
    assert "28 of 28 events covered by the checkpoint" in flat and "not yet covered" not in flat
    assert "Times are in UTC" in flat and "14:07 UTC" in flat


def test_latin1_keeps_what_it_can() -> None:
    assert latin1("Zo\u00eb \u2014 \u201cok\u201d\u2026 \u0142\u00f3d\u017a \u4e2d\x07\r\nnext\tcell") == \
        'Zo\u00eb - "ok"... l\u00f3dz ?\nnext cell'


def test_without_fpdf2_the_error_names_the_pdf_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "kapflow.audit.export_pdf", raising=False)
    monkeypatch.setitem(sys.modules, "fpdf", None)
    with pytest.raises(AdapterConfigError) as info:
        render_bytes(synthetic_export(), ExportFormat.PDF)
    assert "kapflow[pdf]" in info.value.message and "fpdf" in info.value.message
