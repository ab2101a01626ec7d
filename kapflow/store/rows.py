"""Rows to domain records and back: the one mapping between kapflow's tables and its dataclasses."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy.engine import Row

from kapflow.domain.case import AuditEvent, CaseRecord
from kapflow.domain.entries import Entries, EntryIndex, EntryLoader, to_iso
from kapflow.domain.payload import canonical_json
from kapflow.store.prepared import AUDIT_COLUMNS, CASE_COLUMNS, SECTIONS


def case_from_row(row: Row[Any] | Mapping[str, Any], parsed: Mapping[str, Any] | None = None) -> CaseRecord:
    """A case from a row of a case read (``case_read``), whose ``facts`` holds the texts of its projection's
    entries, its facts and then its moves; ``parsed`` is the projection of those very texts, when kept.

    The entries stay undecoded until something reads them (``Entries``): a command on a year-old case decodes
    the kinds its guards ask for."""
    m = row._mapping if isinstance(row, Row) else row
    if parsed is not None:
        facts = parsed
    else:
        texts, count, keys = m["facts"], m["fact_count"], m["keys"]
        if keys is None:  # read from the texts when a query asks
            facts = {"facts": Entries(texts[:count]), "moves": Entries(texts[count:])}
        else:
            facts = {"facts": Entries(texts[:count], keys=(ENTRY_KEYS["facts"], keys[:count])),
                     "moves": Entries(texts[count:], keys=(ENTRY_KEYS["moves"], keys[count:]))}
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
    )


def case_from_values(row: Sequence[Any], parsed: Mapping[str, Any] | None = None) -> CaseRecord:
    """A case from a DBAPI row of ``select(cases table)``, in its column order."""
    return case_from_row(dict(zip(CASE_COLUMNS, row, strict=True)), parsed)


ID_COLUMN, FACTS_COLUMN = CASE_COLUMNS.index("id"), CASE_COLUMNS.index("facts")  # in a DBAPI row of a case read
ENTRY_KEYS = {"facts": "kind", "moves": "trigger"}  # what ``case_entries.kind`` holds of an entry, by section
FACT_COUNT_COLUMN = _FACT_COUNT = CASE_COLUMNS.index("fact_count")
_MOVE_COUNT = CASE_COLUMNS.index("move_count")


def case_values(case: CaseRecord) -> dict[str, Any]:
    return {
        "workflow_version": case.workflow_version,  # changes when a case is migrated to another version
        "state": case.state,
        "previous_state": case.previous_state,
        "version": case.version,
        "event_count": case.event_count,
        "head_hash": case.head_hash,
        "fact_count": len(case.facts["facts"]),
        "move_count": len(case.facts["moves"]),
        "updated_at": to_iso(case.updated_at),
    }


def entry_rows(case_id: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The ``case_entries`` rows of the entries ``after`` adds at the end of ``before``'s lists (every entry when
    ``before`` is None); None when ``after`` is not ``before`` with entries appended (then it is written anew).

    A fold shares the entries it did not add (``fold_fact``), so the last entry ``before`` had is the very
    object (or, in ``Entries``, the very text) at its place in ``after``: a check that costs nothing on a case
    of any length. The text of an entry ``Entries`` holds is written as it is, not serialized again.
    """
    rows: list[dict[str, Any]] = []
    for section in SECTIONS:
        new, old = after[section], (before[section] if before is not None else ())
        had = len(old)
        if len(new) < had or (had and not _same_entry(new, old, had - 1)):
            return None
        key = ENTRY_KEYS[section]
        rows += [{"case_id": case_id, "section": section, "n": n, "entry": _entry_text(new, n), "kind": new[n][key]}
                 for n in range(had, len(new))]
    return rows


def _same_entry(new: Sequence[Any], old: Sequence[Any], n: int) -> bool:
    if isinstance(new, Entries) and isinstance(old, Entries):
        # An entry both read in part from the store (its text, if read since, read from there) is the store's.
        return (new.stored_at(n) and old.stored_at(n)) or new.text(n) is old.text(n)
    return new[n] is old[n]


