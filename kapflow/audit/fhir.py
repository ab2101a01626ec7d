"""A case's audit export as a FHIR R4B Bundle: an AuditEvent per event, a Provenance per recorded fact.

One of the two modules of kapflow that import ``fhir.resources`` (the optional ``fhir`` extra; the other
is ``kapflow.billing_fhir``), and it uses its R4B models (``fhir.resources.R4B``; the package's default is
R5). The Bundle is what a records request or an EHR takes in; it carries the same proofs as the JSONL
form, so it can be proven too (``kapflow.audit.proof``).

Each AuditEvent says in FHIR terms who (``agent.who.identifier``, the actor id, with their role)
did what (``type`` DICOM 110110 "Patient Record", ``subtype`` the kapflow event kind, ``action``
C/U/E) to which case (``entity.what.identifier``) and when (``recorded``). Its entity's ``detail``
entries carry the proof: ``fields`` (the event's hashed fields, canonical JSON, base64: byte-exact,
since the chain hash is recomputed from them), ``hash``, ``log_position``, ``leaf``,
``inclusion_proof`` (hex, ``;``-joined) and ``checkpoint`` (the signed note, base64). An event not
yet covered has no position, leaf or proof.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir.resources.R4B.auditevent import (
    AuditEvent,
    AuditEventAgent,
    AuditEventEntity,
    AuditEventEntityDetail,
    AuditEventSource,
)
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.provenance import Provenance, ProvenanceAgent, ProvenanceEntity
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

from kapflow.audit.export_formats import CaseExport, ExportedCheckpoint, ExportedEvent
from kapflow.audit.note import Checkpoint, SignedNote
from kapflow.domain.errors import CheckpointFormatError, KapflowError
from kapflow.domain.events import EventKind
from kapflow.domain.payload import canonical_json

CASE_SYSTEM = "urn:kapflow:case"
ACTOR_SYSTEM = "urn:kapflow:actor"
KIND_SYSTEM = "urn:kapflow:audit-event-kind"
EXPORT_SYSTEM = "urn:kapflow:audit-export"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_NAMESPACE = uuid.UUID("8f0c2a4e-64a1-4d3c-9b7e-3f1d2c5a6b70")
"""Entry ids are UUIDv5 of the case and event, so the same export gives the same Bundle."""

_ACTIONS: dict[str, str] = {
    EventKind.OPENED: "C", EventKind.FACT: "C", EventKind.TRANSITION: "U", EventKind.MIGRATED: "U",
}
"""FHIR's audit-event-action: a case opened or a fact added creates, a move updates; the rest executes."""
_OUTCOMES: dict[str, str] = {EventKind.REFUSED: "4", EventKind.MESSAGE_DROPPED: "4", EventKind.DELIVERY_FAILED: "8"}
"""FHIR's audit-event-outcome: 0 success, 4 minor failure (refused, dropped), 8 serious (undelivered)."""


# ------------------------------------------------------------------------------------------ writing


def bundle_json(export: CaseExport) -> str:
    """The export as the JSON of a FHIR R4B Bundle (type ``collection``)."""
    return str(bundle(export).model_dump_json(exclude_none=True, indent=1))


def bundle(export: CaseExport) -> Bundle:
    """The export as a FHIR R4B Bundle: each event's AuditEvent, then a Provenance for each recorded fact."""
    entries: list[BundleEntry] = []
    for ev in export.events:
        audit_url = _entry_url(export.case_id, ev, "AuditEvent")
        entries.append(BundleEntry(fullUrl=audit_url, resource=audit_event(export, ev)))
        if ev.fields.get("kind") == EventKind.FACT:
            entries.append(BundleEntry(fullUrl=_entry_url(export.case_id, ev, "Provenance"),
                                       resource=provenance(export.case_id, ev, audit_url)))
    ident = Identifier(system=EXPORT_SYSTEM, value=f"{export.case_id}@{export.checkpoint.size}")
    return Bundle(type="collection", identifier=ident, entry=entries)


