"""The projections of the cases this process committed last, kept parsed for the next command on them.

A command on a case kept here skips reading its row: it starts from the record this store committed
last (``latest``), and its compare-and-swap on the event count proves that copy current at the commit
(or, for a command that does not change the case, a read of the count does); a copy found stale is
forgotten and the command runs again on the row. A command that reads the row and its entries (a case not
kept here) still gets the parsed projection when the text they join to is the one kept. Parsing a
projection (a few kilobytes of JSON) and then the guards' view of it (``CaseFacts``: entries grouped by kind, their
instants parsed, the appointments folded) was a seventh of a fire's CPU on SQLite (counted in
instructions: 1.41M a fire with parsing, 1.21M without). Commands come in bursts on the same case
(a fee recorded, consent recorded, the trigger fired), so the store keeps, for the cases it
committed last, the projection's text and what that text parses to. When the text read is that very
text, compared whole, the parsed projection is taken from here; a case another process changed, or
someone edited by hand, differs and is parsed, as always.

The parsed objects are shared by the records built from them, which is safe because projections
are never mutated (a fold builds a new one; guards and planners only read). Only the write path
uses this: records handed to callers (``Store.get_case``, the case lists) are parsed afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from kapflow.domain.case import CaseRecord
from kapflow.store.rows import FACTS_COLUMN, ID_COLUMN, case_from_values

DEFAULT_CASES = 256
"""How many cases' projections a store keeps: a practice's cases in flight, or more than a burst needs."""

TEXT_BUDGET = 2_000_000
"""Characters of projection text kept in all. Parsed, a projection takes about 7 bytes per character of
its text (measured: 5.4 MB for 256 cases of 3.2k characters), so this bounds the memory at about 14 MB
whatever the cases' length."""

LARGEST_TEXT = TEXT_BUDGET // 8
"""A projection text longer than this is not kept: one long case must not crowd out the rest."""


class _Kept(NamedTuple):
    text: str  # the projection's text as written, which a row read must hold to take the parsed one from here
    # The record committed: its parsed facts, and its guards' view once a command built it (the record is shared,
    # so a view built later on it is kept too); whole, for a command that skips reading the row (``latest``).
    record: CaseRecord


class RecentProjections:
    """The parsed projections of the cases committed last, by case id; least recently used leave first."""

    def __init__(self, capacity: int = DEFAULT_CASES) -> None:
        if capacity < 0:
            raise ValueError("capacity must be 0 (keep nothing) or more")
        self.capacity = capacity
        self.hits = 0  # rows whose projection was taken from here (for benchmarks and diagnostics)
        self.misses = 0
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._chars = 0  # of the texts kept
        self._lock = threading.Lock()  # one store serves many threads

    def case(self, row: Sequence[Any]) -> CaseRecord:
        """The record of a DBAPI row of the cases table, its projection parsed only if not kept."""
        case_id, text = row[ID_COLUMN], row[FACTS_COLUMN]
        with self._lock:
            kept = self._kept.get(case_id)
            if kept is not None and kept.text == text:
                self._kept.move_to_end(case_id)
                self.hits += 1
            else:
                kept = None
                self.misses += 1
        if kept is None:
            return case_from_values(row)
        case = case_from_values(row, kept.record.facts)
        projection = kept.record.parsed_projection()
        if projection is not None:
            case.adopt_projection(projection)
        return case

    def latest(self, case_id: str) -> CaseRecord | None:
        """The record of the case as this store committed it last, if kept: a copy the row may have left
        behind since (another process's command), which a command uses only if its compare-and-swap, or a
        read of the row's event count, proves it current before the commit (``SqlUnitOfWork``)."""
        with self._lock:
            kept = self._kept.get(case_id)
            if kept is None:
                return None
            self._kept.move_to_end(case_id)
            self.hits += 1
            return kept.record

    def remember(self, cases: Iterable[CaseRecord]) -> None:
        """Keep the projections of records just committed (call only once their transaction committed)."""
        if not self.capacity:
            return
        for case in cases:
            text = case.known_facts_text()
            if text is None or len(text) > LARGEST_TEXT:
                self.forget(case.id)  # what was kept for it is stale now
                continue
            kept = _Kept(text, case)
            with self._lock:
                self._drop(case.id)
                self._kept[case.id] = kept
                self._chars += len(text)
                while len(self._kept) > self.capacity or self._chars > TEXT_BUDGET:
                    self._drop(next(iter(self._kept)))  # the least recently used

    def forget(self, case_id: str) -> None:
        with self._lock:
            self._drop(case_id)

    def _drop(self, case_id: str) -> None:
        gone = self._kept.pop(case_id, None)
        if gone is not None:
            self._chars -= len(gone.text)

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._kept
