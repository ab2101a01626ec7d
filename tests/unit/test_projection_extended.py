"""A projection built from the one before it (``CaseFacts.extended``), or from the store's entry texts (``Entries``),
answers every query as one parsed afresh from plain lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kapflow.domain.case import CaseFacts, FactEntry, fold_fact, fold_move, stored_projection
from kapflow.domain.entries import Entries

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KINDS = ("appointment", "payment", "vitals", "consent")
TRIGGERS = ("hold", "resume", "discharge")
MIXED = ("appointment", "payment", "vitals")

# One step of a case: a fact of a kind, or a move by a trigger; then which queries to ask before the next.
steps = st.lists(
    st.tuples(st.sampled_from(("facts", "moves")), st.integers(0, 3), st.sets(st.integers(0, 8)),
              st.sets(st.integers(0, 8))),
    max_size=30,
)


def _count(kind: str) -> Any:
    return lambda f: len(f.of_kind(kind))


def _payments(view: CaseFacts) -> tuple[int, ...]:
    """A view kept by steps: the ``n`` of every payment, in order."""
    return view.derived("payments", lambda f: tuple(p.data["n"] for p in f.of_kind("payment")),
                        reads=frozenset({"payment"}), step=lambda before, fact: (*before, fact.data["n"]))


def _paid_since_hold(view: CaseFacts) -> tuple[int, str | None]:
    """A view that reads payments and the moves by ``hold``: kept across other moves, worked out again after one."""
    return view.derived("paid-since-hold", _paid_since_hold_of, reads=frozenset({"payment"}),
                        moves=frozenset({"hold"}))


def _paid_since_hold_of(f: CaseFacts) -> tuple[int, str | None]:
    held = f.last_move("hold")
    return (sum(1 for p in f.of_kind("payment") if held is None or p.at >= held.at),
            held.at.isoformat() if held else None)


def _ask(view: CaseFacts, queries: set[int]) -> None:
    """Ask some queries (so the view has parsed and derived what they need) before the next entry."""
    for q in queries:
        if q == 0:
            view.facts()
        elif q == 1:
            view.moves()
        elif q == 2:
            view.of_kind("payment")
        elif q == 3:
            view.moves_by("hold")
        elif q == 4:
            view.derived(("count", "vitals"), _count("vitals"), reads=frozenset({"vitals"}))
        elif q == 5:
            _payments(view)
        elif q == 6:
            view.derived(("count", "all"), lambda f: (len(f.facts()), f.move_count()))
        elif q == 7:
            view.of_kinds(("payment", "vitals"))
            _paid_since_hold(view)
        else:
            view.of_kind("vitals")


def _answers(view: CaseFacts) -> tuple[Any, ...]:
    windows = [view.since(k, T0 + timedelta(minutes=m)) for k in KINDS for m in (0, 5, 11, 40)]  # first: unparsed
    chosen = [view.where(k, "n", n) for k in KINDS for n in ("1", "2", "3")]
    latest = [view.latest(k) for k in KINDS]
    return (
        windows, chosen, latest, view.facts(), view.moves(), [view.of_kind(k) for k in KINDS],
        [view.moves_by(t) for t in TRIGGERS], view.last_move(), view.of_kinds(("payment", "vitals")),
        view.derived(("count", "vitals"), _count("vitals"), reads=frozenset({"vitals"})),
        view.derived(("count", "all"), lambda f: (len(f.facts()), f.move_count())), _payments(view),
        _paid_since_hold(view),
    )


def _read(raw: dict[str, Any]) -> dict[str, Any]:
    """The projection as the store reads it: its entries' texts, nothing decoded."""
    return {section: Entries(raw[section].texts) for section in ("facts", "moves")}


@settings(max_examples=60, deadline=None)
@given(steps)
def test_an_extended_projection_answers_as_a_fresh_one(path: list[tuple[str, int, set[int], set[int]]]) -> None:
    raw: dict[str, Any] = stored_projection([], [])
    plain: dict[str, Any] = {"facts": [], "moves": []}
    view = CaseFacts(raw)
    for n, (section, which, queries, late) in enumerate(path):
        at = T0 + timedelta(minutes=n)
        if section == "facts":
            raw = fold_fact(raw, KINDS[which], at, "actor-1", {"n": str(n % 4), "step": n})
            plain = fold_fact(plain, KINDS[which], at, "actor-1", {"n": str(n % 4), "step": n})
        else:
            raw = fold_move(raw, TRIGGERS[which % len(TRIGGERS)], "a", "b", at)
            plain = fold_move(plain, TRIGGERS[which % len(TRIGGERS)], "a", "b", at)
        _ask(view, queries)  # what the view before has parsed and derived is what the next one inherits
        previous, view = view, view.extended(raw, section)
        _ask(previous, late)  # worked out after the extension: the view after takes it from there
        whole = CaseFacts(raw).facts()
        # Kinds asked for first, then others: each entry parsed once, in the recorded order whatever was asked.
        assert view.of_kinds(MIXED) == [f for f in whole if f.kind in MIXED]
        assert _answers(view) == _answers(CaseFacts(plain))
        read = CaseFacts(_read(raw))
        _ask(read, queries)  # some parsed, some not: every query answers the same
        assert _answers(read) == _answers(CaseFacts(plain))
        some_first = CaseFacts(_read(raw))
        some_first.of_kind(KINDS[n % len(KINDS)])
        assert some_first.of_kinds(MIXED) == [f for f in whole if f.kind in MIXED] and some_first.facts() == whole
        assert len(previous.facts()) + len(previous.moves()) == n  # the view before is unchanged by its extension


