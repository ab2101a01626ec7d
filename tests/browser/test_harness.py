"""The browser harness itself (conftest.py): axe passes a good page and reports a bad one's violations, under
the console's kind of Content-Security-Policy and without JavaScript; screenshots are full-page PNGs of the
viewport's width; contexts are isolated; ``kapflow serve`` starts and stops as a real process.

The pages come from a local ``http.server`` in a thread, sent with a CSP like the console's.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

# The fixtures' types (their precise signatures are in conftest.py).
OpenPage = Callable[..., Page]
AxeCheck = Callable[..., list[dict[str, Any]]]
KapflowServer = Callable[..., str]

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"

# The console's policy (kapflow/http/console/rendering.py): no inline script or style, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# A transparent 1x1 PNG, so images load.
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                      "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")

GOOD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cases - kapflow</title>
<link rel="stylesheet" href="/page.css"><script src="/page.js" defer></script></head>
<body>
<header><a href="/second">Second page</a></header>
<main>
  <h1>Cases</h1>
  <noscript><p id="without-js">Reading works without JavaScript.</p></noscript>
  <img src="/pixel.png" alt="kapflow">
  <form method="get" action="/second">
    <label for="search">Search</label> <input id="search" name="q" type="search">
    <button type="submit">Search</button>
  </form>
</main>
</body>
</html>"""

BAD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Bad page</title><link rel="stylesheet" href="/page.css"></head>
<body>
<main>
  <h1>Bad page</h1>
  <img src="/pixel.png" class="logo">
  <input id="unlabelled" type="text">
</main>
</body>
</html>"""

SECOND = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Second - kapflow</title></head>
<body><main><h1>Second page</h1><p>Read without a script.</p></main></body></html>"""

CSS = "body { font-family: sans-serif; color: #111; background: #fff; } main { min-height: 1500px; }"
JS = "document.body.dataset.js = 'on';"

FILES: dict[str, tuple[str, bytes]] = {
    "/good": ("text/html; charset=utf-8", GOOD.encode()),
    "/bad": ("text/html; charset=utf-8", BAD.encode()),
    "/second": ("text/html; charset=utf-8", SECOND.encode()),
    "/page.css": ("text/css", CSS.encode()),
    "/page.js": ("text/javascript", JS.encode()),
    "/pixel.png": ("image/png", PIXEL),
}


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path not in FILES:
            self.send_error(404)
            return
        kind, body = FILES[path]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        if path == "/second":
            self.send_header("Set-Cookie", "visited=yes; Path=/; HttpOnly; SameSite=Lax")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ------------------------------------------------------------------ axe


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_axe_passes_the_good_page(open_page: OpenPage, axe_check: AxeCheck, site: str, javascript: bool) -> None:
    page = open_page(java_script_enabled=javascript)
    page.goto(f"{site}/good")
    assert axe_check(page) == []  # not even a minor violation
    assert page.evaluate("typeof window.axe.run") == "function"


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_axe_reports_the_bad_pages_violations(open_page: OpenPage, axe_check: AxeCheck, site: str,
                                              javascript: bool) -> None:
    page = open_page(375, java_script_enabled=javascript)
    page.goto(f"{site}/bad")
    with pytest.raises(AssertionError) as failed:
        axe_check(page)
    report = str(failed.value)
    assert f"on {site}/bad" in report
    assert re.search(r"- image-alt \[critical\]: Images must have alternative text .*\n    at img\n", report)
    assert re.search(r"- label \[critical\]: Form elements must have labels .*\n    at #unlabelled$", report)
    # Asked to fail on no impact, it returns every violation instead.
    minor = axe_check(page, impacts=())
    assert {v["id"] for v in minor} >= {"image-alt", "label"}


def test_axe_is_not_blocked_by_the_pages_csp(open_page: OpenPage, axe_check: AxeCheck, site: str) -> None:
    """The page's CSP is in force (an injected inline script is refused), and axe still runs."""
    page = open_page()
    page.goto(f"{site}/good")
    with pytest.raises(PlaywrightError, match="Content Security Policy"):
        page.add_script_tag(content="window.injected = true")
    axe_check(page)


def test_the_vendored_axe_is_the_recorded_one() -> None:
    recorded = (AXE.parent / "VENDORED.md").read_text(encoding="utf-8")
    (sha256,) = re.findall(r"axe\.min\.js sha256 \| `([0-9a-f]{64})`", recorded)
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == sha256
    (version,) = re.findall(r"\| Version \| (\S+) \|", recorded)
    assert AXE.read_text(encoding="utf-8").startswith(f"/*! axe v{version}\n")


# ------------------------------------------------------------------ screenshots


@pytest.mark.parametrize("width", [1280, 375])
def test_screenshots_are_full_page_pngs_of_the_viewports_width(
    open_page: OpenPage, screenshot: Callable[[Page, str], Path], site: str, width: int,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAPFLOW_SCREENSHOTS", str(tmp_path / "shots"))
    page = open_page(width)
    page.goto(f"{site}/good")
    path = screenshot(page, "good")
    assert path == tmp_path / "shots" / f"good-{width}.png"
    png_width, png_height = png_size(path)
    assert png_width == width
    assert png_height >= 1500  # the whole page (main is 1500 px tall), not just the viewport


# ------------------------------------------------------------------ without JavaScript, isolation


def test_a_page_reads_without_javascript(open_page: OpenPage, site: str) -> None:
    scripted = open_page()
    scripted.goto(f"{site}/good")
    scripted.wait_for_function("document.body.dataset.js === 'on'")
    assert not scripted.locator("#without-js").is_visible()

    page = open_page(375, java_script_enabled=False)
    page.goto(f"{site}/good")
    assert page.evaluate("document.body.dataset.js") is None  # its script did not run
    assert page.locator("#without-js").inner_text() == "Reading works without JavaScript."
    page.get_by_role("link", name="Second page").click()
    page.wait_for_url(f"{site}/second")
    assert page.get_by_role("heading", level=1).inner_text() == "Second page"
    page.go_back()
    page.get_by_label("Search").fill("ketamine")
    page.get_by_role("button", name="Search").click()  # a plain GET form submits without a script
    page.wait_for_url(f"{site}/second?q=ketamine")


def test_each_page_has_a_context_of_its_own(open_page: OpenPage, site: str) -> None:
    first, second = open_page(), open_page()
    first.goto(f"{site}/second")
    second.goto(f"{site}/good")
    assert [c["name"] for c in first.context.cookies()] == ["visited"]
    assert second.context.cookies() == []
    assert first.viewport_size == {"width": 1280, "height": 800}
    assert open_page(375).viewport_size == {"width": 375, "height": 812}


# ------------------------------------------------------------------ kapflow serve


def test_kapflow_serve_runs_as_a_real_process(kapflow_server: KapflowServer, open_page: OpenPage,
                                              tmp_path: Path) -> None:
    base = kapflow_server(f"sqlite:///{tmp_path / 'kapflow.db'}")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
    assert httpx.get(f"{base}/readyz", timeout=10).json() == {"status": "ready"}
    page = open_page()
    page.goto(f"{base}/healthz")
    assert '"status":"ok"' in page.content()
