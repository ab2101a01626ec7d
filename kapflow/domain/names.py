"""Finding a case by its client's name: the words of the name as the search index keeps them.

Staff type what they heard on the phone: "zoe", "Zoë", "o'neil", "ONeil". A name's words are
kept folded (accents dropped, case folded) and a search matches when each word typed begins a
word of the name, so "zo ne" finds Zoë O'Neil. A word joined by an apostrophe or a dot is kept
whole ("oneil") and in its parts ("o", "neil"); a hyphen splits ("Ruiz-Ærø" gives "ruiz", "aero").

The index is a derived table written in the command's own transaction (``name_words``): the
case's intake fact is the truth, and the words follow it whenever it is recorded again.
"""

from __future__ import annotations

import re
import unicodedata

from kapflow.domain.case import CaseFacts
from kapflow.domain.errors import InvalidInput
from kapflow.domain.workflow import Workflow

MAX_WORD = 100  # characters kept of one word (the index column's width)
MAX_SEARCH_WORDS = 5
MAX_SEARCH_CHARS = 200

_SPLIT = re.compile(r"[\s\-‐‑–—/,;]+")  # between words: spaces, hyphens and dashes, slashes, commas
_JOINED = re.compile(r"[^\w]+")  # inside a word: an apostrophe, a dot, anything not a letter or digit
# Letters no decomposition splits, spelt as an English keyboard would type them.
_SPELLED = str.maketrans({"æ": "ae", "ø": "o", "ß": "ss", "đ": "d", "ð": "d", "þ": "th", "ł": "l", "œ": "oe",
                          "ı": "i"})


def fold(text: str) -> str:
    """``text`` without accents, case folded: "Zoë Ærø" -> "zoe aero"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_SPELLED))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> frozenset[str]:
    """The words of a name as the index keeps them (see the module's docstring)."""
    found: set[str] = set()
    for word in _SPLIT.split(fold(text)):
        parts = [p for p in _JOINED.split(word) if p]
        if not parts:
            continue
        found.add("".join(parts)[:MAX_WORD])
        if len(parts) > 1:
            found.update(p[:MAX_WORD] for p in parts)
    return frozenset(found)


def client_name_of(facts: CaseFacts, wf: Workflow) -> str:
    """The client's name: the workflow's name fields of the latest intake fact, joined by spaces ("" if none)."""
    intake = facts.latest(wf.intake_fact)
    if intake is None or not wf.client.name:
        return ""
    return " ".join(str(intake.data[k]) for k in wf.client.name if intake.data.get(k))


def client_words(facts: CaseFacts, wf: Workflow) -> frozenset[str]:
    """The words of the client's name on the case's latest intake fact (none if the workflow names no field)."""
    return words(client_name_of(facts, wf))


def search_words(query: object) -> tuple[str, ...]:
    """The words of a name search, each to match the start of a word of the name; ``InvalidInput`` if none."""
    if not isinstance(query, str):
        raise InvalidInput("name: must be text, e.g. 'zoe' or 'zoe oneil'", field="name")
    if len(query) > MAX_SEARCH_CHARS:
        raise InvalidInput(f"name: at most {MAX_SEARCH_CHARS} characters", field="name")
    # Each word typed narrows the search; its parts are not needed ("o'neil" is found by "oneil").
    typed = sorted({"".join(p for p in _JOINED.split(w) if p) for w in _SPLIT.split(fold(query))} - {""})
    if not typed:
        raise InvalidInput("name: give at least one letter or digit of the client's name", field="name")
    if len(typed) > MAX_SEARCH_WORDS:
        raise InvalidInput(f"name: at most {MAX_SEARCH_WORDS} words", field="name")
    return tuple(w[:MAX_WORD] for w in typed)


def prefix_bound(prefix: str) -> str | None:
    """The least text greater than every text beginning with ``prefix``, in code point order (UTF-8's byte
    order too): a word begins with ``prefix`` exactly when ``prefix <= word < prefix_bound(prefix)``.
    None: no such text (``prefix`` is all U+10FFFF), every text from ``prefix`` on begins with it."""
    if not prefix:
        return None
    last = prefix[-1]
    if ord(last) == 0x10FFFF:
        return prefix_bound(prefix[:-1])
    following = chr(ord(last) + 1)
    if 0xD800 <= ord(following) <= 0xDFFF:  # surrogates cannot be encoded: step over them
        following = chr(0xE000)
    return prefix[:-1] + following
