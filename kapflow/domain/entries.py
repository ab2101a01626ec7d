"""A projection's list as the store holds it (``Entries``): each entry's canonical JSON text, decoded when first
read, and the store's index of a long case's facts by kind (``EntryIndex``), past which a command reads them.

Entries' instants are written in one fixed text form (``to_iso``), so a text's time is read from its start and
text order is time order within that form.
"""

from __future__ import annotations

import json
import re
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast, overload

from kapflow.domain.payload import canonical_json


def to_iso(moment: datetime) -> str:
    """The one text form of an instant: UTC, microseconds always present (sortable, hashable)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # What isoformat(timespec="microseconds") prints for a UTC instant, at half its cost (every
    # command formats its instant a few times); printf-style, as format specs in an f-string cost more.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (  # noqa: UP031
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond,
    )


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

EntryLoader = Callable[[Sequence[int], str | None], Sequence[str | None]]
"""Reads the texts of a list's entries at the positions given, in that order (the store's, for a partial read); with
a text to look for (``Entries.holding``), None in place of each that holds neither it nor a backslash (not read)."""


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
        if self._start:
            self._load([n for n in wanted if self._texts[n] is None], None)
        return wanted

    def holding(self, positions: Iterable[int], value: str) -> list[int]:
        """Of ``positions``, those whose text holds ``value`` or a backslash (which a text holding a string that needs
        an escape has): those not read yet are looked for by the store, and only those found are read (the evaluation
        fee's payments among a year of them)."""
        wanted = positions if isinstance(positions, (list, range, tuple)) else list(positions)
        texts = self._texts
        if self._start:
            self._load([n for n in wanted if texts[n] is None], value)
        return [n for n in wanted if (text := texts[n]) is not None and (value in text or "\\" in text)]

    def _load(self, missing: list[int], holding: str | None) -> None:
        if not missing:
            return
        if self._loader is None:
            raise LookupError("entries read in part, with no loader for the rest")
        found = self._loader(missing, holding)
        if len(found) != len(missing):
            raise LookupError(f"{len(missing) - len(found)} of a case's projection entries are missing from the store")
        texts = self._texts
        for n, text in zip(missing, found, strict=True):
            if text is not None:
                texts[n] = text
            elif holding is None:
                raise LookupError("the store read no text for an entry it was asked for")

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


_parse_instant = datetime.fromisoformat
