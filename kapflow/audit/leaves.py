"""A log record's Merkle leaf: the bytes that stand for one row in the audit log (RFC 9162 entries).

An event's entry names its case and place there and carries its chain hash recomputed from its
fields: the leaf of an edited event differs whether or not its stored hash was recomputed too.
A message's, a delivery attempt's, a read's (access log) and a sign-in attempt's entries carry their
fields as they were when sequenced.
"""

from __future__ import annotations

from kapflow.audit.chain import fields_hash
from kapflow.audit.merkle import leaf_hash
from kapflow.domain.audit_log import LogRecord, LogSource
from kapflow.domain.payload import canonical_json


def log_entry(record: LogRecord) -> bytes:
    """The entry the leaf hashes: canonical JSON, tagged with its source."""
    if record.source is LogSource.EVENT:
        body: dict[str, object] = {
            "case_id": record.case_id, "case_seq": record.case_seq, "hash": fields_hash(record.fields),
        }
    else:
        body = {"id": record.id, **record.fields}
    return canonical_json({"source": str(record.source), **body}).encode("utf-8")


def record_leaf(record: LogRecord) -> bytes:
    """The leaf hash of ``record``: ``SHA-256(0x00 || entry)``."""
    return leaf_hash(log_entry(record))
