"""The audit log's commands: placing committed rows in the log (the sequencer) and signing its heads.

Commands write as they always have: a new audit event, queued message or delivery attempt waits
with no position. The sequencer, one process at a time (a lock taken inside its transaction; on
SQLite the write lock already is one), places waiting rows after the log's last position in the
order they were written, extends the RFC 9162 tree with the perfect subtrees the new leaves
complete, and commits. A batch is bounded, so a long backlog never holds the database for long.

A checkpoint signs the tree head (size, root, time) with the practice's Ed25519 key as a C2SP
signed note, stores it, queues it to the witnesses (a compliance mailbox, a webhook), and the
caller appends it to the checkpoint file outside the database.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC

from kapflow.app.audit_export import export_case
from kapflow.app.context import AppContext
from kapflow.app.runner import ONCE, Transaction
from kapflow.audit.leaves import record_leaf
from kapflow.audit.log_verify import LogProblem, LogReport, LogVerifier, TrustedCheckpoint, read_checkpoint_file
from kapflow.audit.merkle import CompactRange, Node, perfect_parts, range_root
from kapflow.audit.note import Checkpoint, NoteSignature, SignedNote
from kapflow.audit.proof import ProofProblem, ProofReport, prove_export
from kapflow.domain.audit_log import CheckpointRecord, LogRecord, LogSource
from kapflow.domain.effects import OutboxMessage
from kapflow.logging import get_logger
from kapflow.ports import LogWrites, Signer

_log = get_logger("kapflow.audit")

BATCH = 2000
"""Rows placed per transaction: a few milliseconds of the write lock on SQLite."""


@dataclass(frozen=True)
class Witness:
    """Where each new checkpoint is sent besides the file: a channel (``email``, ``webhook``) and an address."""

    channel: str
    recipient: str


@dataclass(frozen=True)
class Sequenced:
    """What one sequencer run did: rows placed, and the log's size after it (None: another process was at it)."""

    placed: int
    size: int | None


def sequence(app: AppContext, *, batch: int = BATCH, max_batches: int | None = None) -> Sequenced:
    """Place every committed row still waiting, a batch per transaction, until none waits."""
    placed, size, rounds = 0, None, 0
    while max_batches is None or rounds < max_batches:
        rounds += 1
        done = app.runner.run(lambda tx: _place_batch(tx, batch), policy=ONCE)
        if done is None:
            return Sequenced(placed, None)
        count, size = done
        placed += count
        if count < batch:
            break
    return Sequenced(placed, size)


def _place_batch(tx: Transaction, batch: int) -> tuple[int, int] | None:
    log = tx.uow.log()
    if not log.lock():
        tx.read_only = True
        return None
    size = log.size()
    records = _in_written_order(log.unlogged(batch))
    if not records:
        tx.read_only = True
        return 0, size
    tree = CompactRange(size, _edge(log, size))
    made: list[tuple[Node, bytes]] = []
    for record in records:
        made += tree.append(record_leaf(record))
    log.append(size, records, made)
    return len(records), tree.size


def _edge(log: LogWrites, size: int) -> list[bytes]:
    parts = perfect_parts(0, size)
    found = log.nodes(parts)
    missing = [p for p in parts if p not in found]
    if missing:  # the tree's stored right edge is gone: placing more would build on nothing
        raise RuntimeError(f"the audit log's stored tree lacks subtree {missing[0]}: run kapflow audit verify")
    return [found[p] for p in parts]


def _in_written_order(records: Sequence[LogRecord]) -> list[LogRecord]:
    """Each source's rows keep their own order (a case's events stay in order); sources interleave by time."""
    by_source: dict[LogSource, list[LogRecord]] = {}
    for record in records:
        by_source.setdefault(record.source, []).append(record)
    return list(heapq.merge(*by_source.values(), key=_written_at))


def _written_at(record: LogRecord) -> str:
    return str(record.fields.get("at") or record.fields.get("created_at") or "")


def checkpoint(
    app: AppContext, signer: Signer, origin: str, *, witnesses: Sequence[Witness] = (), force: bool = False,
) -> CheckpointRecord | None:
    """Sequence what waits, then sign and store a new tree head if the log grew (or ``force``).

    Returns the new checkpoint, or None when the newest one already covers the whole log.
    """
    sequence(app)
    return app.runner.run(lambda tx: _sign_head(tx, signer, origin, witnesses, force), policy=ONCE)


def _sign_head(
    tx: Transaction, signer: Signer, origin: str, witnesses: Sequence[Witness], force: bool
) -> CheckpointRecord | None:
    log = tx.uow.log()
    if not log.lock():
        tx.read_only = True
        return None
    size, latest = log.size(), log.latest_checkpoint()
    if latest is not None and latest.size == size and not force:
        tx.read_only = True
        return None
    parts = perfect_parts(0, size)
    root = range_root(0, size, log.nodes(parts))
    now = tx.now().astimezone(UTC).replace(microsecond=0)
    body = Checkpoint(origin, size, root, now).body()
    note = SignedNote(body, (NoteSignature(signer.name, signer.key_id, signer.sign(body.encode("utf-8"))),))
    record = CheckpointRecord(size, root, now, signer.name, f"{signer.key_id:08x}", note.text())
    log.add_checkpoint(record)
    for witness in witnesses:
        tx.uow.add_outbox(_witness_message(record, origin, witness), tx.now())
    _log.info("checkpoint_signed", size=size, key_id=record.key_id)
    return record


