"""Every fenced Python block in README.md and docs/ runs, so an example that goes stale fails the suite.

Each block runs as a script of its own (a fresh interpreter, so a fresh namespace) in a temporary
folder, where its ``sqlite:///NAME.db`` is a new file; ``$KAPFLOW_DB`` points there too. A block
that is deliberately only a fragment is marked on the line right before its fence::

    <!-- fragment: why it cannot run on its own -->

and is reported as skipped with that reason; one test per block, named by its page and line, so the
summary says how many ran and how many were fragments.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = frozenset({"python", "py", "python3"})
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LANGUAGE = re.compile(r"^\{?\s*\.?(?P<lang>[\w+-]*)")
_FRAGMENT = re.compile(r"^\s*<!--\s*fragment:(?P<reason>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language, its code, and why it is not run (if so)."""

    page: str
    line: int
    language: str
    code: str
    fragment: str | None

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def fenced_blocks(text: str, page: str) -> list[Block]:
    """Every fenced block of a Markdown page (indented ones too), with the fragment marker before it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: a code fence that is never closed")
        marker = _FRAGMENT.match(lines[i - 1]) if i > 0 else None
        code = "\n".join(_dedent(line, indent) for line in lines[i + 1 : end]) + "\n"
        blocks.append(Block(page, i + 1, _language(info), code, marker["reason"].strip() if marker else None))
        i = end + 1
    return blocks


def _language(info: str) -> str:
    """The language of a fence's info string: ``python`` in ``python title="x"`` or ``{.python}``."""
    found = _LANGUAGE.match(info)
    return found["lang"].lower() if found else ""


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip(" \t")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _python_blocks() -> list[Block]:
    found: list[Block] = []
    for path in _pages():
        blocks = fenced_blocks(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
        found += [b for b in blocks if b.language in PYTHON]
    return found


BLOCKS = _python_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    """The block exits 0 as a script of its own in an empty folder, unless it is marked a fragment."""
    if block.fragment is not None:
        pytest.skip(f"{block.name} is marked a fragment: {block.fragment}")
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {"KAPFLOW_CONFIG", "PYTHONPATH"}}
    env["KAPFLOW_DB"] = f"sqlite:///{tmp_path / 'kapflow.db'}"
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"the example at {block.name} failed:\n{result.stderr}"


def test_every_python_block_is_found() -> None:
    """The parser finds as many Python fences as a plain search does, on README.md and every docs page."""
    loose = re.compile(r"^[ \t]*(?:`{3,}|~{3,})\s*\{?\s*\.?(?:python3?|py)\b", re.M | re.I)
    counts = {p.relative_to(ROOT).as_posix(): len(loose.findall(p.read_text(encoding="utf-8"))) for p in _pages()}
    found: dict[str, int] = {}
    for block in BLOCKS:
        found[block.page] = found.get(block.page, 0) + 1
    assert found == {page: n for page, n in counts.items() if n}
    assert found.get("README.md") == 1, "the README keeps one embedding example"
    assert len(BLOCKS) >= 5


def test_fragment_markers_sit_right_before_a_python_block() -> None:
    """A fragment marker with no Python fence right after it would mark nothing: none is left dangling."""
    for path in _pages():
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if _FRAGMENT.match(line):
                after = _FENCE.match(lines[n + 1]) if n + 1 < len(lines) else None
                language = _language(after["info"].strip()) if after else ""
                assert language in PYTHON, f"{path.name}:{n + 1}: a fragment marker before no Python block"


def test_parser_reads_markers_indentation_and_other_fences() -> None:
    """Markers, indented fences, tildes, longer fences and info strings are read as Markdown means them."""
    page = "\n".join([
        "<!-- fragment: needs an engine -->",
        "```python",
        "engine.fire(case_id, 'hold')",
        "```",
        "1. A list item:",
        "   ```py title=\"setup\"",
        "   import kapflow",
        "   ```",
        "~~~~ {.python}",
        "x = 1",
        "```",
        "~~~~",
        "```sh",
        "make demo",
        "```",
    ])
    blocks = fenced_blocks(page, "page.md")
    assert [(b.line, b.language, b.fragment) for b in blocks] == [
        (2, "python", "needs an engine"), (6, "py", None), (9, "python", None), (13, "sh", None),
    ]
    assert blocks[1].code == "import kapflow\n"
    assert blocks[2].code == "x = 1\n```\n"


def test_api_reference_covers_every_public_name() -> None:
    """docs/api/kapflow.md documents or links every name of ``kapflow.__all__``, so none is left out."""
    import kapflow

    page = (ROOT / "docs" / "api" / "kapflow.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(\w+)`", page)) | set(re.findall(r"^::: kapflow\.(\w+)$", page, re.M))
    assert sorted(set(kapflow.__all__) - named) == []
