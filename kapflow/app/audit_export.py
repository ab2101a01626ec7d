"""One case's history with an inclusion proof per event against a signed checkpoint (a query: reads only).

The proofs are built from the perfect subtrees the sequencer stored (``kapflow.audit.merkle``):
every hash every event's proof needs is read in ONE ``nodes`` call, so a case of hundreds of events
costs one round trip, not one per event. An event placed at or after the checkpoint's size (or not
placed yet) is exported as not yet covered, without a proof.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kapflow.app import queries
from kapflow.app.context import AppContext
from kapflow.audit.export_formats import CaseExport, ExportedCheckpoint, ExportedEvent, origin_of
from kapflow.audit.leaves import record_leaf
from kapflow.audit.merkle import Node, inclusion_ranges, range_root, ranges_nodes
from kapflow.domain.audit_log import CheckpointRecord, LogRecord, LogSource
from kapflow.domain.case import AuditEvent
from kapflow.domain.errors import InvalidInput, StorageError


def export_case(app: AppContext, case_id: str, checkpoint_size: int | None = None) -> CaseExport:
    """``case_id``'s events with their proofs against the newest checkpoint (or the one of ``checkpoint_size``)."""
    events = queries.history(app, case_id)  # UnknownCase first: the checkpoint is the caller's second concern
    log = app.store.log()
    checkpoint = pick_checkpoint(log.checkpoints(), checkpoint_size)
    positions = _covered_positions(log.case_positions(case_id), checkpoint.size)
    ranges = {seq: inclusion_ranges(pos, checkpoint.size) for seq, pos in positions.items()}
    needed = set().union(*(ranges_nodes(r) for r in ranges.values()))
    nodes = log.nodes(needed) if needed else {}
    exported = tuple(
        _exported(ev, positions.get(ev.case_seq), ranges.get(ev.case_seq, []), nodes) for ev in events
    )
    cp = ExportedCheckpoint(checkpoint.size, checkpoint.root, checkpoint.note)
    return CaseExport(case_id, origin_of(checkpoint.note), cp, exported)


def pick_checkpoint(stored: Sequence[CheckpointRecord], size: int | None) -> CheckpointRecord:
    """The newest stored checkpoint, or the newest of ``size``; none, or an unknown size, is ``InvalidInput``."""
    if not stored:
        raise InvalidInput("no checkpoint of the audit log has been signed yet: run kapflow audit checkpoint",
                           field="checkpoint")
    if size is None:
        return stored[-1]
    found = [cp for cp in stored if cp.size == size]
    if not found:
        sizes = ", ".join(str(s) for s in sorted({cp.size for cp in stored}))
        raise InvalidInput(f"no checkpoint of size {size}; the checkpoints stored have sizes {sizes}",
                           field="checkpoint")
    return found[-1]


def _covered_positions(positions: Mapping[int, int], size: int) -> dict[int, int]:
    """The case's events the checkpoint covers: placed before its size."""
    return {seq: pos for seq, pos in positions.items() if pos is not None and 0 <= pos < size}


def _exported(
    ev: AuditEvent, position: int | None, ranges: Sequence[tuple[int, int]], nodes: Mapping[Node, bytes]
) -> ExportedEvent:
    fields = ev.hashed_fields()
    if position is None:
        return ExportedEvent(fields, ev.hash)
    leaf = record_leaf(LogRecord(LogSource.EVENT, ev.seq or 0, fields, ev.case_id, ev.case_seq))
    try:
        proof = tuple(range_root(start, end, nodes) for start, end in ranges)
    except KeyError:
        raise StorageError("the audit log's stored tree lacks a subtree a proof needs: run kapflow audit verify"
                           ) from None
    return ExportedEvent(fields, ev.hash, position, leaf, proof)
