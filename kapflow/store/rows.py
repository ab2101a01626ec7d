"""Rows to domain records and back: the one mapping between kapflow's tables and its dataclasses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row

from kapflow.domain.case import AuditEvent, CaseRecord, ProjectionText, to_iso
from kapflow.domain.payload import canonical_json


def case_from_row(row: Row[Any] | Mapping[str, Any]) -> CaseRecord:
    m = row._mapping if isinstance(row, Row) else row
    facts = json.loads(m["facts"])
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
    return {**f, "data": canonical_json(f["data"]), "blockers": canonical_json(f["blockers"]), "hash": ev.hash}


def event_from_row(row: Row[Any]) -> AuditEvent:
    m = row._mapping
    return AuditEvent(
        seq=m["seq"],
        case_id=m["case_id"],
        case_seq=m["case_seq"],
        at=datetime.fromisoformat(m["at"]),
        actor=m["actor"],
        role=m["role"],
        kind=m["kind"],
        trigger=m["trigger"],
        from_state=m["from_state"],
        to_state=m["to_state"],
        workflow=m["workflow"],
        workflow_version=m["workflow_version"],
        data=json.loads(m["data"]),
        blockers=tuple(json.loads(m["blockers"])),
        idempotency_key=m["idempotency_key"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )
