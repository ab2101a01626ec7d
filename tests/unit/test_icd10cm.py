"""ICD-10-CM diagnosis codes: billable leaves pass; categories, blocks and unknown codes get a sentence."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from kapflow.codesets.icd10cm import ICD10CM_RELEASE, RELEASE_DATA_FILE, describe, diagnosis_problem, normalize

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the subprocess imports its kapflow/
BILLABLE = ("F32.9", "F33.1", "F41.1", "F43.10", "F43.12", "Z71.89", "F32.A", "F99")


@pytest.mark.parametrize("code", BILLABLE)
def test_billable_codes_pass(code: str) -> None:
    """Codes to their full specificity are billable (F99 is a category with no subcategories, a leaf)."""
    assert diagnosis_problem(code) is None


@pytest.mark.parametrize(("typed", "canonical"), [
    ("f32.9", "F32.9"), ("F329", "F32.9"), ("  f4310 ", "F43.10"), ("f43.12", "F43.12"), ("z7189", "Z71.89"),
    ("f32a", "F32.A"), ("F32", "F32"), ("f32.", "F32"), ("t400x1a", "T40.0X1A"),
])
def test_lower_case_and_no_dot_are_accepted(typed: str, canonical: str) -> None:
    """Case, surrounding spaces and the dot do not matter; the canonical form has the dot after the category."""
    assert normalize(typed) == canonical
    if canonical != "F32":
        assert diagnosis_problem(typed) is None


@pytest.mark.parametrize("text", ["F30-F39", "ABC1.2", "F3.29", "", "hello world"])
def test_normalize_leaves_what_is_not_shaped_like_a_code(text: str) -> None:
    """Text that is not a code's shape is only trimmed and upper-cased."""
    assert normalize(f" {text} ") == text.upper()


@pytest.mark.parametrize(("code", "kind", "example"), [
    ("F32", "category", "F32.9"), ("f43.1", "subcategory", "F43.10"), ("F43", "category", None),
    ("B99", "category", "B99.9"), ("S72.001", "subcategory", None),
])
def test_a_header_is_refused_with_a_billable_example(code: str, kind: str, example: str | None) -> None:
    """A category or subcategory with codes below it is not billable; the sentence names one that is."""
    problem = diagnosis_problem(code)
    assert problem is not None
    assert problem.startswith(f"{normalize(code)} is a {kind}, not a billable code") and "full specificity" in problem
    suggested = problem.rsplit("e.g. ", 1)[1]
    assert suggested.startswith(normalize(code)) and diagnosis_problem(suggested) is None
    if example is not None:
        assert suggested == example


@pytest.mark.parametrize("code", ["F99.99", "ABC", "F32.99", "Z99.999", "12345", "F32..9", "F3.29"])
def test_unknown_codes_are_refused_naming_the_release(code: str) -> None:
    """A code the code set does not have: the sentence says so and names the release checked."""
    problem = diagnosis_problem(code)
    assert problem is not None and "is not an ICD-10-CM code" in problem and ICD10CM_RELEASE in problem


@pytest.mark.parametrize("code", ["", "   "])
def test_an_empty_code_is_refused(code: str) -> None:
    """Nothing given: the sentence asks for a billable code."""
    problem = diagnosis_problem(code)
    assert problem is not None and "no diagnosis code" in problem


def test_blocks_and_chapters_are_not_codes() -> None:
    """A block (a range of categories) and a chapter number are refused as what they are."""
    block = diagnosis_problem("F30-F39")
    chapter = diagnosis_problem("5")
    assert block is not None and "block" in block and "not a code" in block
    assert chapter is not None and "chapter" in chapter and "not a code" in chapter


def test_a_long_input_is_not_repeated_whole() -> None:
    """A pasted paragraph is cut in the sentence."""
    problem = diagnosis_problem("X" * 200)
    assert problem is not None and "X" * 13 not in problem


def test_describe_gives_the_code_set_description() -> None:
    """The description for the superbill, in any accepted form of the code; headers have one too."""
    assert describe("F43.12") == "Post-traumatic stress disorder, chronic"
    assert describe("f329") == "Major depressive disorder, single episode, unspecified"
    assert describe("F32") == "Depressive episode"


@pytest.mark.parametrize("code", ["F99.99", "ABC", "", "F30-F39", "5"])
def test_describe_refuses_what_is_not_a_code(code: str) -> None:
    """A ValueError with this module's sentence, not the library's ("does not exist")."""
    with pytest.raises(ValueError, match=r"not a code|not an ICD-10-CM code|no diagnosis code") as info:
        describe(code)
    assert "does not exist" not in str(info.value)


def test_the_release_matches_the_installed_package_data() -> None:
    """ICD10CM_RELEASE names the data file the installed package ships: a moved pin must update it."""
    shipped = {file.name for file in metadata.files("simple-icd-10-cm") or ()}
    assert RELEASE_DATA_FILE in shipped
    month, day, year = RELEASE_DATA_FILE.removesuffix(".xml").split("-")[-3:]
    assert f"{month} {day}, {year}" in ICD10CM_RELEASE


def test_importing_the_module_does_not_load_the_code_set() -> None:
    """The code set (seconds to parse) loads at the first look-up, not when kapflow is imported."""
    script = "import sys, kapflow.codesets.icd10cm; print('simple_icd_10_cm' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120, cwd=ROOT
    )
    assert done.stdout.strip() == "False"
