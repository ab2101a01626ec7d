"""Rows to domain records and back: the one mapping between kapflow's tables and its dataclasses."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row

from kapflow.domain.case import AuditEvent, CaseRecord, ProjectionText, to_iso
from kapflow.domain.payload import canonical_json
from kapflow.store.prepared import AUDIT_COLUMNS, CASE_COLUMNS


def case_from_row(row: Row[Any] | Mapping[str, Any], parsed: Mapping[str, Any] | None = None) -> CaseRecord:
    """A case from a row; ``parsed`` is what its ``facts`` text parses to, when already known."""
    m = row._mapping if isinstance(row, Row) else row
    facts = json.loads(m["facts"]) if parsed is None else parsed
    return CaseRecord(
        id=m["id"],
        workflow=m["workflow"],
        workflow_version=m["workflow_version"],
        state=m["state"],
        previous_state=m["previous_state"],
        version=m["version"],
        event_count=m["event_count"],
        head_hash=m["head_hash"],
        facts=facts,
        opened_at=datetime.fromisoformat(m["opened_at"]),
        updated_at=datetime.fromisoformat(m["updated_at"]),
        facts_text=ProjectionText(facts, m["facts"]),  # so a command can append to it (text_after_fold)
    )


def case_from_values(row: Sequence[Any], parsed: Mapping[str, Any] | None = None) -> CaseRecord:
    """A case from a DBAPI row of ``select(cases table)``, in its column order."""
    return case_from_row(dict(zip(CASE_COLUMNS, row, strict=True)), parsed)


ID_COLUMN, FACTS_COLUMN = CASE_COLUMNS.index("id"), CASE_COLUMNS.index("facts")  # in a DBAPI row of cases


def case_values(case: CaseRecord) -> dict[str, Any]:
    return {
        "workflow_version": case.workflow_version,  # changes when a case is migrated to another version
        "state": case.state,
        "previous_state": case.previous_state,
        "version": case.version,
        "event_count": case.event_count,
        "head_hash": case.head_hash,
        "facts": case.facts_json(),
        "updated_at": to_iso(case.updated_at),
    }


def event_values(ev: AuditEvent) -> dict[str, Any]:
    f = ev.hashed_fields()
    return {**f, "data": canonical_json(f["data"]), "blockers": canonical_json(f["blockers"]), "hash": ev.hash,
            "os_user": ev.os_user}


# Where each column sits in a row of ``select(audit table)``: rows are read by position, as a
# history of fifty events would otherwise spend more on building mappings than on the query.
_SEQ, _CASE_ID, _CASE_SEQ, _AT, _ACTOR, _ROLE, _KIND, _TRIGGER, _FROM, _TO, _WORKFLOW, _VERSION, _DATA, \
    _BLOCKERS, _KEY, _PREV, _HASH, _OS_USER = (AUDIT_COLUMNS.index(name) for name in (
        "seq", "case_id", "case_seq", "at", "actor", "role", "kind", "trigger", "from_state", "to_state",
        "workflow", "workflow_version", "data", "blockers", "idempotency_key", "prev_hash", "hash", "os_user",
    ))


def event_from_row(row: Sequence[Any]) -> AuditEvent:
    """An audit event from a row of ``select(audit table)`` (an SQLAlchemy Row or a DBAPI tuple)."""
    return AuditEvent(
        seq=row[_SEQ],
        case_id=row[_CASE_ID],
        case_seq=row[_CASE_SEQ],
        at=datetime.fromisoformat(row[_AT]),
        actor=row[_ACTOR],
        role=row[_ROLE],
        kind=row[_KIND],
        trigger=row[_TRIGGER],
        from_state=row[_FROM],
        to_state=row[_TO],
        workflow=row[_WORKFLOW],
        workflow_version=row[_VERSION],
        data={} if row[_DATA] == "{}" else json.loads(row[_DATA]),
        blockers=() if row[_BLOCKERS] == "[]" else tuple(json.loads(row[_BLOCKERS])),  # most events: none
        idempotency_key=row[_KEY],
        prev_hash=row[_PREV],
        hash=row[_HASH],
        os_user=row[_OS_USER],
    )
