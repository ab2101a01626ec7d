"""The README's "Run it as a service": ``make serve-demo`` serves the demo practice with an API key, and the
curl it prints fires a trigger."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
from http_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_make_serve_demo_answers_the_curl_it_prints(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "demo.db"
    server = subprocess.Popen(["make", "--no-print-directory", "serve-demo", f"DB={db}", f"PORT={port}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert server.stdout is not None
        line, deadline = "", time.monotonic() + 120
        while not line.startswith("try: ") and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line or server.poll() is None, "make serve-demo stopped before printing its curl"
        command = shlex.split(line.removeprefix("try: "))
        case = re.search(r"/v1/cases/([^/]+)/triggers/hold", line)
        assert case and (db.with_name(db.name + ".key").stat().st_mode & 0o077) == 0  # the key file is private
        key = db.with_name(db.name + ".key").read_text().strip()
        assert command[:4] == ["curl", "-s", "-X", "POST"] and f"127.0.0.1:{port}" in line
        while True:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/cases/{case.group(1)}/triggers/hold",
                                    headers={"Authorization": f"Bearer {key}"},
                                    json={"data": {"reason": "client travelling"}}, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo server did not start"
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["state"] == "on_hold"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)
