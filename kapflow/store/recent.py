"""The projections of the cases this process committed last, kept parsed for the next command on them.

A command on a case kept here skips reading its row: it starts from the record this store committed
last (``latest``), and its compare-and-swap on the event count proves that copy current at the commit
(or, for a command that does not change the case, a read of the count does); a copy found stale is
forgotten and the command runs again on the row. A command that reads the row and its entries (a case not
kept here) still gets the parsed projection when the entries' texts read are the ones kept. Parsing a
projection and then the guards' view of it (``CaseFacts``: entries grouped by kind, their instants parsed, the
appointments folded) was a seventh of a fire's CPU on SQLite (counted in instructions: 1.41M a fire with
parsing, 1.21M without). Commands come in bursts on the same case (a fee recorded, consent recorded, the
trigger fired), so the store keeps, for the cases it committed last, the entries' texts and what they parse
to. When the texts read are those very texts, compared whole, the parsed projection is taken from here; a case
another process changed, or someone edited by hand, differs and is parsed, as always.

The parsed objects are shared by the records built from them, which is safe because projections
are never mutated (a fold builds a new one; guards and planners only read). Only the write path
uses this: records handed to callers (``Store.get_case``, the case lists) are parsed afresh.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from kapflow.domain.case import CaseRecord, Entries
from kapflow.store.rows import FACTS_COLUMN, ID_COLUMN, case_from_values

DEFAULT_CASES = 256
"""How many cases' projections a store keeps: a practice's cases in flight, or more than a burst needs."""

TEXT_BUDGET = 4_000_000
"""Characters of projection entry text kept in all. A kept case holds its entries' texts and what its commands
decoded of them: about 7 bytes per character once every entry is decoded (measured: 5.4 MB for 256 cases of
3.2k characters; 540 kB for a year-old case of 80k characters after a path of eight fires, which decodes only the
kinds its guards ask for), so this bounds the memory at about 28 MB whatever the cases' length: fifty year-old
cases, or every case of ``DEFAULT_CASES`` in its first months."""

LARGEST_TEXT = 250_000
"""A case whose entries' texts are longer than this is not kept: one long case must not crowd out the rest."""


class _Kept(NamedTuple):
    # The record committed: its parsed facts, and its guards' view once a command built it (the record is shared,
    # so a view built later on it is kept too); whole, for a command that skips reading the row (``latest``).
    # Its entries' texts as written are what a row read must hold to take it from here.
    record: CaseRecord
    entries: tuple[Entries, Entries]  # its facts and moves as stored
    chars: int  # their texts' length in all


class RecentProjections:
    """The parsed projections of the cases committed last, by case id.

    Past its bounds, cases chosen at random leave, never the one just kept. Not the least recently used: commands
    that go round more cases than fit (the worker's pass over every due reminder, a day's sessions in turn) would
    each find their case just gone, so nothing kept would ever serve; leaving at random, some still do (simulated:
    88% of the commands of a round over a tenth more than fit, 13% over twice as many). Measured on the year-old
    cases' benchmark at quick size, 25 of them and 25 new ones in turn, a little more than fit: every fire read
    its case cold, 3.1 times the cost of one on a new case, against 1.4 leaving at random. A burst of commands on
    one case finds it kept either way.
    """

    def __init__(self, capacity: int = DEFAULT_CASES, *, chooser: random.Random | None = None) -> None:
        if capacity < 0:
            raise ValueError("capacity must be 0 (keep nothing) or more")
        self.capacity = capacity
        self.hits = 0  # rows whose projection was taken from here (for benchmarks and diagnostics)
        self.misses = 0
        self._kept: dict[str, _Kept] = {}
        # The kept ids in no order, and each one's place there: the one chosen to leave is found, and its place
        # taken by the last, at once (a list of every id per choice cost a tenth of a millisecond at capacity).
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}
        self._chooser = chooser or random.Random()  # noqa: S311 (which case leaves a cache: no secret)
        self._chars = 0  # of the texts kept
        self._lock = threading.Lock()  # one store serves many threads

    def case(self, row: Sequence[Any]) -> CaseRecord:
        """The record of a DBAPI row of the cases table, its projection parsed only if not kept."""
        case_id, texts = row[ID_COLUMN], row[FACTS_COLUMN]
        with self._lock:
            kept = self._kept.get(case_id)
            if kept is not None and _same_texts(texts, kept.entries):
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
            self.hits += 1
            return kept.record

    def remember(self, cases: Iterable[CaseRecord]) -> None:
        """Keep the projections of records just committed (call only once their transaction committed)."""
        if not self.capacity:
            return
        for case in cases:
            stored = case.stored_entries()
            chars = stored[0].chars + stored[1].chars if stored is not None else 0
            if stored is None or chars > LARGEST_TEXT:
                self.forget(case.id)  # what was kept for it is stale now
                continue
            kept = _Kept(case, stored, chars)
            with self._lock:
                self._drop(case.id)
                self._kept[case.id] = kept
                self._slot[case.id] = len(self._ids)
                self._ids.append(case.id)
                self._chars += chars
                # Alone it is within LARGEST_TEXT, so within the budget: another is there to leave while over.
                while len(self._kept) > self.capacity or self._chars > TEXT_BUDGET:
                    chosen = self._ids[self._chooser.randrange(len(self._ids) - 1)]
                    self._drop(chosen if chosen != case.id else self._ids[-1])

    def forget(self, case_id: str) -> None:
        with self._lock:
            self._drop(case_id)

    def _drop(self, case_id: str) -> None:
        gone = self._kept.pop(case_id, None)
        if gone is not None:
            self._chars -= gone.chars
            at, last = self._slot.pop(case_id), self._ids.pop()
            if last != case_id:
                self._ids[at], self._slot[last] = last, at

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._kept


def _same_texts(read: Sequence[str], kept: tuple[Entries, Entries]) -> bool:
    """Whether the entry texts a row read (facts, then moves) are those kept, compared whole."""
    facts, moves = kept
    split = len(facts)
    return len(read) == split + len(moves) and read[:split] == facts.texts and read[split:] == moves.texts
