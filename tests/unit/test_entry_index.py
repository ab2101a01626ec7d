"""A long case's facts read in part (``Entries.partial``): the store's index of the earlier ones (``EntryIndex``)
and the texts past it, the others read through a loader when a query reaches them. Whatever the split, every
query answers as on the entries read whole, and the index a command writes from a partial read is the one the
entries make."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapflow.domain.case import CaseFacts
from kapflow.domain.entries import ENTRY_INDEX, Entries, EntryIndex, to_iso
from kapflow.domain.payload import canonical_json
from kapflow.domain.stored_views import snapshot_folds
from kapflow.workflows.kap import KAP_PATHWAY

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
KINDS = ("vitals", "fasting", "payment", "consent")


def texts_of(facts: Sequence[tuple[str, int]]) -> list[str]:
    """Canonical fact entries of (kind, minutes after T0): out of order when the minutes are."""
    return [canonical_json({"kind": kind, "at": to_iso(T0 + timedelta(minutes=m)), "by": "a", "data": {"n": str(n)}})
            for n, (kind, m) in enumerate(facts)]


class Loader:
    """The store's part: the texts at the places asked for, or, looking for a text, None for those without it."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.calls, self.read = texts, 0, 0

    def __call__(self, places: Sequence[int], holding: str | None) -> list[str | None]:
        self.calls += 1
        found = [self.texts[n] if holding is None or holding in self.texts[n] or "\\" in self.texts[n] else None
                 for n in places]
        self.read += sum(text is not None for text in found)
        return found


def partial(texts: list[str], size: int, with_lasts: bool = True) -> tuple[Entries, Loader]:
    index = Entries(texts[:size]).index_by("kind")
    lasts = {n: texts[n] for n in json.loads(index.body())["last"]} if with_lasts else {}
    loader = Loader(texts)
    return Entries.partial(EntryIndex.decode("kind", size, index.body()), texts[size:], None, loader, lasts), loader


facts_strategy = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 300)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(facts=facts_strategy, cut=st.floats(0, 1), after=st.integers(-5, 305), kind=st.sampled_from(KINDS),
       ordered=st.booleans())
def test_a_partial_read_answers_as_the_whole(facts: list[tuple[str, int]], cut: float, after: int, kind: str,
                                             ordered: bool) -> None:
    if ordered:
        facts = sorted(facts, key=lambda f: f[1])
    texts = texts_of(facts)
    size = int(cut * len(texts))
    whole = Entries(texts)
    part, loader = partial(texts, size)
    assert part.positions("kind") == {k: v for k, v in whole.positions("kind").items()}
    places = whole.positions("kind").get(kind, [])
    instant = T0 + timedelta(minutes=after)
    expected = [n for n in places if whole[n]["at"] >= to_iso(instant)]
    assert part.recorded_since(kind, places, to_iso(instant)) == expected
    facts_whole, facts_part = CaseFacts({"facts": whole, "moves": []}), CaseFacts({"facts": partial(texts, size)[0],
                                                                                  "moves": []})
    assert facts_part.latest(kind) == facts_whole.latest(kind)
    assert facts_part.since(kind, instant) == facts_whole.since(kind, instant)
    assert facts_part.where(kind, "n", "3") == facts_whole.where(kind, "n", "3")
    assert facts_part.of_kind(kind) == facts_whole.of_kind(kind)
    assert part.keys("kind") == whole.keys("kind")
    assert part.index_by("kind") == whole.index_by("kind")  # what a command writes, from the part it read
    assert list(part) == list(whole) and part.texts == texts
    assert loader.calls <= 6


def test_reads_in_part_read_nothing_more_for_the_latest_and_a_window_past_the_index() -> None:
    """The last of each kind comes with the read, and a window after the latest the index covers reads nothing;
    in order, a window reaching back reads a few back from the last covered, not the whole kind."""
    facts = [(KINDS[n % 4], n) for n in range(200)]
    texts = texts_of(facts)
    part, loader = partial(texts, 180)
    view = CaseFacts({"facts": part, "moves": []})
    assert [view.latest(k) is not None for k in KINDS] == [True] * 4
    assert view.since("vitals", T0 + timedelta(minutes=190)) and loader.calls == 0
    assert len(view.since("fasting", T0 + timedelta(minutes=170))) == 7 and loader.calls == 1  # 173, 177 read
    back, reads = partial(texts, 180)
    reaching = CaseFacts({"facts": back, "moves": []}).since("payment", T0 + timedelta(minutes=150))
    assert [(f.at - T0) // timedelta(minutes=1) for f in reaching] == list(range(150, 200, 4))
    assert reads.calls == 3  # back from 178 (read with the last), four at a time, to the first before the window
    assert sum(t is not None for t in part._texts) < 40


def test_a_stored_index_is_checked_before_it_is_used() -> None:
    texts = texts_of([(KINDS[n % 4], n) for n in range(40)])
    body = json.loads(Entries(texts[:32]).index_by("kind").body())
    EntryIndex.decode("kind", 32, canonical_json(body))
    for broken in ({**body, "positions": {**body["positions"], "vitals": [0, 99]}},
                   {**body, "positions": {**body["positions"], "vitals": []}},
                   {**body, "latest": {}}, {**body, "ordered": ["nothing"]}, [], {"positions": {}}):
        with pytest.raises((ValueError, KeyError, TypeError)):
            EntryIndex.decode("kind", 32, canonical_json(broken))


def test_verification_folds_the_index_as_the_facts_make_it() -> None:
    texts = texts_of([(KINDS[n % 4], n) for n in range(40)])
    fold = snapshot_folds(KAP_PATHWAY, "case-1")[ENTRY_INDEX]
    assert fold(CaseFacts({"facts": Entries(texts[:32]), "moves": []})) == Entries(texts[:32]).index_by("kind").body()


def test_an_entry_missing_from_the_store_is_said() -> None:
    texts = texts_of([(KINDS[n % 4], n) for n in range(40)])
    part, _ = partial(texts, 32, with_lasts=False)
    part._loader = lambda places, holding: []
    with pytest.raises(LookupError, match="missing from the store"):
        part[0]


def test_where_reads_only_the_earlier_texts_that_may_hold_the_value() -> None:
    """The evaluation fee's payments among a year of them: of the texts the index covers, the store reads those that
    hold the value or an escape (a value written with one, as a quote is), and no other."""
    purposes = ["psychotherapy"] * 60
    purposes[3] = purposes[41] = "evaluation_fee"
    purposes[20] = 'fee "quoted"'
    texts = [canonical_json({"kind": "payment", "at": to_iso(T0 + timedelta(minutes=n)), "by": "a",
                             "data": {"amount": "1.00", "purpose": purpose}}) for n, purpose in enumerate(purposes)]
    part, loader = partial(texts, 50, with_lasts=False)
    view = CaseFacts({"facts": part, "moves": []})
    found = view.where("payment", "purpose", "evaluation_fee")
    assert [f.at for f in found] == [T0 + timedelta(minutes=3), T0 + timedelta(minutes=41)]
    assert loader.calls == 1 and loader.read == 3  # the two fees and the quoted one, which holds an escape
    assert [f.data["purpose"] for f in view.where("payment", "purpose", 'fee "quoted"')] == ['fee "quoted"']
    assert view.of_kind("payment") == CaseFacts({"facts": Entries(texts), "moves": []}).of_kind("payment")