def _entry_text(entries: Sequence[Any], n: int) -> str:
    return entries.text(n) if isinstance(entries, Entries) else canonical_json(entries[n])


def with_projections(rows: Sequence[Sequence[Any]], entries_of: Callable[[str], Sequence[Sequence[Any]]]
                     ) -> list[Sequence[Any]]:
    """Rows of a case read with their projection's entries (the texts of its facts, then of its moves): as read
    (PostgreSQL gathers them), or gathered here from ``entries_of(ids)``, the (case_id, section, n, entry) rows of
    the cases whose ids are the JSON array ``ids``, in order. Each case takes the entries its row counts
    (``fact_count``, ``move_count``): one a command added after the row was read is not this row's, so the case
    is the one a single commit left. Their kinds are left to be read from the texts (``keys``)."""
    if not rows or rows[0][FACTS_COLUMN] is not None:
        return list(rows)
    texts: dict[str, tuple[list[str], list[str]]] = {r[ID_COLUMN]: ([], []) for r in rows}
    for case_id, section, _n, entry in entries_of(json.dumps(list(texts))):
        texts[case_id][section == "moves"].append(entry)
    done: list[Sequence[Any]] = []
    for r in rows:
        facts, moves = texts[r[ID_COLUMN]]
        del facts[r[_FACT_COUNT]:], moves[r[_MOVE_COUNT]:]
        done.append((*r[:FACTS_COLUMN], facts + moves, *r[FACTS_COLUMN + 1:]))
    return done


def read_entries(row: Sequence[Any], entries: Sequence[Sequence[Any]], index: EntryIndex | None,
                 loader: EntryLoader | None) -> tuple[Entries, Entries] | None:
    """A case's facts and moves from a command's read of its entries (``HotStatements.select_entries``: section,
    place, text and kind, its facts' in order and then its moves'), as many of each as its row counts (an entry a
    command added after the row was read is not this row's). ``index``: the store's index of its facts, when the
    read took only those past it; the earlier ones are then read through ``loader`` when a query reaches them.
    None when the facts read do not follow that index (a hand's edit, or no index where one was taken): read them
    all. Split by whole columns: a year-old case read whole has four hundred."""
    facts_count, moves_count = row[_FACT_COUNT], row[_MOVE_COUNT]
    sections, places, texts, kinds = zip(*entries, strict=True) if entries else ((), (), (), ())
    split = sections.count("facts")
    start = index.size if index is not None else 0
    early = bisect_left(places, start, 0, split)  # the last entries of each kind the index covers, read with them
    facts_end, moves_end = min(split, early + facts_count - start), min(len(texts), split + moves_count)
    if start and (facts_end - early != facts_count - start or (facts_end > early and places[early] != start)):
        return None
    fact_kinds, move_kinds = kinds[early:facts_end], kinds[split:moves_end]
    # An entry a hand wrote without its kind: the kinds are read from the texts.
    known = None not in fact_kinds
    if index is not None and loader is not None:
        facts = Entries.partial(index, texts[early:facts_end], fact_kinds if known else None, loader,
                                dict(zip(places[:early], texts[:early], strict=True)))
    else:
        facts = Entries(list(texts[:facts_end]), keys=(ENTRY_KEYS["facts"], list(fact_kinds)) if known else None)
    moves = Entries(list(texts[split:moves_end]),
                    keys=(ENTRY_KEYS["moves"], list(move_kinds)) if None not in move_kinds else None)
    return facts, moves


def mislabelled(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, int]]:
    """(case id, how many) of (case_id, section, entry, kind) rows, by case, whose kind is not the one their entry's
    text has (the fact's kind, the move's trigger; none, for a text that is not such an entry)."""
    for case_id, group in groupby(rows, key=lambda r: str(r[0])):
        yield case_id, sum(1 for _c, section, entry, kind in group if _key_of(entry, section) != kind)


def _key_of(text: str, section: str) -> str | None:
    try:  # read as a command reads it (``Entries.keys``), or decoded when it must be
        return str(Entries([text]).keys(ENTRY_KEYS[section])[0])
    except (ValueError, KeyError, TypeError, IndexError):
        return None


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
