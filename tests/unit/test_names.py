"""The words of a client's name as the search index keeps them, and the words of a search."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapflow.domain.errors import InvalidInput
from kapflow.domain.names import MAX_SEARCH_WORDS, fold, prefix_bound, search_words, words


def test_accents_and_case_are_folded() -> None:
    """What staff type without the accent finds the name written with it, and the other way round."""
    assert fold("Zoë ÆRØ Ñúñez Straße") == "zoe aero nunez strasse"
    assert words("Zoë Ñúñez") == {"zoe", "nunez"}


def test_an_apostrophe_keeps_the_word_whole_and_its_parts() -> None:
    """O'Neil is found by "oneil", "o" and "neil"; a hyphen splits a double name into two words."""
    assert words("Dara O'Neil") == {"dara", "oneil", "o", "neil"}
    assert words("Ruiz-Ærø") == {"ruiz", "aero"}
    assert words("  St. Pierre ") == {"st", "pierre"}


def test_a_search_folds_its_words_alike_and_drops_repeats() -> None:
    """A search's words are folded as the name's are, without punctuation, each kept once, in order."""
    assert search_words("  ZOË  o'neil zoe") == ("oneil", "zoe")
    assert search_words("Ruiz-Ærø") == ("aero", "ruiz")


@pytest.mark.parametrize(("query", "says"), [
    ("", "at least one letter or digit"),
    ("  '- ", "at least one letter or digit"),
    (" ".join("abcdefg"), f"at most {MAX_SEARCH_WORDS} words"),
    ("x" * 201, "at most 200 characters"),
    (7, "must be text"),
])
def test_a_search_with_nothing_to_find_is_invalid_input(query: object, says: str) -> None:
    """An empty, too long or not-text search is a clear error naming the field."""
    with pytest.raises(InvalidInput, match=says) as refused:
        search_words(query)
    assert refused.value.field == "name"


@given(st.text(min_size=1, max_size=6), st.text(max_size=6))
def test_the_prefix_bound_holds_exactly_the_words_that_begin_with_the_prefix(prefix: str, rest: str) -> None:
    """prefix <= word < bound for every word beginning with the prefix, in code point order (UTF-8's too)."""
    bound = prefix_bound(prefix)
    word = prefix + rest
    assert prefix <= word
    if bound is not None:
        assert word < bound or rest.startswith("\U0010ffff")
        assert word.encode("utf-8", "surrogatepass") < bound.encode("utf-8", "surrogatepass") or rest.startswith(
            "\U0010ffff")


@given(st.text(min_size=1, max_size=6), st.text(min_size=1, max_size=6))
def test_a_word_not_beginning_with_the_prefix_is_outside_its_range(prefix: str, word: str) -> None:
    """The range [prefix, bound) holds no word that does not begin with the prefix."""
    bound = prefix_bound(prefix)
    if not word.startswith(prefix) and prefix <= word:
        assert bound is not None and word >= bound
