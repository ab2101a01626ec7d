"""The projection's entries as the store keeps them: their texts, decoded when read, keyed without decoding."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapflow.domain.case import CaseFacts, fold_fact, fold_move, stored_projection
from kapflow.domain.entries import Entries, to_iso
from kapflow.domain.payload import canonical_json

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# JSON values as facts carry them, including the awkward ones: a nested "kind" or "trigger" key (the key
# is read from the end of the text), quotes, escapes and brackets inside strings.
_text = st.text(alphabet=st.sampled_from('ab"],[{}:\\ kind,trigger\u00e9\n'), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["kind", "trigger", "x", "a", "zz"]),
                                                                inner, max_size=3),
    max_leaves=8,
)
_data = st.dictionaries(st.sampled_from(["kind", "trigger", "note", "z"]), _json, max_size=4)
_fold = st.one_of(
    st.tuples(st.just("facts"), _text, _data),
    st.tuples(st.just("moves"), _text, _text),
)


def _apply(raw: dict[str, Any], step: tuple[str, str, Any], at: datetime) -> dict[str, Any]:
    section, name, extra = step
    if section == "facts":
        return fold_fact(raw, name, at, "actor-1", extra)
    return fold_move(raw, name, "here", extra, at)


@given(st.lists(_fold, max_size=12))
def test_folded_entries_keep_the_canonical_text_of_each_entry(steps: list[tuple[str, str, Any]]) -> None:
    stored: dict[str, Any] = stored_projection([], [])
    plain: dict[str, Any] = {"facts": [], "moves": []}
    for i, step in enumerate(steps):
        at = T0 + timedelta(minutes=i)
        stored, plain = _apply(stored, step, at), _apply(plain, step, at)
        assert isinstance(stored[step[0]], Entries)
        assert stored == plain
    for section, key in (("facts", "kind"), ("moves", "trigger")):
        entries = stored[section]
        assert entries.texts == [canonical_json(e) for e in plain[section]]
        read = Entries(entries.texts)  # as the store reads them: nothing decoded
        assert read.keys(key) == [e[key] for e in plain[section]]  # keyed from the texts
        assert list(read) == plain[section]
        assert read == plain[section] and read == entries


@given(st.dictionaries(st.sampled_from(["kind", "at", "data", "zz", "a"]), _json, min_size=1), st.randoms())
def test_a_key_is_read_from_any_object_text_as_decoding_it_reads_it(entry: dict[str, Any], rnd: random.Random) -> None:
    entry.setdefault("kind", "k")
    shuffled = dict(rnd.sample(list(entry.items()), len(entry)))  # texts written by hand: any key order, spaces
    for text in (canonical_json(entry), json.dumps(shuffled), json.dumps(shuffled, indent=1, ensure_ascii=True)):
        assert Entries([text]).keys("kind") == [json.loads(text)["kind"]]


def test_keys_are_read_without_decoding_canonical_entries() -> None:
    raw = fold_fact(fold_fact(stored_projection([], []), "vitals", T0, "a", {"kind": "x"}), 'odd "kind"', T0, "a", {})
    read = Entries(raw["facts"].texts)
    assert read.keys("kind") == ["vitals", 'odd "kind"']  # the second, with escapes, decoded to be read
    assert read._decoded == [None, {"at": to_iso(T0), "by": "a", "data": {}, "kind": 'odd "kind"'}]
    assert raw["facts"].keys("kind") == [entry["kind"] for entry in raw["facts"]]


def test_entries_index_and_slice_as_a_list_does() -> None:
    plain = [{"kind": str(n), "n": n} for n in range(5)]
    entries = Entries([canonical_json(e) for e in plain])
    assert entries[-1] == plain[-1] and entries[1:3] == plain[1:3] and entries[::-2] == plain[::-2]
    assert len(entries) == 5 and entries != plain[:4] and entries != "not a list"
    assert entries.plus({"kind": "5"}) == [*plain, {"kind": "5"}] and len(entries) == 5  # unchanged


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=13))])))
def test_to_iso_prints_what_isoformat_prints_in_utc(moment: datetime) -> None:
    assert to_iso(moment) == moment.astimezone(UTC).isoformat(timespec="microseconds")


def test_derived_views_are_computed_once_per_projection() -> None:
    calls: list[int] = []

    def count(facts: CaseFacts) -> int:
        calls.append(1)
        return len(facts.of_kind("payment"))

    facts = CaseFacts(fold_fact({}, "payment", T0, "a", {"amount": "1"}))
    assert facts.derived(count, count) == 1
    assert facts.derived(count, count) == 1
    assert len(calls) == 1
    assert CaseFacts(facts.raw).derived(count, count) == 1  # a new projection computes afresh
    assert len(calls) == 2


def test_keys_the_store_read_beside_the_texts_are_taken_as_they_are() -> None:
    """A command's read hands each entry's kind over (``case_entries.kind``): grouping reads no text (the audit checks
    them against the texts); one for each entry, or none."""
    texts = ['{"at":"2026-01-05T09:00:00.000000+00:00","by":"x","data":{},"kind":"vitals"}', "not JSON at all"]
    entries = Entries(texts, keys=("kind", ["vitals", "consent"]))
    assert entries.keys("kind") == ["vitals", "consent"]
    assert entries.plus({"at": "2026-01-05T10:00:00.000000+00:00", "by": "x", "data": {}, "kind": "escort"}
                        ).keys("kind") == ["vitals", "consent", "escort"]
    with pytest.raises(ValueError, match="for each entry"):
        Entries(texts, keys=("kind", ["vitals"]))
