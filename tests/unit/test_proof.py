"""``prove_export``: a case export proves offline with the public key, and any alteration fails naming the event."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from kapflow.audit.chain import GENESIS, fields_hash
from kapflow.audit.checkpoint_file import note_opener
from kapflow.audit.export_formats import (
    CaseExport,
    ExportedCheckpoint,
    ExportedEvent,
    ExportFormat,
    csv_text,
    jsonl_lines,
    parse_jsonl,
    render,
)
from kapflow.audit.leaves import record_leaf
from kapflow.audit.merkle import inclusion_proof, leaf_hash, root
from kapflow.audit.note import Checkpoint
from kapflow.audit.proof import NoteOpener, ProofReport, prove_export
from kapflow.audit.signing import Ed25519Signer, generate_key, sign_note
from kapflow.domain.audit_log import LogRecord, LogSource
from kapflow.errors import AdapterConfigError, CheckpointFormatError

CASE = "case-0000000000000001"
ORIGIN = "example.org/kapflow-test"
POSITIONS = (1, 3, 4)  # the case's first three events in a log of SIZE; its fourth comes after the checkpoint
SIZE = 6


def _fields(seq: int, prev: str, **changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "case_id": CASE, "case_seq": seq, "at": f"2026-01-05T09:0{seq}:00.000000+00:00", "actor": "staff-1",
        "role": "front_desk", "kind": "opened" if seq == 1 else "transition", "trigger": None if seq == 1 else "t",
        "from_state": None, "to_state": "s", "workflow": "w", "workflow_version": "1", "data": {"n": seq},
        "blockers": [], "idempotency_key": None, "prev_hash": prev,
    }
    fields.update(changes)
    return fields


def _chain(count: int = 4) -> list[tuple[dict[str, object], str]]:
    """``count`` linked events: each one's fields and chain hash."""
    chain, prev = [], GENESIS
    for seq in range(1, count + 1):
        fields = _fields(seq, prev)
        prev = fields_hash(fields)
        chain.append((fields, prev))
    return chain


def _leaf(fields: dict[str, object]) -> bytes:
    return record_leaf(LogRecord(LogSource.EVENT, 0, fields, CASE, int(str(fields["case_seq"]))))


class Log:
    """A signed log of SIZE entries holding the case's first events at POSITIONS, and its key."""

    def __init__(self) -> None:
        private, _public = generate_key("test-log")
        self.signer = Ed25519Signer.from_text(private)
        self.chain = _chain()
        leaves = [leaf_hash(f"other entry {i}".encode()) for i in range(SIZE)]
        for (fields, _), position in zip(self.chain, POSITIONS, strict=False):
            leaves[position] = _leaf(fields)
        self.leaves = leaves
        self.root = root(leaves)
        body = Checkpoint(ORIGIN, SIZE, self.root, datetime(2026, 1, 5, 10, tzinfo=UTC)).body()
        self.note = sign_note(body, self.signer).text()

    def export(self) -> CaseExport:
        events = []
        for index, (fields, chain_hash) in enumerate(self.chain):
            if index < len(POSITIONS):
                position = POSITIONS[index]
                proof = tuple(inclusion_proof(position, self.leaves))
                events.append(ExportedEvent(fields, chain_hash, position, self.leaves[position], proof))
            else:
                events.append(ExportedEvent(fields, chain_hash))
        return CaseExport(CASE, ORIGIN, ExportedCheckpoint(SIZE, self.root, self.note), tuple(events))

    def opener(self) -> NoteOpener:
        return note_opener([self.signer.verifier()])


@pytest.fixture(scope="module")
def log() -> Log:
    return Log()


def _with_event(export: CaseExport, index: int, change: Callable[[ExportedEvent], ExportedEvent]) -> CaseExport:
    events = list(export.events)
    events[index] = change(events[index])
    return replace(export, events=tuple(events))


def _flip(raw: bytes) -> bytes:
    return bytes([raw[0] ^ 1]) + raw[1:]


def _fails_at(report: ProofReport, case_seq: int | None) -> str:
    assert not report.ok
    assert report.problem is not None
    assert report.problem.case_seq == case_seq, report.as_dict()
    assert report.proved == 0
    return report.problem.reason


def test_an_untouched_export_proves_and_counts_the_uncovered(log: Log) -> None:
    report = prove_export(log.export(), log.opener())
    assert report.ok, report.as_dict()
    assert (report.events, report.proved, report.uncovered, report.checkpoint_size) == (4, 3, 1, SIZE)
    assert report.key_id == f"{log.signer.key_id:08x}"


def test_the_jsonl_form_round_trips_and_proves(log: Log) -> None:
    lines = list(jsonl_lines(log.export()))
    header = json.loads(lines[0])
    assert header["format"] == "kapflow-audit-export/1" and header["case_id"] == CASE
    assert header["checkpoint"]["signed_note"] == log.note
    assert json.loads(lines[-1])["covered"] is False and "inclusion_proof" not in json.loads(lines[-1])
    assert parse_jsonl(lines) == log.export()
    assert prove_export(lines, log.opener()).ok
    assert prove_export(render(log.export(), ExportFormat.JSONL), log.opener()).ok


def test_the_fhir_form_round_trips_and_proves(log: Log) -> None:
    pytest.importorskip("fhir.resources")
    text = render(log.export(), ExportFormat.FHIR)
    report = prove_export(text, log.opener())
    assert report.ok and (report.proved, report.uncovered) == (3, 1)


