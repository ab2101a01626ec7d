"""A case as the engine sees it: its stored record, its facts, and what commands return.

``CaseFacts`` is the case's projection: every fact recorded and every move
made, folded in order from the audit history. Guards read it and nothing
else, so a guard's verdict depends only on the projection and the clock.
"""

from __future__ import annotations

import json
import re
import sys
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, NamedTuple, TypeVar, cast, overload

from kapflow.domain.events import EventKind
from kapflow.domain.payload import JSONObject, canonical_json


def to_iso(moment: datetime) -> str:
    """The one text form of an instant: UTC, microseconds always present (sortable, hashable)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # What isoformat(timespec="microseconds") prints for a UTC instant, at half its cost (every
    # command formats its instant a few times); printf-style, as format specs in an f-string cost more.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (  # noqa: UP031
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond,
    )


T = TypeVar("T")

PREVIOUS_STATE = "<previous>"
"""A transition destination meaning: the state the case was in before the current one."""


@dataclass(frozen=True)
class Actor:
    """Who acts: an id the practice knows them by, and the role they act in.

    ``os_user`` is the operating-system account that ran the command, when an entry point
    can only take the id and role on the caller's word (the CLI): recorded beside them.
    ``via`` names the service (an API key's name) that acts for this person, when one does: the
    audit event records it in its data (``kapflow.app.events``), so both are named.
    """

    id: str
    role: str
    os_user: str | None = None
    via: str | None = None


class FactEntry(NamedTuple):
    """One recorded fact inside the projection (a named tuple: guards build many, cheaply)."""

    kind: str
    at: datetime
    by: str
    data: Mapping[str, Any]


class Move(NamedTuple):
    """One transition the case made."""

    trigger: str
    source: str
    dest: str
    at: datetime


SNAPSHOT_EVERY = 16
"""Facts of a kept view's kinds recorded since its snapshot (or, without one, in all) before a command writes it
again: a case read cold then steps the snapshot by fewer than this many facts, and a command writes one once in
this many commands that change the view (a year of weekly visits: six snapshots of its appointments)."""


class EntryIndex(NamedTuple):
    """Where the entries of each value of their key ``key`` are among a list's first ``size`` entries, and when
    the last of each was recorded (``to_iso``'s form): what the store keeps of a long case's earlier facts, so a
    command reads their texts only when a query reaches them (``Entries.partial``)."""

    key: str
    size: int
    positions: Mapping[str, list[int]]
    latest: Mapping[str, str]
    ordered: frozenset[str] = frozenset()  # the values whose entries were recorded in the order of their places

    def body(self) -> str:
        """The canonical JSON the store keeps (``ENTRY_INDEX``; ``size`` is the snapshot's fact count)."""
        # "last": the place of each value's last entry, for the store's read to take with the entries past the index
        # (a guard asks for the latest of a kind more than for any other).
        return canonical_json({"latest": dict(self.latest), "positions": dict(self.positions),
                               "ordered": sorted(self.ordered), "last": sorted(p[-1] for p in self.positions.values())})

    @classmethod
    def decode(cls, key: str, size: int, body: str) -> EntryIndex:
        """The index of ``size`` entries ``body`` holds; ``ValueError`` when it is not one (a hand's edit: the
        entries are then read whole). Positions are checked only for their number and range: a command reads this
        on every cold read of a long case, and ``kapflow audit verify`` compares it with the entries whole."""
        found = json.loads(body)
        positions, latest, ordered = found["positions"], found["latest"], found["ordered"]
        if not isinstance(positions, dict) or not isinstance(latest, dict) or positions.keys() != latest.keys():
            raise ValueError("an entry index maps each key to its positions and its latest instant")
        if not isinstance(ordered, list) or not set(ordered) <= positions.keys():
            raise ValueError("an entry index's ordered values are among those it places")
        for places in positions.values():  # their ends only: each one's type and range is verification's to check
            if not isinstance(places, list) or not places or type(places[0]) is not int or type(places[-1]) is not int:
                raise ValueError("an entry index's positions are lists of integers")
            if places[0] < 0 or places[-1] >= size:
                raise ValueError("an entry index's positions lie among the entries it covers")
        if sum(map(len, positions.values())) != size or not all(isinstance(at, str) for at in latest.values()):
            raise ValueError("an entry index places every entry it covers once")
        return cls(key, size, {_intern(k): v for k, v in positions.items()}, latest, frozenset(ordered))


ENTRY_INDEX = "entries/1"
"""The name of the index of a case's facts by kind among the store's kept views (``EntryIndex``)."""

INDEX_LAG = 2 * SNAPSHOT_EVERY
"""Facts the store's index leaves out, the last ones: a command reads those whole, so a session's facts (its vitals,
fasting, escort) answer a guard's window and a view's snapshot, written with the index, steps by facts read."""

INDEX_FROM = INDEX_LAG + SNAPSHOT_EVERY
"""Facts a case has before the store keeps an index of them: a shorter case is read whole at no cost worth saving."""

_BACK = 4  # entries read at a time, back from the last an index covers, by ``Entries.recorded_since``

EntryLoader = Callable[[Sequence[int]], Sequence[str]]
"""Reads the texts of a list's entries at the positions given, in that order (the store's, for a partial read)."""


class Entries(Sequence[Mapping[str, Any]]):
    """One list of a projection (its facts or its moves) as the store holds it: each entry's canonical JSON
    text, decoded when first read.

    A case read cold hands its entries over undecoded, so a command decodes what its guards and planners ask
    for: a year-old case decodes its appointments and payments, not a year of vitals (``CaseFacts`` finds each
    entry's kind or trigger without decoding it, ``keys``). A long case's facts are read in part (``partial``):
    the texts after the store's index of them, the earlier ones read through the store's loader when a query
    reaches them. A fold adds an entry with its text (``plus``), which is the text the store writes (``text``).
    Immutable, like the projection's plain lists: ``plus`` makes a new one, sharing what was decoded so far.
    """

    __slots__ = ("_chars", "_decoded", "_index", "_keys", "_loader", "_start", "_texts")

    def __init__(self, texts: Sequence[str], decoded: list[Mapping[str, Any] | None] | None = None, *,
                 keys: tuple[str, list[Any]] | None = None, loader: EntryLoader | None = None) -> None:
        """``keys``: a key's name and each entry's value of it, as the store read them beside the texts (its
        ``kind`` column: ``audit verify`` checks them against the texts), so ``keys`` need not read the texts.
        ``loader``: where the texts not read come from (a list made by ``partial``, and those folded from it)."""
        # A list is taken as it is, not copied: these are never changed, and a fold makes a new one per command.
        self._texts: list[str | None] = texts if isinstance(texts, list) else list(texts)
        self._decoded: list[Mapping[str, Any] | None] = [None] * len(self._texts) if decoded is None else decoded
        self._keys = keys  # the key ``keys`` read last, and each entry's value of it (None: not known here)
        if keys is not None and len(keys[1]) != len(self._texts):
            raise ValueError("an entry's key for each entry, or none")
        self._chars: int | None = None  # the texts' length in all, once asked for
        self._loader = loader
        self._start = 0  # the first entry whose text was read: those before are read when asked for
        self._index: EntryIndex | None = None  # the store's index of these entries (the first ``size`` of them)

    @classmethod
    def of(cls, entries: Iterable[Mapping[str, Any]]) -> Entries:
        """Entries holding ``entries`` (decoded already) and their canonical texts."""
        decoded: list[Mapping[str, Any] | None] = list(entries)
        return cls([canonical_json(e) for e in decoded], decoded)

    @classmethod
    def partial(cls, index: EntryIndex, texts: Sequence[str], keys: Sequence[Any] | None, loader: EntryLoader,
                early: Mapping[int, str] | None = None) -> Entries:
        """The entries the store's ``index`` covers, not read but for ``early`` (texts by place), then ``texts``
        (with their values of the index's key, when the store read them): what a command reads of a long case,
        whatever its length."""
        start = index.size
        values: list[Any] | None = None if keys is None else [None] * start + list(keys)
        covered: list[str | None] = [None] * start
        for n, text in (early or {}).items():
            if 0 <= n < start:
                covered[n] = text
        made = cls(cast(list[str], covered + list(texts)), loader=loader)
        made._start, made._index = start, index
        if values is not None:
            made._keys = (index.key, values)  # the earlier ones' values are the index's: filled in when asked
        return made

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[Mapping[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | list[Mapping[str, Any]]:
        if isinstance(index, slice):
            return self.at(range(*index.indices(len(self._texts))))
        found = self._decoded[index]
        if found is None:  # two threads decoding one entry at once each store an equal value: harmless
            found = self._decoded[index] = _decoded(self.text(index))
        return found

    def at(self, positions: Iterable[int]) -> list[Mapping[str, Any]]:
        """The entries at ``positions``, decoded (a kind's entries, as ``CaseFacts`` asks for them)."""
        if self._start:
            positions = self.read(positions)
        decoded, texts = self._decoded, self._texts
        found: list[Mapping[str, Any]] = []
        for n in positions:
            entry = decoded[n]
            if entry is None:
                entry = decoded[n] = _decoded(texts[n])  # type: ignore[arg-type]  # read above
            found.append(entry)
        return found

    def read(self, positions: Iterable[int]) -> Sequence[int]:
        """``positions``, with the texts there read from the store if they were not (all in one read)."""
        wanted = positions if isinstance(positions, (list, range, tuple)) else list(positions)
        if not self._start:
            return wanted
        texts = self._texts
        missing = [n for n in wanted if texts[n] is None]
        if missing:
            if self._loader is None:
                raise LookupError("entries read in part, with no loader for the rest")
            found = self._loader(missing)
            if len(found) != len(missing):
                raise LookupError(f"{len(missing) - len(found)} of a case's projection entries are missing "
                                  "from the store")
            for n, text in zip(missing, found, strict=True):
                texts[n] = text
        return wanted

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.at(range(len(self._texts))))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Entries):
            return self.texts == other.texts or list(self) == list(other)
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == len(self._texts) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # compared by value, like the list it stands for

    def __repr__(self) -> str:
        return f"Entries({list(self)!r})"

    @property
    def texts(self) -> list[str]:
        """Each entry's canonical JSON text, in order (not to be changed): every one read."""
        self.read(range(self._start))
        return self._texts  # type: ignore[return-value]  # every one read above

    def text(self, index: int) -> str:
        found = self._texts[index]
        if found is None:
            self.read((index,))
            found = self._texts[index]
        return found  # type: ignore[return-value]  # read above

    def stored_at(self, index: int) -> bool:
        """Whether entry ``index`` is one the store's index covered when these were read in part: the store's own
        (its text read from there, if at all), not one a fold added."""
        return 0 <= index < self._start

    def same_as(self, kept: Entries) -> bool:
        """Whether ``kept`` holds these entries: as many, and the texts read here are its texts there."""
        start = self._start
        return len(kept._texts) == len(self._texts) and self._texts[start:] == kept._texts[start:]

    def plus(self, entry: Mapping[str, Any]) -> Entries:
        """These entries and ``entry`` after them: a new object (this one is unchanged)."""
        text = canonical_json(entry)
        after = Entries(cast(list[str], [*self._texts, text]), [*self._decoded, entry], loader=self._loader)
        after._start, after._index = self._start, self._index
        if self._keys is not None:
            name, values = self._keys
            after._keys = (name, [*values, entry[name]])
        if self._chars is not None:
            after._chars = self._chars + len(text)
        return after

    @property
    def chars(self) -> int:
        """The length of the texts read (what the store's kept records are bounded by): counted once, then kept
        up by each fold."""
        if self._chars is None:
            texts = self._texts
            self._chars = sum(map(len, cast(list[str], texts))) if not self._start else sum(
                len(t) for t in texts if t is not None)
        return self._chars

    def recorded_at(self, index: int) -> str | None:
        """When entry ``index`` was recorded, as ``to_iso`` writes it, read from the start of its text without
        decoding it (canonical JSON puts an entry's ``at`` first); None when its text holds it in another form."""
        found = _RECORDED_AT.match(self.text(index))
        return found[1] if found is not None else None

    def recorded_since(self, value: str, places: Sequence[int], after: str) -> list[int]:
        """Those of ``places`` (the entries of key ``value``, ascending) whose entry was recorded at ``after``
        (``to_iso``'s form) or later, reading as few texts as the store's index allows: none of those it covers
        when the latest of them is earlier; when they were recorded in order, only back to the first earlier one."""
        index = self._index
        split = bisect_left(places, index.size) if index is not None else 0
        found = [n for n in self.read(places[split:]) if self._recorded_since(n, after)]
        if not split or index is None or index.latest.get(value, "") < after:
            return found
        if value not in index.ordered:
            return [n for n in self.read(places[:split]) if self._recorded_since(n, after)] + found
        earlier: list[int] = []
        end = split
        while end:  # in order: back from the last covered, a few at a time, to the first recorded before
            chunk = places[max(0, end - _BACK):end]
            kept = [n for n in self.read(chunk) if self._recorded_since(n, after)]
            earlier[:0] = kept
            if len(kept) < len(chunk):
                break
            end -= len(chunk)
        return earlier + found

    def _recorded_since(self, n: int, after: str) -> bool:
        at = self.recorded_at(n)
        return (at if at is not None else to_iso(_parse_instant(self[n]["at"]))) >= after

    def keys(self, name: str) -> list[Any]:
        """Each entry's value of its key ``name``, read without decoding the entry where its text allows."""
        found = self._keys
        # Read in part, the store gave the values of the entries read only (``partial``: None before them).
        if found is None or found[0] != name or (self._index is not None and found[1][:1] == [None]):
            index = self._index_of(name)
            values = self._tail_keys(name, 0) if index is None else self._indexed_keys(index)
            self._keys = found = (name, values)
        return found[1]

    def positions(self, name: str) -> dict[str, list[int]]:
        """Where the entries of each value of their key ``name`` are, in order: from the store's index and the
        entries after it, when it has one of that key (nothing earlier read)."""
        index = self._index_of(name)
        if index is None:
            return _positions_of(self.keys(name), 0)
        found = dict(index.positions)  # the lists are shared: never changed, like these entries
        for value, places in _positions_of(self._tail_keys(name, index.size), index.size).items():
            before = found.get(value)
            found[value] = [*before, *places] if before else places
        return found

    def index_by(self, name: str, size: int | None = None) -> EntryIndex:
        """The index of the first ``size`` of these entries (all by default) by their key ``name``
        (``EntryIndex``), from the one they were read with."""
        size = len(self._texts) if size is None else size
        before = self._index_of(name)
        start = before.size if before is not None else 0
        if not start <= size <= len(self._texts):
            raise ValueError("an index covers the entries its last one covered, and no more than there are")
        positions: dict[str, list[int]] = {}
        for value, places in self.positions(name).items():
            covered = places[:bisect_left(places, size)]
            if covered:
                positions[value] = covered
        latest = dict(before.latest) if before is not None else {}
        ordered = set(before.ordered) if before is not None else set()
        for value, places in positions.items():
            in_order = value in ordered or value not in latest  # none covered before, or those in order
            for n in places[bisect_left(places, start):]:
                at = self.recorded_at(n) or to_iso(_parse_instant(self[n]["at"]))
                in_order = in_order and at >= latest.get(value, "")
                latest[value] = max(at, latest.get(value, ""))
            if in_order:
                ordered.add(value)
            else:
                ordered.discard(value)
        return EntryIndex(name, size, positions, latest, frozenset(ordered))

    def next_index(self, name: str) -> EntryIndex:
        """The index the store keeps of these entries by ``name`` now (``index_due``): of all but the last
        ``INDEX_LAG``."""
        return self.index_by(name, len(self._texts) - INDEX_LAG)

    def indexed(self, index: EntryIndex) -> None:
        """Take ``index`` as the store's index of these entries (just written with them)."""
        if index.size > len(self._texts):
            raise ValueError("an index of more entries than these")
        self._index = index

    def index_due(self, name: str) -> bool:
        """Whether the store should keep an index of these entries by ``name`` now (``next_index``): a long case's,
        with ``SNAPSHOT_EVERY`` entries or more between the index it has and the last ``INDEX_LAG``."""
        count = len(self._texts)
        index = self._index_of(name)
        return count >= INDEX_FROM and count - INDEX_LAG - (index.size if index is not None else 0) >= SNAPSHOT_EVERY

    def _index_of(self, name: str) -> EntryIndex | None:
        index = self._index
        return index if index is not None and index.key == name else None

    def _indexed_keys(self, index: EntryIndex) -> list[Any]:
        values: list[Any] = [None] * index.size
        for value, places in index.positions.items():
            for n in places:
                values[n] = value
        return values + self._tail_keys(index.key, index.size)

    def _tail_keys(self, name: str, start: int) -> list[Any]:
        """Each value of ``name`` from entry ``start`` on: as the store read them, or from the texts."""
        found = self._keys
        if found is not None and found[0] == name:
            return found[1][start:] if start else found[1]
        return self._read_keys(name, start)

    def _read_keys(self, name: str, start: int) -> list[Any]:
        """Each value of ``name`` from entry ``start`` on, read from the end of its text when ``name`` is its last
        key and holds a string without escapes, as in every entry the engine writes (canonical JSON sorts the keys:
        a fact's ``kind`` and a move's ``trigger`` come last); any other entry is decoded to be read.

        Safe: inside a JSON string every quote is escaped, so an unescaped ``,"name":"`` is a key of an object, and
        a text ending right after its string value ends that object, which is then the outermost one. One loop
        with everything local: a year-old case read whole reads 419 of these on its first command.
        """
        marker = f',"{name}":"'
        skip, intern, decoded, texts = len(marker), _intern, self._decoded, self._texts
        self.read(range(start, len(texts)))
        values: list[Any] = []
        for n in range(start, len(texts)):
            entry = decoded[n]
            if entry is None:
                text: str = texts[n]  # type: ignore[assignment]  # read above
                at = text.rfind(marker)
                if at >= 0 and text[-2:] == '"}':
                    value = text[at + skip:-2]
                    if '"' not in value and "\\" not in value:
                        values.append(intern(value))
                        continue
                entry = self[n]
            values.append(entry[name])
        return values


def _positions_of(keys: Sequence[Any], start: int) -> dict[str, list[int]]:
    """Where each value of ``keys`` is, in order (``keys[0]`` at position ``start``)."""
    positions: dict[str, list[int]] = {value: [] for value in dict.fromkeys(keys)}  # in order of first place
    for n, value in enumerate(keys, start):
        positions[value].append(n)
    return positions


# The start of an entry's text as the engine writes it: ``at`` first (keys sorted), in ``to_iso``'s fixed form,
# where text order is time order.
_RECORDED_AT = re.compile(r'\{"at":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00)"', re.ASCII)  # 0-9 only
_intern = sys.intern  # a kind's name is one object however many entries name it (a long case has hundreds)


# The C scanner json.loads runs, without the Python around it (set in the decoder's constructor, untyped).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decoded(text: str) -> Any:
    """``json.loads(text)``, at two thirds of its cost for an entry's text (a long case decodes hundreds)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):  # spaces around it, or not JSON: json.loads decides (and names the error)
        value = json.loads(text)
    return value


class Snapshot(NamedTuple):
    """A derived view as the store keeps it: its value after the case's first ``fact_count`` facts, as the
    canonical JSON of what its ``StoredView`` encodes (``body``)."""

    fact_count: int
    body: str


@dataclass(frozen=True)
class StoredView(Generic[T]):
    """How the store keeps a derived view (``CaseFacts.derived``) for a case read cold: a snapshot of it every
    ``SNAPSHOT_EVERY`` facts of its kinds, which a cold read decodes and steps by the facts since, instead of
    folding a year of them.

    ``name`` says which function of the facts the view is, with what configuration (the fact kinds it reads, the
    fee schedule's purposes): a view of the same name from any process or version of the code is the same value
    of the same facts, so a change to a fold changes its name (its snapshots are then not read, and written anew).
    ``encode`` gives the view as JSON values; ``decode`` the view back from them (raising ``ValueError``,
    ``TypeError``, ``KeyError`` or ``IndexError`` on anything else: the view is then folded, and ``kapflow audit
    verify`` names the snapshot)."""

    name: str
    encode: Callable[[T], Any]
    decode: Callable[[Any], T]


_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, ArithmeticError, AttributeError)


class CaseFacts:
    """Read-only queries over a case's facts and moves, for guards.

    The first query groups the raw entries by kind (facts) and by trigger
    (moves) in one pass, without decoding them when the store handed them over
    as their texts (``Entries``); entries are parsed only for the kinds a guard asks
    about, once each, and the whole list or several kinds together (``of_kinds``)
    take the entries parsed already. A command's guards ask about a dozen kinds at
    most, and parsing every timestamp of a long case on every command, or scanning
    the whole list once per kind, would cost more than the guards themselves: a
    year-old case read cold parses its appointments and payments, not its vitals.
    Derived views (the appointments, a guard's helper) are kept with ``derived``.
    """

    __slots__ = (
        "__weakref__",
        "_base",
        "_by_kind",
        "_by_trigger",
        "_derived",
        "_facts",
        "_move_positions",
        "_moves",
        "_pending",
        "_positions",
        "_raw",
        "_reads",
        "_snapshot_at",
        "_snapshots",
        "_steps",
        "_stored",
    )

    def __init__(self, raw: Mapping[str, Any] | None = None, snapshots: Mapping[str, Snapshot] | None = None) -> None:
        self._raw: Mapping[str, Any] = raw or {"facts": [], "moves": []}
        self._facts: list[FactEntry] | None = None
        self._moves: list[Move] | None = None
        # Where each kind's facts are in the recorded order, grouped without parsing; a kind's parsed facts in
        # ``_by_kind`` are in the same order, so every entry is parsed once, and only if its kind is asked for.
        self._positions: dict[str, list[int]] | None = None
        self._move_positions: dict[str, list[int]] | None = None  # where each trigger's moves are, likewise
        self._by_kind: dict[str, list[FactEntry]] = {}
        self._by_trigger: dict[str, list[Move]] = {}
        self._derived: dict[object, Any] = {}
        self._reads: dict[object, frozenset[str]] = {}  # the fact kinds a derived view depends on, when it said
        self._steps: dict[object, Callable[[Any, FactEntry], Any]] = {}  # how a view takes one more fact, when it said
        # Views not brought up to date yet: the view of an earlier projection and the facts to step it by since.
        self._pending: dict[object, tuple[Any, tuple[FactEntry, ...]]] = {}
        # The projection this one extends by one entry (``extended``), while something else keeps it: what it works
        # out after the extension (the command's plan before it, folded after the one after) this one takes too.
        self._base: tuple[weakref.ref[CaseFacts], str] | None = None
        # The store's snapshots of kept views as the case was read (``StoredView``), by name; the views kept here
        # that the store keeps, by key; and how many facts each one's latest snapshot in the store covers.
        self._snapshots: Mapping[str, Snapshot] = snapshots or {}
        self._stored: dict[object, StoredView[Any]] = {}
        self._snapshot_at: dict[str, int] = {}

    @property
    def raw(self) -> Mapping[str, Any]:
        return self._raw

    def facts(self) -> list[FactEntry]:
        if self._facts is None:
            base, section = self._extending()
            if base is not None and base._facts is not None:
                self._facts = [*base._facts, _fact(self._raw["facts"][-1])] if section == "facts" else base._facts
            else:
                self._facts = self._all_facts()
        return self._facts

    def _all_facts(self) -> list[FactEntry]:
        """Every fact parsed, in order, taking those of the kinds parsed already."""
        raw = self._raw.get("facts", ())
        if not self._by_kind:
            return [_fact(f) for f in raw]
        found: list[FactEntry | None] = [None] * len(raw)
        positions = self._kind_positions()
        for kind, parsed in self._by_kind.items():
            for at, fact in zip(positions.get(kind, ()), parsed, strict=True):
                found[at] = fact
        return [_fact(raw[n]) if fact is None else fact for n, fact in enumerate(found)]

    def _kind_positions(self) -> dict[str, list[int]]:
        if self._positions is None:
            self._positions = _positions(self._raw.get("facts", ()), "kind")
        return self._positions

    def moves(self) -> list[Move]:
        if self._moves is None:
            base, section = self._extending()
            if base is not None and base._moves is not None:
                self._moves = [*base._moves, _move(self._raw["moves"][-1])] if section == "moves" else base._moves
            else:
                self._moves = [_move(m) for m in self._raw.get("moves", ())]
        return self._moves

    def _extending(self) -> tuple[CaseFacts | None, str]:
        """The projection this one extends by an entry at the end of the section named, if it is still there."""
        if self._base is None:
            return None, ""
        return self._base[0](), self._base[1]

    def move_count(self) -> int:
        """How many moves the case has made (without parsing them)."""
        return len(self._raw.get("moves", ()))

    def of_kind(self, kind: str) -> list[FactEntry]:
        found = self._by_kind.get(kind)
        if found is None:
            if self._facts is not None:  # parsed whole already: taken from there, not parsed again
                found = [f for f in self._facts if f.kind == kind]
            else:
                raw = self._raw.get("facts", ())
                found = [_fact(e) for e in _entries_at(raw, self._kind_positions().get(kind, ()))]
            self._by_kind[kind] = found
        return found

    def count(self, kind: str) -> int:
        """How many facts of ``kind`` there are (none parsed)."""
        return len(self._kind_positions().get(kind, ()))

    def of_kinds(self, kinds: tuple[str, ...]) -> list[FactEntry]:
        """Facts of any of ``kinds``, in the order they were recorded (only those kinds parsed)."""
        if self._facts is not None:
            return [f for f in self._facts if f.kind in kinds]
        if len(kinds) == 1:
            return list(self.of_kind(kinds[0]))
        positions = self._kind_positions()
        placed = [pair for kind in kinds for pair in zip(positions.get(kind, ()), self.of_kind(kind), strict=True)]
        placed.sort(key=_position)
        return [fact for _n, fact in placed]

    def latest(self, kind: str) -> FactEntry | None:
        found = self._by_kind.get(kind)  # the parsed kind when a guard already asked (most often)
        if found is None:
            if self._facts is not None:
                found = self.of_kind(kind)
            else:  # only the last is parsed: a long case's earlier ones are not read
                at = self._kind_positions().get(kind)
                return _fact(self._raw["facts"][at[-1]]) if at else None
        return found[-1] if found else None

    def where(self, kind: str, name: str, value: str) -> list[FactEntry]:
        """Facts of ``kind`` whose data has ``value`` under ``name``, in the order recorded (the evaluation fee's
        payments among a year of them).

        From the store's texts, an entry is parsed only if its text holds ``value`` or an escape: a text with
        no backslash holds every string it decodes to as it is, so one without ``value`` cannot have it.
        """
        found = self._kind_if_parsed(kind)
        if found is None:
            raw: Entries = self._raw["facts"]
            places = raw.read(self._kind_positions().get(kind, ()))
            found = self._parsed_at([n for n in places if value in raw.text(n) or "\\" in raw.text(n)])
        return [f for f in found if f.data.get(name) == value]

    def since(self, kind: str, instant: datetime) -> list[FactEntry]:
        """Facts of ``kind`` recorded at ``instant`` or later, in the order recorded.

        A guard that looks back a window (the vitals of this session) asks this rather than for the whole
        kind: from the store's texts, only the entries recorded in the window are parsed (``Entries.recorded_at``:
        in the same fixed form, in UTC, text order is time order; an entry written in another form is parsed to
        be compared).
        """
        found = self._kind_if_parsed(kind)
        if found is None:
            raw: Entries = self._raw["facts"]
            found = self._parsed_at(raw.recorded_since(kind, self._kind_positions().get(kind, ()), to_iso(instant)))
        return [f for f in found if f.at >= instant]

    def _kind_if_parsed(self, kind: str) -> list[FactEntry] | None:
        """The facts of ``kind`` when parsing them costs nothing more than reading a part (parsed already, or not
        held as the store's texts); None when a query had better pick from the texts first."""
        if kind in self._by_kind or self._facts is not None or not isinstance(self._raw.get("facts"), Entries):
            return self.of_kind(kind)
        return None

    def _parsed_at(self, positions: list[int]) -> list[FactEntry]:
        return [_fact(e) for e in self._raw["facts"].at(positions)]

    def moves_by(self, trigger: str) -> list[Move]:
        found = self._by_trigger.get(trigger)
        if found is None:
            if self._move_positions is None:
                self._move_positions = _positions(self._raw.get("moves", ()), "trigger")
            raw = self._raw["moves"]
            found = self._by_trigger[trigger] = [_move(raw[n]) for n in self._move_positions.get(trigger, ())]
        return found

    def last_move(self, trigger: str | None = None) -> Move | None:
        if trigger is not None:
            found = self._by_trigger.get(trigger)
            if found is None:
                found = self.moves_by(trigger)
            return found[-1] if found else None
        moves = self._raw.get("moves", ())
        return _move(moves[-1]) if moves else None

    def derived(
        self, key: object, compute: Callable[[CaseFacts], T], *, reads: frozenset[str] | None = None,
        step: Callable[[T, FactEntry], T] | None = None, stored: Callable[[], StoredView[T]] | None = None,
    ) -> T:
        """``compute(self)``, once per projection: a view several guards (or the planner) share.

        ``key`` names the view (usually ``compute`` itself); the view must depend on this projection
        only (its facts and moves), never on the clock or a command's data. ``reads``: the fact kinds
        it depends on, when only those (no moves): the projection one more entry makes (``extended``)
        keeps it unless that entry is a fact of one of them, so a long case does not fold it again.
        ``step`` (with ``reads``): the view after one more fact of those kinds, from the view before,
        which it must leave unchanged (the projection before shares it); the next projection then steps
        the view by its new fact instead of folding the whole case again.
        ``stored`` (with ``step``): how the store keeps the view (built only when this projection first works
        the view out): a case read cold with a snapshot of it steps the snapshot by the facts recorded since,
        and a command writes the snapshots this projection has come due for (``snapshots_due``).
        """
        try:
            return cast(T, self._derived[key])
        except KeyError:
            pass
        if stored is not None and key not in self._stored:
            self._stored[key] = stored()
        waiting = self._pending.pop(key, None)
        if waiting is not None:  # a view of an earlier projection, and the facts recorded since
            value, since = waiting
            stepping = self._steps[key]
            for fact in since:
                value = stepping(value, fact)
            self._derived[key] = value
            return cast(T, value)
        found = self._from_base(key, reads, step) if reads is not None else None
        if found is None and stored is not None and reads is not None and step is not None:
            found = self._from_snapshot(self._stored[key], reads, step)
        view: T = compute(self) if found is None else found
        self._derived[key] = view
        if reads is not None:
            self._reads[key] = reads
            if step is not None:
                self._steps[key] = step
        return view

    def _from_snapshot(self, stored: StoredView[T], reads: frozenset[str], step: Callable[[T, FactEntry], T]
                       ) -> T | None:
        """The view from the store's snapshot of it, stepped by the facts of its kinds recorded since; None when
        the case was read without one, or with one this code cannot read (the view is then folded)."""
        snapshot = self._snapshots.get(stored.name)
        raw = self._raw.get("facts", ())
        if snapshot is None or not 0 < snapshot.fact_count <= len(raw):
            return None
        try:
            value = stored.decode(json.loads(snapshot.body))
        except _UNREADABLE:
            return None
        positions = self._kind_positions()
        since = sorted(n for kind in reads for n in _from(positions.get(kind, ()), snapshot.fact_count))
        for entry in _entries_at(raw, since):
            value = step(value, _fact(entry))
        self._snapshot_at[stored.name] = snapshot.fact_count
        return value

    def snapshots_due(self, *, with_index: bool = False) -> dict[str, Snapshot]:
        """The snapshots of the stored views this projection has worked out (or can step to) that the store should
        keep now, by name: those with ``SNAPSHOT_EVERY`` facts of their kinds or more recorded since their latest
        snapshot (or in all, without one); ``with_index``, when the store's index of the facts is written now,
        all of them (the store keeps no snapshot older than its index: a case read in part then finds every fact a
        snapshot is stepped by among those it read).
        A command writes them with its entries; once returned, they count as the latest."""
        due: dict[str, Snapshot] = {}
        count = len(self._raw.get("facts", ()))
        if not self._stored or count < SNAPSHOT_EVERY:  # a new case's commands: nothing to count
            return due
        enough = 0 if with_index else SNAPSHOT_EVERY
        positions = self._kind_positions()
        for key, stored in self._stored.items():
            reads, step = self._reads.get(key), self._steps.get(key)
            if reads is None or step is None or (key not in self._derived and key not in self._pending):
                continue
            at = self._snapshot_at.get(stored.name, 0)
            if sum(len(_from(positions.get(kind, ()), at)) for kind in reads) < enough:
                continue
            value = self.derived(key, _never_folded, reads=reads, step=step)  # the pending facts stepped
            due[stored.name] = Snapshot(count, canonical_json(stored.encode(value)))
            self._snapshot_at[stored.name] = count
        return due

    def _from_base(self, key: object, reads: frozenset[str], step: Callable[[T, FactEntry], T] | None) -> T | None:
        """The view as the projection this one extends has it now, taken or stepped by the entry added; None when
        that projection has not worked it out (or is gone), or cannot step it."""
        base, section = self._extending()
        if base is None or (key not in base._derived and key not in base._pending):
            return None
        before: T = base.derived(key, lambda _f: cast(T, None), reads=reads, step=step)  # brought up to date
        stored = base._stored.get(key)
        if stored is not None and stored.name in base._snapshot_at:  # what the store holds of it, as base knows
            self._snapshot_at.setdefault(stored.name, base._snapshot_at[stored.name])
        if section == "moves" or self._raw["facts"][-1]["kind"] not in reads:
            return before
        return step(before, _fact(self._raw["facts"][-1])) if step is not None else None

    def extended(self, raw: Mapping[str, Any], section: str) -> CaseFacts:
        """The projection of ``raw``, which is this one's with one more entry at the end of ``section``
        ("facts" or "moves"), built from this one's work: what was parsed and grouped is shared and the
        new entry added to it, and the derived views that do not read it are kept. A command on a case of
        four hundred facts then costs what it costs on a new one."""
        after = CaseFacts(raw)
        after._base = (weakref.ref(self), section)
        entry = raw[section][-1]
        if section == "facts":
            kind = entry["kind"]
            after._moves, after._move_positions, after._by_trigger = self._moves, self._move_positions, self._by_trigger
            added = _fact(entry)  # one object for the whole list and its kind alike
            if self._facts is not None:
                after._facts = [*self._facts, added]
            if self._positions is not None:
                n = len(raw["facts"]) - 1
                after._positions = {**self._positions, kind: [*self._positions.get(kind, ()), n]}
            after._by_kind = {k: v for k, v in self._by_kind.items() if k != kind}
            if kind in self._by_kind:
                after._by_kind[kind] = [*self._by_kind[kind], added]
        else:
            trigger = entry["trigger"]
            after._facts, after._positions, after._by_kind = self._facts, self._positions, self._by_kind
            if self._moves is not None:
                after._moves = [*self._moves, _move(entry)]
            if self._move_positions is not None:
                n = len(raw["moves"]) - 1
                after._move_positions = {**self._move_positions, trigger: [*self._move_positions.get(trigger, ()), n]}
            after._by_trigger = {t: v for t, v in self._by_trigger.items() if t != trigger}
            if trigger in self._by_trigger:
                after._by_trigger[trigger] = [*self._by_trigger[trigger], _move(entry)]
        new_fact = None
        for key, kinds in self._reads.items():
            step = self._steps.get(key)
            if section == "moves" or entry["kind"] not in kinds:  # the view holds as it is
                if key in self._derived:
                    after._derived[key] = self._derived[key]
                else:
                    after._pending[key] = self._pending[key]
            elif step is not None:  # stepped by the new fact when next asked for, not before
                new_fact = new_fact or _fact(entry)
                base, since = (self._derived[key], ()) if key in self._derived else self._pending[key]
                after._pending[key] = (base, (*since, new_fact))
            else:
                continue  # folded again when next asked for
            after._reads[key] = kinds
            if step is not None:
                after._steps[key] = step
        after._snapshots = self._snapshots  # they cover a part of these facts still
        if self._stored:
            after._snapshot_at = dict(self._snapshot_at)
            after._stored = {key: v for key, v in self._stored.items() if key in after._reads}
        return after

    def __iter__(self) -> Iterator[FactEntry]:
        return iter(self.facts())


def _from(positions: Sequence[int], start: int) -> Sequence[int]:
    """The positions (ascending) from ``start`` on."""
    return positions[bisect_left(positions, start):]


def _never_folded(_facts: CaseFacts) -> Any:
    raise AssertionError("a view kept here is never folded again to be written")


def _entries_at(entries: Sequence[Mapping[str, Any]], positions: Sequence[int]) -> list[Mapping[str, Any]]:
    return entries.at(positions) if isinstance(entries, Entries) else [entries[n] for n in positions]


def _position(placed: tuple[int, FactEntry]) -> int:
    return placed[0]


def _positions(entries: Sequence[Mapping[str, Any]], name: str) -> dict[str, list[int]]:
    """Where the entries of each value of their key ``name`` are, in order, found without decoding them."""
    if isinstance(entries, Entries):
        return entries.positions(name)
    return _positions_of([entry[name] for entry in entries], 0)


# A named tuple's own constructor is a Python function around tuple.__new__; a command parses a dozen
# entries, so they are built with tuple.__new__ directly (same type, same fields, a third cheaper).
_new_tuple = tuple.__new__
_parse_instant = datetime.fromisoformat


def _fact(f: Mapping[str, Any]) -> FactEntry:
    return _new_tuple(FactEntry, (f["kind"], _parse_instant(f["at"]), f["by"], f["data"]))


def _move(m: Mapping[str, Any]) -> Move:
    return _new_tuple(Move, (m["trigger"], m["from"], m["to"], _parse_instant(m["at"])))


# Projections are never mutated: a fold returns a new object that shares the list it did not change.


def fold_fact(raw: Mapping[str, Any], kind: str, at: datetime, by: str, data: JSONObject) -> dict[str, Any]:
    """The projection after one more fact. Pure: returns a new object."""
    entry = {"kind": kind, "at": to_iso(at), "by": by, "data": data}
    return {"facts": _appended(raw.get("facts", ()), entry), "moves": raw.get("moves", [])}


def fold_move(raw: Mapping[str, Any], trigger: str, source: str, dest: str, at: datetime) -> dict[str, Any]:
    """The projection after one more move. Pure: returns a new object."""
    move = {"trigger": trigger, "from": source, "to": dest, "at": to_iso(at)}
    return {"facts": raw.get("facts", []), "moves": _appended(raw.get("moves", ()), move)}


def _appended(entries: Sequence[Mapping[str, Any]], entry: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    return entries.plus(entry) if isinstance(entries, Entries) else [*entries, entry]


def stored_projection(facts: Sequence[Mapping[str, Any]], moves: Sequence[Mapping[str, Any]]) -> dict[str, Entries]:
    """A projection whose lists keep their entries' texts, as the store writes them (``Entries``)."""
    return {"facts": Entries.of(facts), "moves": Entries.of(moves)}


@dataclass(frozen=True)
class CaseRecord:
    """A case row as stored: state, versions, chain head and projection."""

    id: str
    workflow: str
    workflow_version: str
    state: str
    previous_state: str | None
    version: int
    event_count: int
    head_hash: str
    facts: Mapping[str, Any]
    opened_at: datetime
    updated_at: datetime
    # The store's snapshots of the case's kept views, by name (``StoredView``), when a command's read took them:
    # what its projection starts from instead of folding them. Not the case's state: not compared.
    views: Mapping[str, Snapshot] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def projection(self) -> CaseFacts:
        """The facts as guards and planners read them: parsed once per record, on demand."""
        return CaseFacts(self.facts, self.views)

    def adopt_projection(self, projection: CaseFacts) -> None:
        """Take ``projection``, built before over these very facts, as this record's ``projection``.

        Its parsed entries and derived views depend on the facts alone, so a record read again
        with the same facts (``kapflow.store.recent``) need not parse them again.
        """
        if projection.raw is not self.facts:
            raise ValueError("a projection can only be adopted by a record of the same facts object")
        self.__dict__["projection"] = projection  # where cached_property keeps what it computed

    def projection_after(self, before: CaseRecord, section: str) -> None:
        """Build this record's ``projection`` from ``before``'s, when parsed: these facts are ``before``'s with
        one more entry at the end of ``section`` (``CaseFacts.extended``)."""
        parsed = before.parsed_projection()
        if parsed is not None:
            self.__dict__["projection"] = parsed.extended(self.facts, section)

    def parsed_projection(self) -> CaseFacts | None:
        """``projection`` if something asked for it already, else None (nothing is parsed)."""
        found: CaseFacts | None = self.__dict__.get("projection")
        return found

    def stored_entries(self) -> tuple[Entries, Entries] | None:
        """The projection's facts and moves as stored, when it keeps their texts (``Entries``)."""
        facts, moves = self.facts.get("facts"), self.facts.get("moves")
        if isinstance(facts, Entries) and isinstance(moves, Entries) and len(self.facts) == 2:
            return facts, moves
        return None

    def index_due(self) -> bool:
        """Whether the store writes the index of this record's facts with it (``Entries.index_due``): the command
        then works out every view the store keeps, so their snapshots are written with the index."""
        facts = self.facts.get("facts")
        return isinstance(facts, Entries) and facts.index_due("kind")

    def facts_json(self) -> str:
        """The canonical JSON of ``facts``: joined from its entries' texts, when it keeps them."""
        stored = self.stored_entries()
        if stored is None:
            return canonical_json({k: list(v) for k, v in self.facts.items()})
        return f'{{"facts":[{",".join(stored[0].texts)}],"moves":[{",".join(stored[1].texts)}]}}'


@dataclass(frozen=True)
class AuditEvent:
    """One row of the append-only, hash-chained audit history."""

    case_id: str
    case_seq: int
    at: datetime
    actor: str
    role: str
    kind: str  # an EventKind
    trigger: str | None
    from_state: str | None
    to_state: str | None
    workflow: str
    workflow_version: str
    data: Mapping[str, Any]
    blockers: tuple[Mapping[str, Any], ...]
    idempotency_key: str | None
    prev_hash: str
    hash: str
    seq: int | None = None
    os_user: str | None = None  # the account that ran a CLI command (Actor.os_user)

    def hashed_fields(self) -> dict[str, object]:
        """Everything the hash covers: all but ``seq`` (assigned by the database) and ``hash``.

        ``os_user`` only when set, so events written before it existed hash as they always did.
        """
        fields: dict[str, object] = {
            "case_id": self.case_id,
            "case_seq": self.case_seq,
            "at": to_iso(self.at),
            "actor": self.actor,
            "role": self.role,
            "kind": self.kind,
            "trigger": self.trigger,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "workflow": self.workflow,
            "workflow_version": self.workflow_version,
            "data": dict(self.data),
            "blockers": [dict(b) for b in self.blockers],
            "idempotency_key": self.idempotency_key,
            "prev_hash": self.prev_hash,
        }
        if self.os_user is not None:
            fields["os_user"] = self.os_user
        return fields

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, **self.hashed_fields(), "hash": self.hash}


@dataclass(frozen=True)
class Outcome:
    """What a successful command returns (also returned again for a repeated idempotency key)."""

    case_id: str
    kind: str  # an EventKind: opened | transition | fact | migrated
    state: str
    version: int
    case_seq: int
    trigger: str | None = None
    from_state: str | None = None
    replayed: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "case_id": self.case_id,
            "kind": self.kind,
            "state": self.state,
            "version": self.version,
            "case_seq": self.case_seq,
            "trigger": self.trigger,
            "from_state": self.from_state,
            "replayed": self.replayed,
            **dict(self.extra),
        }


def replay_events(events: Iterable[AuditEvent]) -> tuple[str, str | None, int, dict[str, Any]]:
    """Fold a case's audit history into (state, previous state, version, projection).

    Refusals and notes (reminders, delivery failures) change none of these; a
    migration to another workflow version changes the version only. The result
    must equal the case row, which is how verification finds an edited row.
    """
    state, previous, version = "", None, 0
    facts: dict[str, Any] = {}
    for ev in events:
        if ev.kind == EventKind.OPENED:
            kind = str(ev.data.get("intake_kind", ""))  # always written; missing only in an edited row
            facts = fold_fact({}, kind, ev.at, ev.actor, dict(ev.data["intake"]))
            state, version = ev.to_state or "", 1
        elif ev.kind == EventKind.TRANSITION:
            facts = fold_move(facts, ev.trigger or "", ev.from_state or "", ev.to_state or "", ev.at)
            previous, state, version = ev.from_state, ev.to_state or "", version + 1
        elif ev.kind == EventKind.FACT:
            facts = fold_fact(facts, ev.data["kind"], ev.at, ev.actor, dict(ev.data["fact"]))
            version += 1
        elif ev.kind == EventKind.MIGRATED:  # to another workflow version: a change, in neither state nor facts
            version += 1
    return state, previous, version, facts
