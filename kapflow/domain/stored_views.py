"""The views of a case the store keeps (``kapflow.domain.case.StoredView``, and the index of a long case's facts by
kind, ``EntryIndex``), by name, as a fold of its facts makes them: what ``kapflow audit verify`` compares each
snapshot in the store with.

A snapshot is read by commands in place of a year of facts, so one edited by hand would change what their guards
see without touching the audit chain: verification folds the facts it covers and compares.
"""

from __future__ import annotations

from collections.abc import Callable

from kapflow.domain.appointments import appointments, stored_appointments
from kapflow.domain.billing import ledger, ledger_snapshot, stored_ledger
from kapflow.domain.case import CaseFacts
from kapflow.domain.entries import ENTRY_INDEX, Entries
from kapflow.domain.payload import canonical_json
from kapflow.domain.workflow import Workflow


def snapshot_folds(wf: Workflow, case_id: str) -> dict[str, Callable[[CaseFacts], str]]:
    """Each view of a case of ``wf`` the store may keep, by its name: the snapshot a fold of the facts given makes
    (its canonical JSON, as the store holds it)."""
    folds: dict[str, Callable[[CaseFacts], str]] = {ENTRY_INDEX: _entry_index}
    carriers, billing = wf.appointments, wf.billing
    if carriers is not None:
        kept = stored_appointments(case_id, carriers)
        folds[kept.name] = lambda facts: canonical_json(kept.encode(appointments(case_id, facts, carriers)))
    if billing is not None:
        folds[stored_ledger(billing).name] = lambda facts: ledger_snapshot(facts, billing)
    return folds


def work_out(wf: Workflow, case_id: str, facts: CaseFacts) -> None:
    """Work out, on ``facts``, every view of a case of ``wf`` the store keeps (each kept with the facts, for the
    command's planners to take): when the index of the case's facts is written, their snapshots are written with
    it, so a command reading the case in part steps each by facts it read (``CaseRecord.index_due``)."""
    if wf.appointments is not None:
        appointments(case_id, facts, wf.appointments)
    if wf.billing is not None:
        ledger(facts, wf.billing)


def _entry_index(facts: CaseFacts) -> str:
    """The index of the facts by kind (``kapflow.domain.case.EntryIndex``) that a command on a long case reads in
    place of the texts it covers, as the facts make it."""
    raw = facts.raw["facts"]
    return (raw if isinstance(raw, Entries) else Entries.of(raw)).index_by("kind").body()
