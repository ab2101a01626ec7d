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
to. When the texts read are those very texts (a long case's read in part, ``Entries.partial``: those read), the
parsed projection is taken from here; a case another process changed, or someone edited by hand where the read
reaches, differs and is parsed, as always.

The parsed objects are shared by the records built from them, which is safe because projections
are never mutated (a fold builds a new one; guards and planners only read). Only the write path
uses this: records handed to callers (``Store.get_case``, the case lists) are parsed afresh.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from kapflow.domain.case import CaseRecord
from kapflow.domain.entries import Entries
from kapflow.store.rows import ID_COLUMN, case_from_values

DEFAULT_CASES = 256
"""How many cases' projections a store keeps: a practice's cases in flight, or more than a burst needs."""

TEXT_BUDGET = 2_300_000
"""What the kept cases may weigh in all (``weight``: characters of entry text read, and ``ENTRY_WEIGHT`` for each
entry). A kept case holds the texts it read and what its commands decoded of them: about 12 bytes per unit of
weight, new and year-old cases alike (measured with tracemalloc after a path of eight fires: a new case of 25
entries and 4.4k characters, 58 kB; a year-old case read in part, 430 entries and 10k characters, 185 kB), so this
bounds the memory at about 28 MB whatever the cases' length: about 150 year-old cases, or every case of
``DEFAULT_CASES`` in its first months. ``tests/integration/test_recent_projections.py`` checks the calibration."""

ENTRY_WEIGHT = 12
"""Characters' worth of memory an entry costs beyond the text read of it: its place in the kind index, its slots,
its share of the views decoded from the store's snapshots (a year of appointments and charge lines), which a case
read in part holds without the texts they fold. Fitted to the two cases measured above (it was 50, which made a
year-old case weigh 1.75 times what it holds against a new one, so fewer stayed kept than the memory allowed)."""

_CHANCES = 4
"""Draws, at most, for a case to leave: one asked for since it was last drawn stays (and loses its mark), until a
draw finds one that was not or the draws run out (the last one drawn leaves: at random, as before)."""

LARGEST_TEXT = 150_000
"""A case that weighs more than this is not kept: one long case must not crowd out the rest (about ten years of
weekly visits, 1.8 MB)."""


def weight(entries: tuple[Entries, Entries]) -> int:
    """What a kept case's facts and moves count for against ``TEXT_BUDGET``."""
    return entries[0].chars + entries[1].chars + ENTRY_WEIGHT * (len(entries[0]) + len(entries[1]))


class _Kept(NamedTuple):
    # The record committed: its parsed facts, and its guards' view once a command built it (the record is shared,
    # so a view built later on it is kept too); whole, for a command that skips reading the row (``latest``).
    # Its entries' texts as written are what a row read must hold to take it from here.
    record: CaseRecord
    entries: tuple[Entries, Entries]  # its facts and moves as stored
    weight: int  # what they count for (``weight``)


class RecentProjections:
    """The parsed projections of the cases committed last, by case id.

    Past its bounds, cases chosen at random leave, never the one just kept. Not the least recently used: commands
    that go round more cases than fit (the worker's pass over every due reminder, a day's sessions in turn) would
    each find their case just gone, so nothing kept would ever serve; leaving at random, some still do (simulated:
    88% of the commands of a round over a tenth more than fit, 13% over twice as many). Measured on the year-old
    cases' benchmark at quick size, 25 of them and 25 new ones in turn, a little more than fit: every fire read
    its case cold, 3.1 times the cost of one on a new case, against 1.4 leaving at random. A burst of commands on
    one case finds it kept either way.

    A case chosen that a command asked for since it was last chosen stays, once (a second chance, ``_CHANCES``
    draws at most): cases nobody asks for any more (yesterday's sessions) leave before those in use. Measured on
    the year-old cases' benchmark at full size, whose every round of 200 cases follows one of 200 other cases
    that are never asked for again: leaving at random, a third of the fires read their case cold in every round
    after the first (528 of 1,600), as the old cases crowded out the new.
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
        self._weight = 0  # of the cases kept
        self._asked: set[str] = set()  # kept cases asked for (or kept) since they were last drawn to leave
        self._lock = threading.Lock()  # one store serves many threads

    def case(self, row: Sequence[Any], entries: tuple[Entries, Entries]) -> CaseRecord:
        """The record of a DBAPI row of the cases table and its entries as read (``rows.read_entries``): their
        projection as kept, parsed, when the texts read are the ones kept."""
        case_id = row[ID_COLUMN]
        with self._lock:
            kept = self._kept.get(case_id)
            if kept is not None and entries[0].same_as(kept.entries[0]) and entries[1].same_as(kept.entries[1]):
                self.hits += 1
                self._asked.add(case_id)
            else:
                kept = None
                self.misses += 1
        if kept is None:
            return case_from_values(row, {"facts": entries[0], "moves": entries[1]})
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
            self._asked.add(case_id)
            return kept.record

    def remember(self, cases: Iterable[CaseRecord]) -> None:
        """Keep the projections of records just committed (call only once their transaction committed)."""
        if not self.capacity:
            return
        for case in cases:
            stored = case.stored_entries()
            weighs = weight(stored) if stored is not None else 0
            if stored is None or weighs > LARGEST_TEXT:
                self.forget(case.id)  # what was kept for it is stale now
                continue
            kept = _Kept(case, stored, weighs)
            with self._lock:
                self._drop(case.id)
                self._kept[case.id] = kept
                self._slot[case.id] = len(self._ids)
                self._ids.append(case.id)
                self._weight += weighs
                self._asked.add(case.id)
                # Alone it is within LARGEST_TEXT, so within the budget: another is there to leave while over.
                while len(self._kept) > self.capacity or self._weight > TEXT_BUDGET:
                    self._drop(self._leaving(case.id))

    def _leaving(self, kept: str) -> str:
        """The case to leave, not ``kept`` (the one just kept; another is there): drawn at random, passing over, once
        each, those asked for since they were last drawn."""
        ids, asked = self._ids, self._asked
        for _ in range(_CHANCES):
            chosen = ids[self._chooser.randrange(len(ids) - 1)]
            chosen = chosen if chosen != kept else ids[-1]  # the last place stands for the one kept, wherever it is
            if chosen not in asked:
                return chosen
            asked.discard(chosen)
        return chosen

    def forget(self, case_id: str) -> None:
        with self._lock:
            self._drop(case_id)

    def _drop(self, case_id: str) -> None:
        gone = self._kept.pop(case_id, None)
        if gone is not None:
            self._weight -= gone.weight
            self._asked.discard(case_id)
            at, last = self._slot.pop(case_id), self._ids.pop()
            if last != case_id:
                self._ids[at], self._slot[last] = last, at

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._kept
