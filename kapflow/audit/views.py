"""What a command reads instead of the entries' texts, checked against them: the kept views' snapshots against a fold
of the facts each covers, and each entry's kind against its text.

A command on a case read cold starts from these snapshots (``kapflow.domain.case.StoredView``) instead of folding
its facts, so a snapshot edited by hand would change what its guards see while the chain and the case row still
verify. Each snapshot must be exactly what a fold of the case's first ``fact_count`` facts makes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from itertools import groupby
from typing import Any

from kapflow.audit.chain import AuditProblem
from kapflow.domain.case import CaseFacts, CaseRecord, Snapshot
from kapflow.domain.entries import Entries

Folds = Mapping[str, Callable[[CaseFacts], str]]


def view_problems(
    snapshots: Iterable[tuple[str, str, Snapshot]], case_of: Callable[[str], CaseRecord | None],
    folds_of: Callable[[CaseRecord], Folds], skip: Collection[str] = (),
) -> list[AuditProblem]:
    """A problem for each case with a snapshot that differs from a fold of the facts it covers (the first found).

    ``snapshots``: (case id, view name, snapshot), by case id; ``folds_of(case)``: each view its workflow keeps, by
    name, as a fold makes it (``kapflow.domain.stored_views``). A snapshot of a name the case's workflow does not
    keep now (another version of the code or of the workflow) is not read by any command, and not checked.
    ``skip``: cases found broken already (their facts prove nothing more)."""
    problems: list[AuditProblem] = []
    for case_id, group in groupby(snapshots, key=lambda found: found[0]):
        if case_id in skip:
            continue
        case = case_of(case_id)
        if case is None:
            problems.append(AuditProblem(case_id, None, None, "snapshots of kept views exist for a case that is not "
                                         "in the cases table: rows added by hand"))
            continue
        folds = folds_of(case)
        for _, name, snapshot in group:
            fold = folds.get(name)
            if fold is not None and not _holds(case, fold, snapshot):
                problems.append(AuditProblem(case_id, None, None, (
                    f"its kept view {name!r} after {snapshot.fact_count} facts differs from a fold of those facts: "
                    "the row was edited, and commands on the case read it (delete the row: they fold the facts "
                    "instead, and write it again)")))
                break
    return problems


def label_problems(mislabelled: Iterable[tuple[str, int]], skip: Collection[str] = ()) -> list[AuditProblem]:
    """A problem for each case with entry rows whose kind is not their entry's (``Store.entries_mislabelled``)."""
    return [AuditProblem(case_id, None, None, (
        f"{count} of its projection's entry rows name a kind (or trigger) their entry does not have: edited by hand, "
        "and commands group the case's entries by it, so a guard could miss a fact (set it to the entry's own, or "
        "to NULL: the entries are then read from their texts)")) for case_id, count in mislabelled
        if case_id not in skip]


def _holds(case: CaseRecord, fold: Callable[[CaseFacts], str], snapshot: Snapshot) -> bool:
    facts: Any = case.facts["facts"]
    if not 0 < snapshot.fact_count <= len(facts):
        return False
    covered = Entries(facts.texts[:snapshot.fact_count]) if isinstance(facts, Entries) else facts[:snapshot.fact_count]
    return fold(CaseFacts({"facts": covered, "moves": []})) == snapshot.body
