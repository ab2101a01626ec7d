"""The console's vendored htmx (kapflow/http/console/static/): the file VENDORED.md records, htmx 2.0.11, and
shipped in the package (package-data), so the installed kapflow finds it through importlib.resources."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "kapflow" / "http" / "console" / "static"
VERSION = "2.0.11"


def recorded(field: str) -> str:
    """A field of VENDORED.md's table (``| field | `value` |``)."""
    text = (STATIC / "VENDORED.md").read_text(encoding="utf-8")
    values: list[str] = re.findall(rf"^\| {re.escape(field)} \| `?([^`|]+?)`? \|$", text, flags=re.MULTILINE)
    assert len(values) == 1, f"VENDORED.md records {field!r} {len(values)} times"
    return values[0]


def test_htmx_is_the_file_vendored_md_records() -> None:
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == recorded("htmx.min.js sha256")
    assert recorded("Version") == VERSION
    assert recorded("Tarball") == f"https://registry.npmjs.org/htmx.org/-/htmx.org-{VERSION}.tgz"
    assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", recorded("Tarball integrity (`dist.integrity`)"))
    assert "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text(encoding="utf-8")


def test_htmx_is_version_2_0_11() -> None:
    source = (STATIC / "htmx.min.js").read_text(encoding="utf-8")
    assert re.findall(r'version:"([^"]+)"', source) == [VERSION]


def test_the_installed_package_ships_htmx(tmp_path: Path) -> None:
    """Read through importlib.resources here, and by a Python outside the checkout (the installed kapflow)."""
    expected = hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest()
    here = importlib.resources.files("kapflow.http.console").joinpath("static/htmx.min.js").read_bytes()
    assert hashlib.sha256(here).hexdigest() == expected

    read = ("import hashlib, importlib.resources as r, kapflow; "
            "f = r.files('kapflow.http.console').joinpath('static/htmx.min.js'); "
            "print(kapflow.__file__); print(hashlib.sha256(f.read_bytes()).hexdigest())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, "-c", read], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (
        f"the installed kapflow cannot read static/htmx.min.js (reinstall: make install):\n{done.stderr}")
    package, digest = done.stdout.split()
    assert Path(package).parent != ROOT / "kapflow", (
        "the installed kapflow is the source tree (a non-strict editable install): nothing shows the package data "
        "would be in a wheel; install with make install (editable_mode=strict)")
    assert digest == expected, "the installed htmx.min.js is not the vendored one: reinstall (make install)"
