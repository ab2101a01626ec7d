"""ICD-10-CM diagnosis codes for the superbill: is a code billable, and what it says.

A payer rejects a claim whose diagnosis is not a billable code (a leaf of the code set: a category or
subcategory coded to its full specificity) of the release in force on the date of service. Checking the
code when it is entered catches typos and headers such as ``F32`` before the claim goes out.

The one module that imports ``simple_icd_10_cm`` (MIT; the CDC's tabular list and code list, shipped in
the package). Callers get plain answers, a sentence or None and a description; the library's types,
exceptions and warnings stay here.
"""

from __future__ import annotations

import re
import warnings
from functools import cache, lru_cache
from typing import Protocol

# The release the pinned package ships: simple-icd-10-cm 1.5.0 loads data/icd10c-tabular-April-1-2026.xml
# (<version>2026</version>) and data/code-list-April-2026.txt, "the April 2026 release of ICD-10-CM" in its
# release notes: the fiscal year 2026 code set (in force from 2025-10-01) with its April 1, 2026 update.
# CMS replaces the code set every October 1: for dates of service from 2026-10-01 the FY2027 code set
# applies, which 1.5.0 (the newest release of the package) does not ship; codes new in FY2027 are refused.
# Moving the pin means checking this (tests/unit/test_icd10cm.py compares it with the package's data file).
ICD10CM_RELEASE = "FY2026, April 1, 2026 update (CDC/CMS, effective 2026-04-01)"
RELEASE_DATA_FILE = "icd10c-tabular-April-1-2026.xml"

_CODE = re.compile(r"([A-Z][0-9A-Z]{2})\.?([0-9A-Z]{1,4})?")  # a category, then up to four more characters
_SHOWN_AT_MOST = 12  # characters of the caller's input repeated in a message: enough for any real code


class _CodeSet(Protocol):
    """The few functions of ``simple_icd_10_cm`` used here, typed (the package ships no type hints)."""

    def is_category_or_subcategory(self, code: str) -> bool: ...
    def is_category(self, code: str) -> bool: ...
    def is_block(self, code: str) -> bool: ...
    def is_chapter(self, code: str) -> bool: ...
    def is_leaf(self, code: str) -> bool: ...
    def get_description(self, code: str) -> str: ...
    def get_descendants(self, code: str) -> list[str]: ...


@cache
def _code_set() -> _CodeSet:
    # Imported on first use, not with kapflow: the import parses the whole code set (a 9.7 MB XML file),
    # about 1.9 s measured, which a CLI command or a worker that never builds a superbill should not pay.
    # After it every lookup is a dictionary look-up (microseconds).
    with warnings.catch_warnings():
        # 1.5.0 reads its data with importlib.resources.read_text (a DeprecationWarning on Python 3.11+) and
        # reports defects in the data as its own UserWarning; neither is the caller's concern, and the test
        # suite turns warnings into errors.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        import simple_icd_10_cm  # type: ignore[import-untyped]
    code_set: _CodeSet = simple_icd_10_cm
    return code_set


def normalize(code: str) -> str:
    """The canonical form of a code: trimmed, upper-case, with the dot after the category (``f329`` → ``F32.9``).

    Only the form is changed; whether the code exists is ``diagnosis_problem``'s question. Text that is not
    shaped like a code (``F30-F39``, ``ABC1.2``) is returned trimmed and upper-cased, otherwise as given.
    """
    text = code.strip().upper()
    match = _CODE.fullmatch(text)
    if match is None:
        return text
    category, rest = match.groups()
    return f"{category}.{rest}" if rest else category


def diagnosis_problem(code: str) -> str | None:
    """None when ``code`` is a billable ICD-10-CM code of ``ICD10CM_RELEASE``; else a sentence saying why not.

    Upper or lower case, with or without the dot. A category or subcategory that has codes below it is
    refused with one of its billable codes as an example; chapters and blocks (``F30-F39``) are not codes.
    """
    return _problem_of(normalize(code))


def describe(code: str) -> str:
    """The description of an ICD-10-CM category or subcategory, billable or not, for the superbill.

    Raises ``ValueError`` when ``code`` is not one (unknown, a block, a chapter, empty).
    """
    normalized = normalize(code)
    code_set = _code_set()
    if not code_set.is_category_or_subcategory(normalized):
        raise ValueError(_not_a_code(normalized))
    return code_set.get_description(normalized)


# Bounded: the keys are whatever callers type; real workloads repeat a few dozen codes.
@lru_cache(maxsize=4096)
def _problem_of(normalized: str) -> str | None:
    code_set = _code_set()
    if not code_set.is_category_or_subcategory(normalized):
        return _not_a_code(normalized)
    if code_set.is_leaf(normalized):
        return None
    kind = "category" if code_set.is_category(normalized) else "subcategory"
    example = _billable_example(normalized)
    return f"{normalized} is a {kind}, not a billable code: give a code to its full specificity, e.g. {example}"


def _not_a_code(normalized: str) -> str:
    if not normalized:
        return "no diagnosis code was given: give a billable ICD-10-CM code"
    shown = _shown(normalized)
    code_set = _code_set()
    if code_set.is_block(normalized):
        return f"{shown} is a block of ICD-10-CM categories, not a code: give one billable code from it"
    if code_set.is_chapter(normalized):
        return f"{shown} is an ICD-10-CM chapter number, not a code: give a billable code"
    return f"{shown} is not an ICD-10-CM code in release {ICD10CM_RELEASE}: check it against the code set"


def _billable_example(normalized: str) -> str:
    """A billable code below ``normalized``: its unspecified one when it has one, else the first.

    The unspecified code is the example because it fits whenever nothing more specific is documented; the
    message asks for full specificity, so a clinician who knows more picks the specific code.
    """
    code_set = _code_set()
    billable = [code for code in code_set.get_descendants(normalized) if code_set.is_leaf(code)]
    unspecified = [code for code in billable if "unspecified" in code_set.get_description(code).lower()]
    # Every category and subcategory that is not itself billable has a billable code below it.
    return (unspecified or billable)[0]


def _shown(text: str) -> str:
    """The caller's input as a message repeats it: whole when short, else cut (a pasted paragraph stays out)."""
    return text if len(text) <= _SHOWN_AT_MOST else text[:_SHOWN_AT_MOST] + "…"
