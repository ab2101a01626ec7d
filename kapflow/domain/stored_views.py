"""The views of a case the store keeps (``kapflow.domain.case.StoredView``), by name, as a fold of its facts makes
them: what ``kapflow audit verify`` compares each snapshot in the store with.

A snapshot is read by commands in place of a year of facts, so one edited by hand would change what their guards
see without touching the audit chain: verification folds the facts it covers and compares.
"""

from __future__ import annotations

from collections.abc import Callable

from kapflow.domain.appointments import appointments, stored_appointments
from kapflow.domain.billing import ledger_snapshot, stored_ledger
from kapflow.domain.case import CaseFacts
from kapflow.domain.payload import canonical_json
from kapflow.domain.workflow import Workflow


def snapshot_folds(wf: Workflow, case_id: str) -> dict[str, Callable[[CaseFacts], str]]:
    """Each view of a case of ``wf`` the store may keep, by its name: the snapshot a fold of the facts given makes
    (its canonical JSON, as the store holds it)."""
    folds: dict[str, Callable[[CaseFacts], str]] = {}
    carriers, billing = wf.appointments, wf.billing
    if carriers is not None:
        kept = stored_appointments(case_id, carriers)
        folds[kept.name] = lambda facts: canonical_json(kept.encode(appointments(case_id, facts, carriers)))
    if billing is not None:
        folds[stored_ledger(billing).name] = lambda facts: ledger_snapshot(facts, billing)
    return folds