@pytest.mark.parametrize(("what", "index", "change"), [
    ("a field", 1, lambda ev: replace(ev, fields={**ev.fields, "actor": "someone-else"})),
    ("a proof hash", 1, lambda ev: replace(ev, inclusion_proof=(_flip(ev.inclusion_proof[0]),
                                                                *ev.inclusion_proof[1:]))),
    ("the leaf", 2, lambda ev: replace(ev, leaf=_flip(ev.leaf))),
    ("the position", 1, lambda ev: replace(ev, log_position=2)),
    ("the chain hash", 0, lambda ev: replace(ev, hash="f" * 64)),
])
def test_an_altered_event_fails_naming_it(
    log: Log, what: str, index: int, change: Callable[[ExportedEvent], ExportedEvent]
) -> None:
    report = prove_export(_with_event(log.export(), index, change), log.opener())
    assert _fails_at(report, index + 1), what


def test_a_rewritten_chain_fails_at_its_first_changed_event(log: Log) -> None:
    """Fields edited and every hash recomputed: the chain holds, but the signed log does not."""
    events, prev = [], GENESIS
    for ev in log.export().events:
        fields = {**ev.fields, "prev_hash": prev}
        if fields["case_seq"] == 2:
            fields["data"] = {"n": 99}
        prev = fields_hash(fields)
        events.append(replace(ev, fields=fields, hash=prev, leaf=None if ev.leaf is None else _leaf(fields)))
    report = prove_export(replace(log.export(), events=tuple(events)), log.opener())
    assert "inclusion proof" in _fails_at(report, 2)


def test_a_dropped_or_reordered_event_fails(log: Log) -> None:
    export = log.export()
    dropped = replace(export, events=(export.events[0], *export.events[2:]))
    assert "left out" in _fails_at(prove_export(dropped, log.opener()), 2)
    swapped = replace(export, events=(export.events[1], export.events[0], *export.events[2:]))
    _fails_at(prove_export(swapped, log.opener()), 1)


def test_an_event_hidden_as_uncovered_before_a_covered_one_fails(log: Log) -> None:
    hidden = _with_event(log.export(), 1, lambda ev: ExportedEvent(ev.fields, ev.hash))
    assert "earlier event" in _fails_at(prove_export(hidden, log.opener()), 3)


@pytest.mark.parametrize("change", [
    lambda cp: replace(cp, size=SIZE + 1),
    lambda cp: replace(cp, root=_flip(cp.root)),
])
def test_a_checkpoint_stated_otherwise_than_signed_fails(
    log: Log, change: Callable[[ExportedCheckpoint], ExportedCheckpoint]
) -> None:
    export = log.export()
    report = prove_export(replace(export, checkpoint=change(export.checkpoint)), log.opener())
    assert "signed note" in _fails_at(report, None)


def test_a_checkpoint_whose_signature_fails_is_refused(log: Log) -> None:
    export = log.export()
    body, _, signatures = log.note.partition("\n\n")
    forged_body = body.replace(f"\n{SIZE}\n", f"\n{SIZE - 1}\n")
    forged = replace(export.checkpoint, signed_note=f"{forged_body}\n\n{signatures}")
    assert "does not verify" in _fails_at(prove_export(replace(export, checkpoint=forged), log.opener()), None)


def test_another_key_proves_nothing(log: Log) -> None:
    other = Ed25519Signer.from_text(generate_key("test-log")[0])
    report = prove_export(log.export(), note_opener([other.verifier()]))
    assert "not among the verifier keys" in _fails_at(report, None)


def test_a_malformed_file_is_a_format_error(log: Log) -> None:
    lines = list(jsonl_lines(log.export()))
    with pytest.raises(CheckpointFormatError):
        prove_export(["{not json", *lines[1:]], log.opener())
    with pytest.raises(CheckpointFormatError):
        prove_export([json.dumps({"format": "something-else/1"})], log.opener())


def test_the_csv_starts_with_the_checkpoint_and_defuses_formulas(log: Log) -> None:
    export = _with_event(log.export(), 3, lambda ev: replace(ev, fields={**ev.fields, "actor": "=HYPERLINK(1)"}))
    rows = list(csv.reader(io.StringIO(csv_text(export))))
    assert rows[0][:2] == ["#checkpoint", str(SIZE)] and rows[0][4] == log.note
    assert rows[1][:2] == ["case_id", "case_seq"] and rows[1][-1] == "inclusion_proof"
    assert len(rows) == 2 + len(export.events)
    columns = dict(zip(rows[1], rows[5], strict=True))
    assert columns["actor"] == "'=HYPERLINK(1)" and columns["log_position"] == "" and columns["inclusion_proof"] == ""
    first = dict(zip(rows[1], rows[2], strict=True))
    assert first["log_position"] == "1"
    assert first["inclusion_proof"].split(";") == [h.hex() for h in inclusion_proof(1, log.leaves)]


def test_the_fhir_form_without_its_extra_names_the_extra(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    """fhir.resources missing: an AdapterConfigError saying to install kapflow[fhir], for writing and proving."""
    import sys

    monkeypatch.delitem(sys.modules, "kapflow.audit.fhir", raising=False)
    for name in [n for n in sys.modules if n.startswith("fhir.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if never installed: importing it fails
    monkeypatch.setitem(sys.modules, "fhir", None)
    with pytest.raises(AdapterConfigError, match=r"pip install 'kapflow\[fhir\]'"):
        render(log.export(), ExportFormat.FHIR)
    with pytest.raises(AdapterConfigError, match=r"kapflow\[fhir\]"):
        prove_export('{"resourceType": "Bundle"}', log.opener())
