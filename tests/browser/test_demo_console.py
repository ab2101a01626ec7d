"""The README's console: ``kapflow demo`` prints how to serve its database and an account per role; the
printed command serves it, and a printed account signs in. The screenshots the README shows are taken
here (``make screenshots`` writes them into docs/images)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

OpenPage = Callable[..., Page]
AxeCheck = Callable[..., list[dict[str, Any]]]
Shot = Callable[[Page, str], Path]
KAPFLOW = [sys.executable, "-m", "kapflow"]
ACCOUNT = re.compile(r"^\s+(demo-[a-z-]+)\s+([a-z ]+?)\s+([0-9a-f]{6}(?:-[0-9a-f]{6}){3})\s*$", re.MULTILINE)


def test_the_demo_prints_a_serve_command_and_accounts_that_sign_in(
    tmp_path: Path, kapflow_server: Callable[..., str], open_page: OpenPage, axe_check: AxeCheck, screenshot: Shot,
) -> None:
    db = tmp_path / "kapflow-demo.db"
    shown = subprocess.run([*KAPFLOW, "--db", f"sqlite:///{db}", "demo"], capture_output=True, text=True,
                           timeout=300, check=True, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"}).stdout
    serve = next(line for line in shown.splitlines() if line.strip().endswith(" serve"))
    args = shlex.split(serve)
    assert args[0] == "kapflow" and args[1] == "--db" and args[3] == "--config"
    accounts = {name: (role, passphrase) for name, role, passphrase in ACCOUNT.findall(shown)}
    assert set(accounts) == {"demo-front-desk", "demo-prescriber", "demo-therapist", "demo-billing", "demo-auditor"}

    base = kapflow_server(args[2], Path(args[4]), upgrade=False)
    page = open_page(1280)
    page.goto(f"{base}/console/")
    page.get_by_label("User name").fill("demo-front-desk")
    page.get_by_label("Password").fill(accounts["demo-front-desk"][1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My work")).to_be_visible()
    axe_check(page)
    screenshot(page, "console-my-work")
    page.get_by_role("link", name="Cases").click()
    page.locator("select#f-state").select_option("inquiry")
    page.get_by_role("button", name="Filter").click()
    page.locator("table.list a").first.click()
    expect(page.get_by_role("heading", name="What can happen next")).to_be_visible()
    axe_check(page)
    screenshot(page, "console-case")
    narrow = open_page(375)
    narrow.context.add_cookies(page.context.cookies())
    narrow.goto(page.url)
    screenshot(narrow, "console-case")
