"""Checking one case's audit export offline, with the practice's public key and nothing else.

An outside auditor receives a case's history (``kapflow audit export --case ID``) and the log's
public key. ``prove_export`` shows, without the database and without trusting whoever made the
file, that each event is the one the practice's signed audit log holds:

1. the checkpoint's signed note verifies with the public key (it names the log's size and root);
2. each event's chain hash is recomputed from its fields, and the events link up from the case's
   first (``case_seq`` 1, ``prev_hash`` all zeros), so none was edited, dropped or reordered;
3. each covered event's Merkle leaf is recomputed from its fields, and its RFC 9162 inclusion proof
   leads from that leaf, at its log position, to the signed root.

Events written after the checkpoint are reported as not yet covered, never as proven: prove them
again against a later checkpoint. An export cannot show that no event was left off its end; the
signed log can (``kapflow audit verify``), and a later export against a later checkpoint does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kapflow.audit.chain import GENESIS, fields_hash
from kapflow.audit.export_formats import CaseExport, ExportedEvent, parse_jsonl, read_export
from kapflow.audit.leaves import record_leaf
from kapflow.audit.merkle import verify_inclusion
from kapflow.audit.note import Checkpoint
from kapflow.domain.audit_log import LogRecord, LogSource
from kapflow.domain.errors import KapflowError

NoteOpener = Callable[[str], tuple[Checkpoint, str]]
"""Checks a signed note with the public keys and returns its checkpoint and the signing key's id
(``kapflow.audit.checkpoint_file.note_opener``); raises when no known key's signature verifies."""


@dataclass(frozen=True)
class ProofProblem:
    """Why an export does not prove: the first event that fails (``case_seq`` None: the checkpoint itself)."""

    reason: str
    case_seq: int | None = None
    log_position: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"case_seq": self.case_seq, "log_position": self.log_position, "reason": self.reason}


@dataclass(frozen=True)
class ProofReport:
    """What ``prove_export`` found: how many events proved, how many are not yet covered, the first failure."""

    case_id: str
    events: int
    proved: int
    uncovered: int
    checkpoint_size: int | None
    key_id: str | None
    problem: ProofProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "case_id": self.case_id, "events": self.events, "proved": self.proved,
            "not_yet_covered": self.uncovered, "checkpoint_size": self.checkpoint_size, "key_id": self.key_id,
            "problem": None if self.problem is None else self.problem.as_dict(),
        }


def prove_export(export: CaseExport | str | Iterable[str], open_note: NoteOpener) -> ProofReport:
    """Check a case export offline; the report names the first event that fails, if any.

    ``export`` is a parsed ``CaseExport``, the text of a JSONL or FHIR export, or the JSONL's lines.
    ``open_note`` checks the checkpoint's signature with the public key(s)::

        from pathlib import Path
        from kapflow.audit.checkpoint_file import note_opener
        from kapflow.audit.signing import load_verifiers

        opener = note_opener(load_verifiers(Path("audit.pub").read_text()))
        report = prove_export(Path("case.jsonl").read_text(), opener)
        assert report.ok, report.problem
        print(report.proved, "events proven;", report.uncovered, "not yet covered")

    A file that cannot be read as an export raises ``CheckpointFormatError``; everything that can be
    read but does not check out is a report with ``ok`` False.
    """
    parsed = _parsed(export)
    base = ProofReport(parsed.case_id, len(parsed.events), 0, 0, None, None)
    try:
        checkpoint, key_id = open_note(parsed.checkpoint.signed_note)
    except KapflowError as err:
        return _failed(base, ProofProblem(f"the checkpoint's signed note does not verify: {err.message}"))
    base = ProofReport(parsed.case_id, len(parsed.events), 0, 0, checkpoint.size, key_id)
    problem = _header_problem(parsed, checkpoint) or _events_problem(parsed, checkpoint)
    if problem is not None:
        return _failed(base, problem)
    covered = parsed.covered
    return ProofReport(parsed.case_id, len(parsed.events), covered, len(parsed.events) - covered,
                       checkpoint.size, key_id)


def _parsed(export: CaseExport | str | Iterable[str]) -> CaseExport:
    if isinstance(export, CaseExport):
        return export
    if isinstance(export, str):
        return read_export(export)
    return parse_jsonl(export)


def _failed(base: ProofReport, problem: ProofProblem) -> ProofReport:
    return ProofReport(base.case_id, base.events, 0, 0, base.checkpoint_size, base.key_id, problem)


def _header_problem(export: CaseExport, checkpoint: Checkpoint) -> ProofProblem | None:
    """The file's own copy of the size, root and origin must be the signed note's: a reader may rely on them."""
    stated = export.checkpoint
    if stated.size != checkpoint.size or stated.root != checkpoint.root or export.origin != checkpoint.origin:
        return ProofProblem("the checkpoint's size, root or origin differs from what its signed note says")
    if not export.events:
        return ProofProblem("the export holds no event: every case has at least the one that opened it")
    return None


def _events_problem(export: CaseExport, checkpoint: Checkpoint) -> ProofProblem | None:
    previous_hash, last_position, uncovered_seen = GENESIS, -1, False
    for expected_seq, ev in enumerate(export.events, start=1):
        reason = _chain_reason(ev, export.case_id, expected_seq, previous_hash)
        if not reason and ev.covered:
            reason = _inclusion_reason(ev, checkpoint, last_position, uncovered_seen)
            last_position = ev.log_position if ev.log_position is not None else last_position
        uncovered_seen = uncovered_seen or not ev.covered
        if reason:
            return ProofProblem(reason, expected_seq, ev.log_position)
        previous_hash = ev.hash
    return None


def _chain_reason(ev: ExportedEvent, case_id: str, expected_seq: int, previous_hash: str) -> str:
    if ev.fields.get("case_id") != case_id:
        return "the event belongs to another case than the export's"
    if ev.case_seq != expected_seq:
        return (f"holds event {ev.case_seq} of the case where event {expected_seq} was expected: "
                "an event was left out or the events were reordered")
    if ev.fields.get("prev_hash") != previous_hash:
        return "its previous-hash is not the hash of the event before it: an event was replaced or left out"
    if fields_hash(ev.fields) != ev.hash:
        return "its fields do not give its chain hash: the event was edited"
    return ""


def _inclusion_reason(ev: ExportedEvent, checkpoint: Checkpoint, last_position: int, uncovered_seen: bool) -> str:
    position = ev.log_position
    assert position is not None
    if uncovered_seen:
        return "it is said to be covered although an earlier event of the case is not: the positions were altered"
    if position <= last_position:
        return "its log position is not after the case's previous event's: the positions were altered"
    leaf = record_leaf(LogRecord(LogSource.EVENT, 0, ev.fields, str(ev.fields.get("case_id")), _seq_of(ev)))
    if ev.leaf is not None and ev.leaf != leaf:
        return "its leaf is not the one its fields give: the event or its leaf was altered"
    if not verify_inclusion(leaf, position, checkpoint.size, ev.inclusion_proof or (), checkpoint.root):
        return (f"its inclusion proof does not lead from position {position} to the root of the checkpoint of "
                f"{checkpoint.size} entries: the event, its position or its proof was altered")
    return ""


def _seq_of(ev: ExportedEvent) -> int | None:
    """The event's place in its case as its leaf names it."""
    seq = ev.case_seq
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
