"""The stored projection text: spliced by a fold, always equal to serializing the whole projection."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kapflow.domain.case import (
    CaseFacts,
    CaseRecord,
    ProjectionText,
    fold_fact,
    fold_move,
    text_after_fold,
    to_iso,
)
from kapflow.domain.payload import canonical_json

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# JSON values as facts carry them, including the awkward ones: a nested "moves" key holding an
# array (the splice cuts at the last ',"moves":['), quotes and brackets inside strings.
_text = st.text(alphabet=st.sampled_from('ab"],[{}:\\ moves'), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["moves", "facts", "x", "a"]), inner,
                                                                max_size=3),
    max_leaves=8,
)
_data = st.dictionaries(st.sampled_from(["moves", "facts", "kind", "note", "z"]), _json, max_size=4)
# Names with quotes and brackets too: inside a JSON string a quote is escaped, so no name can forge
# the cut.
_fold = st.one_of(
    st.tuples(st.just("facts"), _text, _data),
    st.tuples(st.just("moves"), _text, _text),
)


def _record(facts: dict[str, Any], text: str | None) -> CaseRecord:
    return CaseRecord(
        "case-1", "kap", "1", "inquiry", None, 1, 1, "", facts, T0, T0,
        facts_text=ProjectionText(facts, text) if text is not None else None,
    )


def _apply(raw: dict[str, Any], step: tuple[str, str, Any], at: datetime) -> dict[str, Any]:
    section, name, extra = step
    if section == "facts":
        return fold_fact(raw, name, at, "actor-1", extra)
    return fold_move(raw, name, "here", extra, at)


@given(st.lists(_fold, max_size=12))
def test_every_spliced_text_equals_the_whole_projection_serialized(steps: list[tuple[str, str, Any]]) -> None:
    raw: dict[str, Any] = {"facts": [], "moves": []}
    case = _record(raw, canonical_json(raw))
    for i, step in enumerate(steps):
        after = _apply(dict(case.facts), step, T0 + timedelta(minutes=i))
        spliced = text_after_fold(case, after, step[0])
        assert spliced is not None
        assert spliced.of is after
        assert spliced.text == canonical_json(after)
        assert json.loads(spliced.text) == after
        case = replace(case, facts=after, facts_text=spliced)
        assert case.facts_json() == canonical_json(after)


def test_no_splice_without_a_known_canonical_text() -> None:
    raw: dict[str, Any] = {"facts": [], "moves": []}
    after = fold_move(raw, "go", "a", "b", T0)
    assert text_after_fold(_record(raw, None), after, "moves") is None
    # Text that is not in the canonical shape (spaces, other key order) is never cut.
    assert text_after_fold(_record(raw, json.dumps(raw)), after, "moves") is None
    assert text_after_fold(_record(raw, '{"moves":[],"facts":[]}'), after, "moves") is None
    extra = {"facts": [], "moves": [], "other": 1}
    assert text_after_fold(_record(extra, canonical_json(extra)), fold_move(extra, "go", "a", "b", T0), "moves") is None


def test_a_record_never_stores_text_of_other_facts() -> None:
    raw: dict[str, Any] = {"facts": [], "moves": []}
    case = _record(raw, canonical_json(raw))
    changed = replace(case, facts=fold_move(raw, "go", "a", "b", T0))  # facts replaced, old text kept
    assert changed.facts_json() == canonical_json(changed.facts)


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
