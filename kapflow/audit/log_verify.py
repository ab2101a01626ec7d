"""Verifying the audit log against signed checkpoints kept where a database insider cannot reach them.

What the database says is checked against what it cannot change: checkpoints signed with the
practice's key and written outside it (a file, a witness's mailbox). In order:

1. each checkpoint's signature, and no two checkpoints of one size with different roots (a fork);
2. each checkpoint is still in the database, and the stored tree extends each one and the next
   (RFC 9162 consistency proofs from the stored subtrees, then from the newest to the log's head);
3. every position of the log is recomputed from the row it names (an event's leaf from its fields),
   streamed: a row deleted, edited, moved or replaced is named at its position, and the tree rebuilt
   from the rows must have each checkpoint's root at its size;
4. no row claims a position past the log's end (its newest entries deleted), and each message's
   status agrees with its delivery attempts.

Rows placed after the newest checkpoint, and rows not placed yet, are "not yet covered": counted,
never called verified.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kapflow.audit.leaves import record_leaf
from kapflow.audit.merkle import (
    CompactRange,
    Node,
    consistency_ranges,
    perfect_parts,
    range_root,
    ranges_nodes,
    verify_consistency,
)
from kapflow.audit.note import Checkpoint
from kapflow.domain.audit_log import CheckpointRecord, LogSlot
from kapflow.domain.errors import KapflowError

_NO_ROW = b"\x00" * 32  # what a missing row contributes: no leaf hash is all zeros, so every root above it differs

MAX_PROBLEMS = 50
"""Problems listed one by one; past this many only the count grows (the first ones say where to look)."""

_STATUS_OUTCOME = {"sent": "sent", "dead": "gave_up", "dropped": "dropped"}
_FINAL_OUTCOMES = frozenset(_STATUS_OUTCOME.values())


@dataclass(frozen=True)
class LogProblem:
    """Something in the database that disagrees with the log or its checkpoints."""

    reason: str
    position: int | None = None
    case_id: str = ""
    case_seq: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"position": self.position, "case_id": self.case_id or None, "case_seq": self.case_seq,
                "reason": self.reason}


@dataclass(frozen=True)
class CheckpointStatus:
    """One trusted checkpoint and what verification found for it."""

    size: int
    at: datetime
    key_id: str
    status: str  # ok | differs | beyond_log | not_in_database
    line: int | None = None  # its line in the checkpoint file

    def as_dict(self) -> dict[str, object]:
        return {"size": self.size, "at": self.at.isoformat(), "key_id": self.key_id, "status": self.status,
                "line": self.line}


@dataclass
class LogReport:
    """The audit log's verdict: its size, what checkpoints cover, what waits, and every problem found."""

    size: int = 0
    covered: int = 0  # positions below the newest checkpoint the database is proven to hold
    unlogged: int = 0  # rows waiting for a position
    trusted: bool = False  # checked against checkpoints from outside the database
    problems: list[LogProblem] = field(default_factory=list)
    problem_count: int = 0
    checkpoints: list[CheckpointStatus] = field(default_factory=list)

    def add(self, problem: LogProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    @property
    def uncovered(self) -> int:
        """Rows no checkpoint covers yet: placed after the newest one, or not placed at all."""
        return self.size - self.covered + self.unlogged

    @property
    def complete_up_to(self) -> CheckpointStatus | None:
        """The newest trusted checkpoint the database holds in full (a restored copy: what it kept)."""
        held = [c for c in self.checkpoints if c.status == "ok"]
        return max(held, key=lambda c: c.size) if held else None

    @property
    def status(self) -> str:
        if self.problem_count:
            return "failed"
        return "not_yet_covered" if self.uncovered else "ok"

    def as_dict(self) -> dict[str, object]:
        done = self.complete_up_to
        return {
            "status": self.status, "size": self.size, "covered": self.covered, "uncovered": self.uncovered,
            "unlogged": self.unlogged, "trusted": self.trusted, "problem_count": self.problem_count,
            "problems": [p.as_dict() for p in self.problems],
            "checkpoints": [c.as_dict() for c in self.checkpoints],
            "complete_up_to": done.as_dict() if done else None,
        }


@dataclass(frozen=True)
class TrustedCheckpoint:
    """A checkpoint whose signature verified, and where it came from."""

    checkpoint: Checkpoint
    key_id: str
    line: int | None


def read_checkpoint_file(
    lines: Iterable[str], open_note: Callable[[str], tuple[Checkpoint, str]], report: LogReport
) -> list[TrustedCheckpoint]:
    """The checkpoints of a checkpoint file whose signatures verify; every other line is a problem."""
    found: list[TrustedCheckpoint] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            note = json.loads(line)["signed_note"]
            checkpoint, key_id = open_note(note)
        except (ValueError, KeyError, TypeError) as exc:
            report.add(LogProblem(f"checkpoint file line {number} is not a checkpoint line ({type(exc).__name__})"))
            continue
        except KapflowError as exc:  # a signature that does not verify, a note that does not parse
            report.add(LogProblem(f"checkpoint file line {number}: {exc}"))
            continue
        found.append(TrustedCheckpoint(checkpoint, key_id, number))
    return found


class LogVerifier:
    """Verification of one database's log; ``run`` fills a ``LogReport``."""

    def __init__(
        self, *, size: int, nodes: Callable[[set[Node]], Mapping[Node, bytes]], stored: Sequence[CheckpointRecord],
        unlogged: int, misplaced: int,
    ) -> None:
        self.report = LogReport(size=size, unlogged=unlogged)
        self._nodes = nodes
        self._stored = stored
        self._misplaced = misplaced

    def run(
        self, trusted: Sequence[TrustedCheckpoint], slots: Iterator[LogSlot],
        outbox: Iterable[tuple[int, str, str, frozenset[str]]],
    ) -> LogReport:
        report = self.report
        report.trusted = bool(trusted)
        heads = self._heads(trusted)
        self._check_extends(heads)
        self._recompute(slots, heads)
        if self._misplaced:
            report.add(LogProblem(
                f"{self._misplaced} rows say they sit at positions at or past the log's end ({report.size}): "
                "the log's newest entries were deleted"))
        self._check_outbox(outbox)
        return report

    def _heads(self, trusted: Sequence[TrustedCheckpoint]) -> list[TrustedCheckpoint]:
        """The trusted checkpoints by size, one per size; a fork and a checkpoint missing from the database
        are problems. Without trusted ones, the database's own checkpoints (weaker: an insider can replace them)."""
        report = self.report
        by_size: dict[int, TrustedCheckpoint] = {}
        for t in sorted(trusted, key=lambda t: t.checkpoint.size):
            other = by_size.get(t.checkpoint.size)
            if other is not None and other.checkpoint.root != t.checkpoint.root:
                report.add(LogProblem(
                    f"the log forked: checkpoints of size {t.checkpoint.size} (file lines {other.line} and "
                    f"{t.line}) have different roots"))
            by_size.setdefault(t.checkpoint.size, t)
        heads = list(by_size.values())
        if not trusted:
            heads = [TrustedCheckpoint(Checkpoint("database", c.size, c.root, c.at), c.key_id, None)
                     for c in self._stored]
            heads = list({h.checkpoint.size: h for h in heads}.values())
        stored = {(c.size, c.root) for c in self._stored}
        for head in heads:
            c = head.checkpoint
            if c.size > report.size:
                status = "beyond_log"
            elif trusted and (c.size, c.root) not in stored:
                status = "not_in_database"
                report.add(LogProblem(
                    f"the checkpoint of size {c.size} signed at {c.at.isoformat()} (file line {head.line}) is not "
                    "in the database's checkpoints: its row was deleted or replaced"))
            else:
                status = "ok"
            report.checkpoints.append(CheckpointStatus(c.size, c.at, head.key_id, status, head.line))
        return [h for h in heads if h.checkpoint.size <= report.size]

    def _check_extends(self, heads: Sequence[TrustedCheckpoint]) -> None:
        """Consistency proofs from the stored subtrees: each head to the next, the newest to the log's head."""
        sizes = [h.checkpoint for h in heads if h.checkpoint.size > 0]
        size = self.report.size
        if size == 0:
            return
        head_root = self._root(size)
        pairs: list[tuple[Checkpoint, int, bytes | None]] = [(a, b.size, b.root) for a, b in itertools.pairwise(sizes)]
        if sizes:
            pairs.append((sizes[-1], size, head_root))
        for old, new_size, new_root in pairs:
            if head_root is None or not self._consistent(old, new_size, new_root):
                self.report.add(LogProblem(
                    f"the stored tree does not extend the checkpoint of size {old.size} signed at "
                    f"{old.at.isoformat()}: entries before position {old.size} were changed or removed"))
                return

    def _root(self, size: int) -> bytes | None:
        try:
            return range_root(0, size, self._nodes(set(perfect_parts(0, size))))
        except KeyError:
            return None

    def _consistent(self, old: Checkpoint, new_size: int, new_root: bytes | None) -> bool:
        if new_root is None:
            return False
        if old.size == new_size:
            return old.root == new_root
        ranges = consistency_ranges(old.size, new_size)
        try:
            nodes = self._nodes(ranges_nodes(ranges))
            proof = [range_root(a, b, nodes) for a, b in ranges]
        except KeyError:
            return False
        return verify_consistency(old.size, new_size, old.root, new_root, proof)

    def _recompute(self, slots: Iterator[LogSlot], heads: Sequence[TrustedCheckpoint]) -> None:
        """Rebuild the tree from the rows themselves and hold it against every checkpoint's root."""
        report = self.report
        targets = sorted({h.checkpoint.size: h.checkpoint for h in heads if h.checkpoint.size > 0}.items())
        tree, expected, first_bad = CompactRange(), 0, None
        for slot in slots:
            if slot.position != expected:
                report.add(LogProblem(f"positions {expected} to {slot.position - 1} are missing from the log",
                                      expected))
                return  # the tree cannot be rebuilt past a hole; what came before was checked
            expected += 1
            before = report.problem_count
            leaf = self._leaf(slot)
            if report.problem_count > before and first_bad is None:
                first_bad = slot.position
            tree.append(leaf if leaf is not None else _NO_ROW)
            while targets and targets[0][0] == tree.size:
                size, checkpoint = targets.pop(0)
                if tree.root() == checkpoint.root:
                    report.covered = size
                    continue
                self._differs(size, checkpoint, first_bad)
                return
        if expected != report.size:
            report.add(LogProblem(f"the log has {report.size} positions but only {expected} could be read"))

    def _differs(self, size: int, checkpoint: Checkpoint, first_bad: int | None) -> None:
        where = f"from position {first_bad}" if first_bad is not None else f"before position {size}"
        self.report.add(LogProblem(
            f"the rows at the log's first {size} positions do not give the root of the checkpoint signed at "
            f"{checkpoint.at.isoformat()}: the history was rewritten {where}", first_bad))
        for i, c in enumerate(self.report.checkpoints):
            if c.size >= size and c.status == "ok":
                self.report.checkpoints[i] = CheckpointStatus(c.size, c.at, c.key_id, "differs", c.line)

    def _leaf(self, slot: LogSlot) -> bytes | None:
        """The leaf recomputed from the slot's row, or None (with a problem) if the row is gone or moved."""
        record = slot.record
        if record is None:
            self.report.add(LogProblem(
                f"the {slot.source} (id {slot.source_id}) at this position is gone: its row was deleted",
                slot.position, slot.case_id, slot.case_seq))
            return None
        where = {"case_id": record.case_id, "case_seq": record.case_seq}
        if slot.row_position != slot.position:
            self.report.add(LogProblem(
                f"the {slot.source} (id {slot.source_id}) says it sits at position {slot.row_position}",
                slot.position, **where))  # type: ignore[arg-type]
            return None
        leaf = record_leaf(record)
        if leaf != slot.stored_leaf:
            self.report.add(LogProblem(
                f"the {slot.source} (id {slot.source_id}) differs from what was placed in the log: it was edited "
                "after it was written", slot.position, **where))  # type: ignore[arg-type]
            return leaf  # what the rows say now: the tree rebuilt from it shows which checkpoints it breaks
        return leaf

    def _check_outbox(self, outbox: Iterable[tuple[int, str, str, frozenset[str]]]) -> None:
        for message_id, case_id, status, outcomes in outbox:
            wanted = _STATUS_OUTCOME.get(status)
            if wanted is not None and wanted not in outcomes:
                reason = f"message {message_id} is marked {status!r} but no delivery attempt says so"
            elif wanted is None and outcomes & _FINAL_OUTCOMES:
                reason = (f"message {message_id} is marked {status!r} but a delivery attempt ended it "
                          f"({', '.join(sorted(outcomes & _FINAL_OUTCOMES))})")
            else:
                continue
            self.report.add(LogProblem(reason + ": its status was edited", case_id=case_id))
