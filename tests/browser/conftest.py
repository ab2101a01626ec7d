"""The browser-test harness: Playwright driving Debian's chromium, axe-core checks, screenshots, a real server.

Fixtures (every test of tests/browser/ may ask for them):

- ``browser`` (session): headless chromium, launched through ``executable_path`` (Playwright cannot download
  its own browsers here). Skips, saying ``apt-get install chromium``, when chromium is missing; ``.ci/run``
  installs it, so CI never skips.
- ``open_page(width=1280, height=None, *, java_script_enabled=True, **context_options) -> Page``: a page in a
  fresh browser context (cookies and storage of its own), closed when the test ends. ``width`` is 1280
  (desktop) or 375 (phone); ``context_options`` go to ``Browser.new_context`` (``locale``, ``bypass_csp``...).
- ``axe_check(page, *, impacts=("serious", "critical"), options=None) -> list[dict]``: runs the vendored
  axe-core over the page and fails (AssertionError) listing every violation of those impacts; otherwise
  returns all violations (minor and moderate ones too).
- ``screenshot(page, name) -> Path``: a full-page PNG ``<name>-<width>.png`` in ``$KAPFLOW_SCREENSHOTS``,
  else ``tests/browser/artifacts/`` (git-ignored).
- ``kapflow_server(db_url, config=None, *, upgrade=True) -> str``: ``kapflow serve`` as a real process on
  127.0.0.1 and a free port, once ``/healthz`` answers; returns its base URL. Stopped with SIGTERM when the
  test ends, and the test errors if it did not stop cleanly (or printed a traceback).

axe is injected with ``page.evaluate`` (the DevTools protocol), not ``page.add_script_tag``: the console's
Content-Security-Policy (``script-src 'self'``, no ``'unsafe-inline'``) blocks an injected inline script,
and ``bypass_csp=True`` would test the page under a policy it is not served with. With JavaScript disabled
the page runs no timers, which axe needs: ``axe_check`` then gives the page's window a ``setTimeout`` that
runs short delays as microtasks (nothing else runs in such a page), so pages read without JavaScript are
checked too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from http_server import free_port
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

HERE = Path(__file__).resolve().parent
AXE = HERE / "vendor" / "axe.min.js"
ARTIFACTS = HERE / "artifacts"
SCREENSHOTS_ENV = "KAPFLOW_SCREENSHOTS"
NO_CHROMIUM = "chromium is missing: apt-get install chromium (.ci/run installs it)"
HEIGHTS = {1280: 800, 375: 812}  # a laptop; a phone (375 x 812 CSS pixels)
KAPFLOW = [sys.executable, "-m", "kapflow"]

# True when the page's document was parsed with scripting disabled (<noscript> content is then elements).
_SCRIPTING_OFF = """() => {
  const probe = document.createElement('div');
  probe.innerHTML = '<noscript><i></i></noscript>';
  return probe.querySelector('i') !== null;
}"""
# A page without JavaScript runs no timers; axe waits on setTimeout(..., 0). Short delays run as microtasks;
# longer ones (axe's own time-outs, which only matter when something hangs) never fire.
_TIMERS_AS_MICROTASKS = """() => {
  const later = (fn, ...args) => { Promise.resolve().then(() => fn(...args)); return 0; };
  window.setTimeout = (fn, ms, ...args) => ((Number(ms) || 0) <= 1 ? later(fn, ...args) : 0);
  window.clearTimeout = () => undefined;
}"""
_RUN_AXE = "async (options) => (await window.axe.run(document, options)).violations"


class OpenPage(Protocol):
    def __call__(self, width: int = 1280, height: int | None = None, *, java_script_enabled: bool = True,
                 **context_options: Any) -> Page: ...


class AxeCheck(Protocol):
    def __call__(self, page: Page, *, impacts: Sequence[str] = ("serious", "critical"),
                 options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...


class KapflowServer(Protocol):
    def __call__(self, db_url: str, config: Path | None = None, *, upgrade: bool = True) -> str: ...


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


# ------------------------------------------------------------------ the browser and its pages


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    with sync_playwright() as playwright:
        # Chromium's sandbox cannot run as root; Playwright then passes --no-sandbox (chromium_sandbox=False).
        # Another user gets the sandbox, unless the machine cannot give it one (no user namespaces).
        sandbox = os.geteuid() != 0
        try:
            launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                                  chromium_sandbox=sandbox)
        except PlaywrightError:
            if not sandbox:
                raise
            launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                                  chromium_sandbox=False)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """``open_page(width=1280|375, ...)``: a page in a new context; every context is closed after the test."""
    contexts: list[BrowserContext] = []

    def open_(width: int = 1280, height: int | None = None, *, java_script_enabled: bool = True,
              **context_options: Any) -> Page:
        context = browser.new_context(
            viewport={"width": width, "height": height or HEIGHTS.get(width, 800)},
            java_script_enabled=java_script_enabled, **context_options)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


# ------------------------------------------------------------------ accessibility


def _describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = [" ".join(map(str, n["target"])) if isinstance(n["target"], list) else str(n["target"])
                   for n in v["nodes"]]
        more = f" (+{len(targets) - 3} more)" if len(targets) > 3 else ""
        lines.append(f"- {v['id']} [{v['impact']}]: {v['help']} ({v['helpUrl']})\n"
                     f"    at {', '.join(targets[:3])}{more}")
    return "\n".join(lines)


def run_axe(page: Page, options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every axe violation on ``page`` (axe injected once per document)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        if page.evaluate(_SCRIPTING_OFF):
            page.evaluate(_TIMERS_AS_MICROTASKS)
        page.evaluate(AXE.read_text(encoding="utf-8"))  # a script, evaluated as such: not subject to the CSP
    violations: list[dict[str, Any]] = page.evaluate(_RUN_AXE, dict(options or {}))
    return violations


@pytest.fixture
def axe_check() -> AxeCheck:
    """``axe_check(page)``: fails listing every serious or critical axe violation; returns all violations."""

    def check(page: Page, *, impacts: Sequence[str] = ("serious", "critical"),
              options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        violations = run_axe(page, options)
        failing = [v for v in violations if v.get("impact") in impacts]
        if failing:
            raise AssertionError(f"axe: {len(failing)} {'/'.join(impacts)} violation(s) on {page.url}:\n"
                                 + _describe(failing))
        return violations

    return check


# ------------------------------------------------------------------ screenshots


def screenshots_dir() -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """``screenshot(page, name)``: a full-page PNG ``<name>-<width>.png``; returns its path."""

    def take(page: Page, name: str) -> Path:
        viewport = page.viewport_size
        assert viewport is not None, "the page has no fixed viewport: open it with open_page"
        path = screenshots_dir() / f"{name}-{viewport['width']}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take


# ------------------------------------------------------------------ kapflow serve


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"kapflow serve exited {process.returncode} before answering /healthz:\n"
                               + log.read_text(encoding="utf-8", errors="replace"))
        if time.monotonic() > deadline:
            raise RuntimeError(f"kapflow serve did not answer /healthz within {timeout:.0f} s:\n"
                               + log.read_text(encoding="utf-8", errors="replace"))
        time.sleep(0.1)


@pytest.fixture
def kapflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KapflowServer]:
    """``kapflow_server(db_url, config=None)``: a real ``kapflow serve`` on 127.0.0.1; returns its base URL.

    The database is upgraded first (``kapflow db upgrade``) unless ``upgrade=False``. Its output goes to a
    file (a pipe nobody reads would fill up and stall the server), shown when it fails to start or stop.
    """
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    env = {k: v for k, v in os.environ.items() if k not in ("KAPFLOW_CONFIG", "KAPFLOW_DB")}

    def start(db_url: str, config: Path | None = None, *, upgrade: bool = True) -> str:
        common = [*KAPFLOW, "--db", db_url, *(["--config", str(config)] if config else [])]
        if upgrade:
            done = subprocess.run([*common, "db", "upgrade"], env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            assert done.returncode == 0, f"kapflow db upgrade exited {done.returncode}:\n{done.stderr}"
        port = free_port()
        log = tmp_path_factory.mktemp("kapflow-serve") / "output.log"
        with log.open("wb") as out:
            process = subprocess.Popen([*common, "serve", "--port", str(port)], env=env, stdout=out,
                                       stderr=subprocess.STDOUT)
        started.append((process, log))
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, process, log)
        return base

    yield start
    problems = []
    for process, log in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output = log.read_text(encoding="utf-8", errors="replace")
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught so the exit status tells why.
        if process.returncode not in (0, -signal.SIGTERM) or "Traceback" in output:
            problems.append(f"kapflow serve (pid {process.pid}) exited {process.returncode}:\n{output}")
    assert not problems, "\n".join(problems)
