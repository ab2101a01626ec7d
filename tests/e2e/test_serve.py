"""``kapflow serve`` as a practice runs it: a real process, an API key, one request, SIGTERM; its OpenAPI
document is the one checked into docs/ (so a change to the API shows in review)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from http_server import free_port
from support import INQUIRY

from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "api" / "openapi.json"
KAPFLOW = [sys.executable, "-m", "kapflow"]


def _kapflow(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KAPFLOW, "--db", db, *args], capture_output=True, text=True, timeout=60, check=False)


def test_serve_answers_with_an_api_key_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'kapflow.db'}"
    assert _kapflow(db, "db", "upgrade").returncode == 0
    created = _kapflow(db, "apikey", "create", "--name", "pms", "--role", "front_desk")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    port = free_port()
    server = subprocess.Popen([*KAPFLOW, "--db", db, "serve", "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={k: v for k, v in os.environ.items() if k != "KAPFLOW_CONFIG"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr and server.stderr.read()
            time.sleep(0.1)
        opened = httpx.post(f"{base}/v1/cases", json={"intake": INQUIRY},
                            headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert opened.status_code == 201 and opened.json()["state"] == "inquiry"
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught so the exit status tells why.
    assert server.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, err
    assert "kfk_" not in out + err and INQUIRY["last_name"] not in out + err  # no key, no PHI in its output


@pytest.mark.parametrize(("args", "says"), [
    (["serve", "--host", "0.0.0.0"], "needs TLS"),
    (["serve", "--workers", "2"], "need PostgreSQL"),
    (["serve", "--tls-cert", "cert.pem"], "go together"),
])
def test_serve_refuses_an_unsafe_or_impossible_setup(tmp_path: Path, args: list[str], says: str) -> None:
    done = _kapflow(f"sqlite:///{tmp_path / 'kapflow.db'}", *args)
    assert done.returncode == 2 and says in done.stderr


def test_the_openapi_document_in_docs_is_current(tmp_path: Path) -> None:
    """Regenerate with: python -m kapflow.http.openapi > docs/api/openapi.json"""
    engine = build_engine(f"sqlite:///{tmp_path / 'kapflow.db'}", settings=Settings())
    try:
        served = create_app(engine, RequestAuthenticator(engine)).openapi()
    finally:
        engine.close()
    assert json.loads(OPENAPI.read_text(encoding="utf-8")) == served, (
        "the API changed: regenerate docs/api/openapi.json with python -m kapflow.http.openapi")