def _entry_url(case_id: str, ev: ExportedEvent, resource: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{case_id}/{ev.case_seq}/{resource}')}"


def audit_event(export: CaseExport, ev: ExportedEvent) -> AuditEvent:
    """One event as an AuditEvent, its proof in its entity's details."""
    kind = str(ev.fields.get("kind"))
    return AuditEvent(
        type=Coding(system=DCM, code="110110", display="Patient Record"),
        subtype=[Coding(system=KIND_SYSTEM, code=kind)],
        action=_ACTIONS.get(kind, "E"),
        outcome=_OUTCOMES.get(kind, "0"),
        recorded=_instant(ev.fields),
        agent=[_audit_agent(ev.fields)],
        source=AuditEventSource(
            site=export.origin, observer=Reference(display="kapflow"),
            type=[Coding(system=SOURCE_TYPE, code="4", display="Application Server")],
        ),
        entity=[AuditEventEntity(
            what=_case_reference(export.case_id),
            type=Coding(system=ENTITY_TYPE, code="2", display="System Object"),
            detail=_details(export.checkpoint, ev),
        )],
    )


def _audit_agent(fields: Mapping[str, object]) -> AuditEventAgent:
    os_user = fields.get("os_user")
    return AuditEventAgent(
        role=[CodeableConcept(text=str(fields.get("role")))], who=_actor_reference(fields), requestor=True,
        altId=str(os_user) if os_user else None,
    )


def provenance(case_id: str, ev: ExportedEvent, audit_url: str) -> Provenance:
    """A recorded fact as a Provenance of the case: who added it and when, pointing at its AuditEvent."""
    data = ev.fields.get("data")
    fact_kind = data.get("kind") if isinstance(data, Mapping) else None
    return Provenance(
        target=[_case_reference(case_id)],
        recorded=_instant(ev.fields),
        activity=CodeableConcept(coding=[Coding(system=DATA_OPERATION, code="CREATE", display="create")],
                                 text=str(fact_kind) if fact_kind else None),
        agent=[ProvenanceAgent(role=[CodeableConcept(text=str(ev.fields.get("role")))],
                               who=_actor_reference(ev.fields))],
        entity=[ProvenanceEntity(role="source", what=Reference(reference=audit_url))],
    )


def _case_reference(case_id: str) -> Reference:
    return Reference(identifier=Identifier(system=CASE_SYSTEM, value=case_id))


def _actor_reference(fields: Mapping[str, object]) -> Reference:
    return Reference(identifier=Identifier(system=ACTOR_SYSTEM, value=str(fields.get("actor"))))


def _details(checkpoint: ExportedCheckpoint, ev: ExportedEvent) -> list[AuditEventEntityDetail]:
    details = [
        AuditEventEntityDetail(type="fields", valueBase64Binary=_b64(canonical_json(dict(ev.fields)))),
        AuditEventEntityDetail(type="hash", valueString=ev.hash),
    ]
    if ev.covered and ev.leaf is not None:
        details += [AuditEventEntityDetail(type="log_position", valueString=str(ev.log_position)),
                    AuditEventEntityDetail(type="leaf", valueString=ev.leaf.hex())]
        if ev.inclusion_proof:  # a FHIR string is never empty: a one-entry log's proof has no hash
            proof = ";".join(h.hex() for h in ev.inclusion_proof)
            details.append(AuditEventEntityDetail(type="inclusion_proof", valueString=proof))
    details.append(AuditEventEntityDetail(type="checkpoint", valueBase64Binary=_b64(checkpoint.signed_note)))
    return details


def _b64(text: str) -> bytes:
    """A base64Binary value as ``fhir.resources`` takes it: base64 bytes (it hands them back decoded)."""
    return base64.b64encode(text.encode("utf-8"))


def _instant(fields: Mapping[str, object]) -> datetime:
    """The event's time (its ``at``, ISO 8601 UTC) for ``recorded``."""
    return datetime.fromisoformat(str(fields.get("at")))


# ------------------------------------------------------------------------------------------ reading


def read_bundle(text: str) -> CaseExport:
    """An export back from a Bundle's JSON (as ``bundle_json`` wrote it); malformed: ``CheckpointFormatError``."""
    try:
        parsed = Bundle.model_validate_json(text)
    except ValidationError as exc:
        raise _bad(f"not a FHIR R4B Bundle ({exc.error_count()} problems)") from None
    events = [r for r in (e.resource for e in parsed.entry or ()) if isinstance(r, AuditEvent)]
    if not events:
        raise _bad("the Bundle holds no AuditEvent")
    read = [_read_event(n, ev) for n, ev in enumerate(events, start=1)]
    case_ids, notes = {r[0] for r in read}, {r[1] for r in read}
    if len(case_ids) != 1 or len(notes) != 1:
        raise _bad("the AuditEvents name more than one case or checkpoint")
    (case_id,), (note,) = case_ids, notes
    origin, size, root = _checkpoint_head(note)
    return CaseExport(case_id, origin, ExportedCheckpoint(size, root, note), tuple(r[2] for r in read))


def _read_event(number: int, event: AuditEvent) -> tuple[str, str, ExportedEvent]:
    entity = next((e for e in event.entity or () if _case_id(e) is not None), None)
    if entity is None:
        raise _bad(f"AuditEvent {number} names no case")
    details = {d.type: d.valueString or d.valueBase64Binary for d in entity.detail or ()}
    try:
        fields = json.loads(_unb64(details["fields"]))
        note = _unb64(details["checkpoint"])
        chain_hash = str(details["hash"])
        position = details.get("log_position")
        leaf = details.get("leaf")
        proof = details.get("inclusion_proof")
        exported = ExportedEvent(
            fields, chain_hash, None if position is None else int(position),
            None if leaf is None else bytes.fromhex(str(leaf)),
            None if position is None else tuple(bytes.fromhex(h) for h in str(proof or "").split(";") if h),
        )
    except (KeyError, ValueError, TypeError):
        raise _bad(f"AuditEvent {number}'s details are missing or malformed") from None
    if not isinstance(fields, dict):
        raise _bad(f"AuditEvent {number}'s fields are not a JSON object")
    return str(_case_id(entity)), note, exported


def _case_id(entity: AuditEventEntity) -> str | None:
    ident = entity.what.identifier if entity.what is not None else None
    return str(ident.value) if ident is not None and ident.system == CASE_SYSTEM and ident.value else None


def _unb64(value: Any) -> str:
    """A base64Binary detail's text: ``fhir.resources`` hands it over decoded (bytes); a string is decoded here."""
    try:
        raw = value if isinstance(value, bytes) else base64.b64decode(str(value), validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not base64 of UTF-8 text") from None


def _checkpoint_head(note: str) -> tuple[str, int, bytes]:
    """The origin, size and root the note states (unverified here: the prover checks its signature)."""
    try:
        head = Checkpoint.parse_body(SignedNote.parse(note).body)
    except KapflowError as err:
        raise _bad(f"the checkpoint is malformed: {err.message}") from None
    return head.origin, head.size, head.root


def _bad(reason: str) -> CheckpointFormatError:
    return CheckpointFormatError("FHIR audit export", reason)