def _witness_message(record: CheckpointRecord, origin: str, witness: Witness) -> OutboxMessage:
    subject = f"kapflow audit checkpoint: {origin}, {record.size} entries"
    body = (
        "A new signed checkpoint of the practice's audit log. Keep this message: it lets an auditor prove\n"
        "later that no entry before it was changed or removed (kapflow audit verify --checkpoints).\n\n"
        + record.note
    )
    return OutboxMessage(
        key=f"checkpoint:{record.size}:{record.key_id}:{witness.channel}:{witness.recipient}", case_id="",
        channel=witness.channel, audience="witness", recipient=witness.recipient, subject=subject, body=body,
        payload={"checkpoint": record.note, "size": record.size},
    )


@dataclass(frozen=True)
class LogStatus:
    """Where the audit log stands, cheaply: its size, the rows waiting for a position, the newest checkpoint."""

    size: int
    waiting: int
    latest: CheckpointRecord | None
    checkpoints: int

    @property
    def uncovered(self) -> int:
        """Rows no checkpoint covers yet: placed after the newest one, or waiting to be placed."""
        return self.size - (self.latest.size if self.latest else 0) + self.waiting


def log_status(app: AppContext) -> LogStatus:
    """The log's size, what waits and the newest stored checkpoint; no verification (``verify_log`` does)."""
    log = app.store.log()
    stored = log.checkpoints()
    latest = max(stored, key=lambda c: c.size) if stored else None
    return LogStatus(log.size(), sum(log.unlogged().values()), latest, len(stored))


def verify_log(
    app: AppContext, checkpoint_lines: Iterable[str] | None, open_note: Callable[[str], tuple[Checkpoint, str]] | None,
) -> LogReport:
    """The audit log against the checkpoints of a checkpoint file (``None``: the database's own, weaker).

    ``open_note`` checks a signed note with the practice's public keys and returns its checkpoint and
    the key id that signed it (``kapflow.audit.signing``, through the composition root).
    """
    log = app.store.log()
    size = log.size()
    verifier = LogVerifier(
        size=size, nodes=log.nodes, stored=log.checkpoints(), unlogged=sum(log.unlogged().values()),
        misplaced=sum(log.misplaced(size).values()),
    )
    trusted: list[TrustedCheckpoint] = []
    if checkpoint_lines is not None and open_note is not None:
        trusted = read_checkpoint_file(checkpoint_lines, open_note, verifier.report)
        if not trusted and not verifier.report.problem_count:
            verifier.report.add(LogProblem("the checkpoint file holds no checkpoint: nothing outside the database "
                                           "vouches for the log yet"))
    return verifier.run(trusted, log.slots(), log.outbox_outcomes())


@dataclass(frozen=True)
class Checkpointer:
    """Signs checkpoints as the practice's settings say, and publishes each outside the database.

    ``publish`` receives every stored checkpoint and writes those its file lacks (the checkpoint
    file, ``kapflow.audit.checkpoint_file.publish``), so one that failed to be written is written
    next time. Assembled by the composition root; the worker calls it on its schedule.
    """

    app: AppContext
    signer: Signer
    origin: str
    witnesses: tuple[Witness, ...] = ()
    publish: Callable[[Sequence[CheckpointRecord]], int] | None = None

    def __call__(self, *, force: bool = False) -> CheckpointRecord | None:
        record = checkpoint(self.app, self.signer, self.origin, witnesses=self.witnesses, force=force)
        if self.publish is not None:
            self.publish(self.app.store.log().checkpoints())
        return record


def verify_case_log(
    app: AppContext, case_id: str, checkpoint_lines: Iterable[str], open_note: Callable[[str], tuple[Checkpoint, str]],
) -> ProofReport:
    """One case's events proven in the newest checkpoint of the file that the database still holds.

    The fast, local check for one case: its export against that checkpoint, proven as an outside auditor
    would (``prove_export``), and the checkpoint the database proves against must be the file's (the
    same size and root), so a database that re-signed a rewritten history is caught.
    """
    problems = LogReport()
    trusted = read_checkpoint_file(checkpoint_lines, open_note, problems)
    stored = {(c.size, c.root) for c in app.store.log().checkpoints()}
    held = [t.checkpoint for t in trusted if (t.checkpoint.size, t.checkpoint.root) in stored]
    if problems.problems or not held:
        reason = problems.problems[0].reason if problems.problems else (
            "no checkpoint of the file is in the database: its checkpoints were deleted or replaced, or none "
            "was signed yet (kapflow audit checkpoint)")
        return ProofReport(case_id, 0, 0, 0, None, None, ProofProblem(reason))
    newest = max(held, key=lambda c: c.size)
    return prove_export(export_case(app, case_id, newest.size), open_note)