def test_a_view_that_reads_some_kinds_is_kept_until_one_of_them_is_recorded() -> None:
    raw = fold_fact({"facts": [], "moves": []}, "vitals", T0, "actor-1", {"n": 0})
    view = CaseFacts(raw)
    computed: list[int] = []

    def vitals(f: CaseFacts) -> list[FactEntry]:
        computed.append(1)
        return f.of_kind("vitals")

    view.derived("vitals", vitals, reads=frozenset({"vitals"}))
    raw = fold_fact(raw, "payment", T0, "actor-1", {"n": 1})
    view = view.extended(raw, "facts")
    raw = fold_move(raw, "hold", "a", "b", T0)
    view = view.extended(raw, "moves")
    assert len(view.derived("vitals", vitals, reads=frozenset({"vitals"}))) == 1 and len(computed) == 1
    raw = fold_fact(raw, "vitals", T0, "actor-1", {"n": 2})
    view = view.extended(raw, "facts")
    assert len(view.derived("vitals", vitals, reads=frozenset({"vitals"}))) == 2 and len(computed) == 2


def test_a_view_that_reads_some_moves_is_kept_until_a_move_by_one_of_their_triggers() -> None:
    """``moves``: the view is kept across facts of other kinds and moves by other triggers, whether the projection
    before worked it out before its extension or after, and worked out again after a move by one it reads."""
    raw = fold_fact({"facts": [], "moves": []}, "payment", T0, "actor-1", {"n": 0})
    view = CaseFacts(raw)
    computed: list[int] = []

    def ask(v: CaseFacts) -> int:
        return v.derived("holds", lambda f: (computed.append(1), len(f.moves_by("hold")))[1],
                         reads=frozenset({"payment"}), moves=frozenset({"hold"}))

    assert ask(view) == 0
    raw = fold_move(raw, "resume", "a", "b", T0)
    view = view.extended(raw, "moves")
    raw = fold_fact(raw, "vitals", T0, "actor-1", {"n": 1})
    view = view.extended(raw, "facts")
    assert ask(view) == 0 and computed == [1]
    raw = fold_move(raw, "hold", "b", "a", T0)
    held = view.extended(raw, "moves")
    assert ask(held) == 1 and computed == [1, 1]
    before = CaseFacts(raw)
    later = before.extended(fold_move(raw, "hold", "a", "a", T0), "moves")
    assert ask(before) == 1  # worked out after the extension was made: taken from there unless a move it reads
    assert ask(later) == 2 and computed == [1, 1, 1, 1]
    other = before.extended(fold_move(raw, "resume", "a", "a", T0), "moves")
    assert ask(other) == 1 and computed == [1, 1, 1, 1]


def test_a_stepped_view_takes_the_facts_recorded_since_it_was_asked_for() -> None:
    """A view with a ``step`` is folded once; later projections step it by their new facts of its kinds, only
    when asked for, and only by the facts recorded since the view was last brought up to date."""
    raw = fold_fact({"facts": [], "moves": []}, "payment", T0, "actor-1", {"n": 0})
    view = CaseFacts(raw)
    folded: list[int] = []
    stepped: list[int] = []

    def ask(v: CaseFacts) -> tuple[int, ...]:
        return v.derived("paid", lambda f: (folded.append(1), tuple(p.data["n"] for p in f.of_kind("payment")))[1],
                         reads=frozenset({"payment"}),
                         step=lambda before, fact: (stepped.append(fact.data["n"]), (*before, fact.data["n"]))[1])

    assert ask(view) == (0,)
    for n, kind in enumerate(("payment", "vitals", "payment"), start=1):
        raw = fold_fact(raw, kind, T0, "actor-1", {"n": n})
        view = view.extended(raw, "facts")
    assert stepped == []  # nothing stepped until asked
    assert ask(view) == (0, 1, 3) and folded == [1] and stepped == [1, 3]
    raw = fold_move(raw, "hold", "a", "b", T0)
    view = view.extended(raw, "moves")
    assert ask(view) == (0, 1, 3) and folded == [1] and stepped == [1, 3]  # a move leaves it as it was


