"""A case as the engine sees it: its stored record, its facts, and what commands return.

``CaseFacts`` is the case's projection: every fact recorded and every move
made, folded in order from the audit history. Guards read it and nothing
else, so a guard's verdict depends only on the projection and the clock.
"""

from __future__ import annotations

import json
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, NamedTuple, TypeVar, cast

from kapflow.domain.entries import (
    SNAPSHOT_EVERY,
    Entries,
    _positions_of,
    to_iso,
)
from kapflow.domain.errors import StorageError
from kapflow.domain.events import EventKind
from kapflow.domain.payload import JSONObject, canonical_json

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


class Snapshot(NamedTuple):
    """A derived view as the store keeps it: its value after the case's first ``fact_count`` facts, as the
    canonical JSON of what its ``StoredView`` encodes (``body``)."""

    fact_count: int
    body: str


class ReadSnapshot(NamedTuple):
    """A snapshot a projection has decoded (``CaseFacts._from_snapshot``): the view after the case's first
    ``fact_count`` facts, in place of its text, for the projections sharing the snapshots."""

    fact_count: int
    value: Any


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

EVERY_MOVE: frozenset[str] = frozenset({"*every move*"})
"""``moves`` of a view that every move changes, whatever its trigger (``CaseFacts.derived``): one counting moves."""


def _reads_move(moves: frozenset[str], trigger: str) -> bool:
    return moves is EVERY_MOVE or trigger in moves


def unreadable_snapshot(view: str) -> StorageError:
    """The error for a part of a store's snapshot that cannot be read, with no projection left to fold it from (only
    a hand's edit makes one: ``kapflow audit verify`` names it)."""
    return StorageError(f"the store's snapshot of {view} cannot be read: run kapflow audit verify, and delete the "
                        "case's rows of case_views (commands then fold its facts and write them again)")


class Refold(Generic[T]):
    """Where a view read from a store's snapshot, and decoded as far as commands read it (``AppointmentBook``, the
    ledger), reads a part it cannot decode: a fold of the facts of the projection that asked for it last.

    The projection is held weakly: it keeps its views, so a strong reference would leave a reference cycle per
    command for the cycle collector."""

    __slots__ = ("_facts", "_fold", "_view")

    def __init__(self, view: str, fold: Callable[[CaseFacts], T]) -> None:
        self._view = view  # what the error says cannot be read
        self._fold = fold
        self._facts: weakref.ref[CaseFacts] | None = None

    def note(self, facts: CaseFacts) -> None:
        """``facts`` asked for the view: a part that cannot be read is folded from them."""
        if self._facts is None or self._facts() is not facts:
            self._facts = weakref.ref(facts)

    def copy(self) -> Refold[T]:
        """One for a view made from this one (another projection's, which notes itself when it asks)."""
        made = Refold(self._view, self._fold)
        made._facts = self._facts
        return made

    def __call__(self) -> T:
        facts = self._facts() if self._facts is not None else None
        if facts is None:
            raise unreadable_snapshot(self._view)
        return self._fold(facts)


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
        "_move_reads",
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

    def __init__(self, raw: Mapping[str, Any] | None = None,
                 snapshots: Mapping[str, Snapshot | ReadSnapshot] | None = None) -> None:
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
        self._move_reads: dict[object, frozenset[str]] = {}  # the triggers of the moves it depends on too, if any
        self._steps: dict[object, Callable[[Any, FactEntry], Any]] = {}  # how a view takes one more fact, when it said
        # Views not brought up to date yet: the view of an earlier projection and the facts to step it by since.
        self._pending: dict[object, tuple[Any, tuple[FactEntry, ...]]] = {}
        # The projection this one extends by one entry (``extended``), while something else keeps it: what it works
        # out after the extension (the command's plan before it, folded after the one after) this one takes too.
        self._base: tuple[weakref.ref[CaseFacts], str] | None = None
        # The store's snapshots of kept views as the case was read (``StoredView``), by name; the views kept here
        # that the store keeps, by key; and how many facts each one's latest snapshot in the store covers.
        self._snapshots: Mapping[str, Snapshot | ReadSnapshot] = snapshots or {}
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
        no backslash holds every string it decodes to as it is, so one without ``value`` cannot have it. Of a long
        case read in part, the store looks through the earlier texts and reads those that may (``Entries.holding``).
        """
        found = self._kind_if_parsed(kind)
        if found is None:
            raw: Entries = self._raw["facts"]
            found = self._parsed_at(raw.holding(self._kind_positions().get(kind, ()), value))
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
        moves: frozenset[str] = frozenset(),
    ) -> T:
        """``compute(self)``, once per projection: a view several guards (or the planner) share.

        ``key`` names the view (usually ``compute`` itself); the view must depend on this projection
        only (its facts and moves), never on the clock or a command's data. ``reads``: the fact kinds
        it depends on, when only those (and the moves of the triggers ``moves`` names, if any): the projection
        one more entry makes (``extended``) keeps it unless that entry is a fact of one of them, or a move by one
        of those triggers (any move: ``EVERY_MOVE``), so a long case does not fold it again.
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
        found = self._from_base(key, reads, step, moves) if reads is not None else None
        if found is None and stored is not None and reads is not None and step is not None:
            found = self._from_snapshot(self._stored[key], reads, step)
        view: T = compute(self) if found is None else found
        self._derived[key] = view
        if reads is not None:
            self._reads[key] = reads
            if moves:
                self._move_reads[key] = moves
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
        if isinstance(snapshot, ReadSnapshot):  # decoded by a projection sharing these snapshots (``extended``)
            value: T = snapshot.value
        else:
            try:
                value = stored.decode(json.loads(snapshot.body))
            except _UNREADABLE:
                return None
            if isinstance(self._snapshots, dict):
                # Decoded once for every projection that shares the snapshots (those extending this one, which may
                # outlive it), and a record kept for the next command holds the view, not its text beside it (a
                # year-old case's ledger and appointments: 28k characters). A view is never changed once made.
                self._snapshots[stored.name] = ReadSnapshot(snapshot.fact_count, value)
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

    def _from_base(self, key: object, reads: frozenset[str], step: Callable[[T, FactEntry], T] | None,
                   moves: frozenset[str]) -> T | None:
        """The view as the projection this one extends has it now, taken or stepped by the entry added; None when
        that projection has not worked it out (or is gone), or cannot step it."""
        base, section = self._extending()
        if base is None or (key not in base._derived and key not in base._pending):
            return None
        before: T = base.derived(key, lambda _f: cast(T, None), reads=reads, step=step, moves=moves)  # up to date
        stored = base._stored.get(key)
        if stored is not None and stored.name in base._snapshot_at:  # what the store holds of it, as base knows
            self._snapshot_at.setdefault(stored.name, base._snapshot_at[stored.name])
        if section == "moves":
            return None if _reads_move(moves, self._raw["moves"][-1]["trigger"]) else before
        if self._raw["facts"][-1]["kind"] not in reads:
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
            step, triggers = self._steps.get(key), self._move_reads.get(key)
            if section == "moves" and triggers is not None and _reads_move(triggers, entry["trigger"]):
                continue  # worked out again when next asked for
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
            if triggers is not None:
                after._move_reads[key] = triggers
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
    # A projection decoding one puts the view in its place (``ReadSnapshot``), for the others built from it.
    views: Mapping[str, Snapshot | ReadSnapshot] = field(default_factory=dict, compare=False, repr=False)

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
