"""A record's parsed projection can be handed on to another record of the very same facts, and only that."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kapflow.domain.case import CaseFacts, CaseRecord, fold_fact

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _record(facts: dict[str, Any]) -> CaseRecord:
    return CaseRecord("case-1", "kap", "1", "inquiry", None, 1, 1, "", facts, T0, T0)


def test_a_record_adopts_the_view_another_record_of_its_facts_parsed() -> None:
    facts = fold_fact({"facts": [], "moves": []}, "payment", T0, "actor-1", {"amount": "250.00"})
    first = _record(facts)
    assert first.parsed_projection() is None  # nothing parsed until asked
    view = first.projection
    assert first.parsed_projection() is view
    second = _record(facts)
    second.adopt_projection(view)
    assert second.projection is view and second.projection.latest("payment") is not None


def test_a_record_adopts_only_a_view_of_its_own_facts() -> None:
    record = _record({"facts": [], "moves": []})
    with pytest.raises(ValueError, match="same facts object"):
        record.adopt_projection(CaseFacts({"facts": [], "moves": []}))
    assert record.parsed_projection() is None