def test_a_view_the_projection_before_works_out_later_is_stepped_not_folded() -> None:
    """A command plans the case before it after building the projection after it: that projection takes the view
    the one before has by then, stepped by its new fact, instead of folding the whole case again."""
    raw = fold_fact({"facts": [], "moves": []}, "payment", T0, "actor-1", {"n": 0})
    before = CaseFacts(raw)
    after = before.extended(fold_fact(raw, "payment", T0, "actor-1", {"n": 1}), "facts")
    folded: list[int] = []

    def ask(v: CaseFacts) -> tuple[int, ...]:
        return v.derived("paid", lambda f: (folded.append(1), tuple(p.data["n"] for p in f.of_kind("payment")))[1],
                         reads=frozenset({"payment"}), step=lambda was, fact: (*was, fact.data["n"]))

    assert ask(before) == (0,) and ask(after) == (0, 1) and folded == [1]
    assert after.facts() == CaseFacts(after.raw).facts() and before.facts() is not after.facts()


def test_each_entry_is_parsed_once_and_only_for_the_kinds_asked() -> None:
    raw: dict[str, Any] = {"facts": [], "moves": []}
    for n, kind in enumerate(("vitals", "payment", "vitals", "consent", "payment")):
        raw = fold_fact(raw, kind, T0 + timedelta(minutes=n), "actor-1", {"n": n})
    view = CaseFacts(raw)
    both = view.of_kinds(("payment", "vitals"))
    assert [f.data["n"] for f in both] == [0, 1, 2, 4]
    assert "consent" not in view._by_kind  # not parsed: nothing asked for it
    whole = view.facts()
    assert all(whole[n] is f for n, f in zip((0, 1, 2, 4), both, strict=True))  # the very entries parsed before


def test_since_parses_only_the_entries_in_its_window() -> None:
    raw: dict[str, Any] = stored_projection([], [])
    for n in range(6):
        raw = fold_fact(raw, "vitals", T0 + timedelta(days=n), "actor-1", {"n": n})
    entries = Entries(raw["facts"].texts)
    view = CaseFacts({"facts": entries, "moves": Entries([])})
    assert [f.data["n"] for f in view.since("vitals", T0 + timedelta(days=4))] == [4, 5]
    assert entries._decoded[:4] == [None] * 4  # the year before the window is not decoded
    assert view.latest("vitals") is not None and entries._decoded[:4] == [None] * 4


def test_since_reads_an_entry_written_in_another_form_by_its_instant() -> None:
    """An entry edited by hand with a local offset (not as the engine writes it) is compared as an instant."""
    local = '{"at":"2026-03-02T05:30:00.000000-04:00","by":"a","data":{},"kind":"vitals"}'  # 09:30 UTC
    spaced = '{"kind": "vitals", "at": "2026-03-02T09:10:00+00:00", "by": "a", "data": {}}'
    no_t = '{"at":"2026-03-02 09:40:00.000000+00:00","by":"a","data":{},"kind":"vitals"}'  # text order is not time
    view = CaseFacts({"facts": Entries([local, spaced, no_t]), "moves": Entries([])})
    assert [f.at for f in view.since("vitals", T0 + timedelta(minutes=20))] == [T0 + timedelta(minutes=m)
                                                                                for m in (30, 40)]
    assert len(CaseFacts({"facts": Entries([local, spaced, no_t]), "moves": Entries([])}).since("vitals", T0)) == 3


def test_where_parses_only_the_entries_that_can_match() -> None:
    raw: dict[str, Any] = stored_projection([], [])
    for n, purpose in enumerate(("psychotherapy", "evaluation_fee", "psychotherapy", "evaluation fee\u2019s")):
        raw = fold_fact(raw, "payment", T0 + timedelta(days=n), "actor-1", {"purpose": purpose, "n": n})
    escaped = '{"at":"2026-03-09T09:00:00.000000+00:00","by":"a","data":{"purpose":"evaluation\\u005ffee"},' \
              '"kind":"payment"}'  # written by hand with an escape: the same value
    entries = Entries([*raw["facts"].texts, escaped])
    view = CaseFacts({"facts": entries, "moves": Entries([])})
    assert [f.data.get("n") for f in view.where("payment", "purpose", "evaluation_fee")] == [1, None]
    assert entries._decoded[0] is None and entries._decoded[2] is None  # nothing in them could match
