"""The README's promises hold: its embedding snippet runs, its Quick start is two commands, its links lead somewhere.

Every Python block of the README and of docs/ also runs in test_docs_examples.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_embedding_snippet_runs(tmp_path: Path) -> None:
    """The Python block under 'Embedding kapflow' runs as written in a fresh folder, and again on its database."""
    block = re.search(r"```python\n(.*?)```", _section("Embedding kapflow"), re.S)
    assert block is not None
    script = tmp_path / "snippet.py"
    script.write_text(block.group(1), encoding="utf-8")
    runs = [
        subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       check=False)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert "evaluation_fee_unpaid - $250 evaluation fee is due" in runs[0].stdout
    assert "Traceback" not in runs[1].stderr


def test_quick_start_is_exactly_two_commands() -> None:
    """Quick start holds one code block with the demo command and the test command."""
    blocks = re.findall(r"```sh\n(.*?)```", _section("Quick start"), re.S)
    assert len(blocks) == 1
    assert blocks[0].split("\n")[:2] == ["make demo", "make test"]
    assert blocks[0].strip().count("\n") == 1


def test_ci_runs_the_quick_start_test_command() -> None:
    """.ci/run calls the same test command the README gives."""
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "\nmake test\n" in ci


def test_readme_links_lead_to_files_in_the_repository() -> None:
    """Each relative link of the README (to docs/*.md, mostly) names a file or folder that exists."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    relative = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert relative, "the README links to its docs pages"
    missing = [t for t in relative if not (README.parent / t).exists()]
    assert not missing


def test_readme_stays_short() -> None:
    """The README is the pitch, the Quick start, one example and links: reference belongs in docs/."""
    assert len(README.read_text(encoding="utf-8").splitlines()) < 150
