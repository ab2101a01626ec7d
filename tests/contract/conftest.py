"""Server fixtures for the adapter contract tests: real servers on 127.0.0.1, one per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contract.servers import HttpRecorder, RadicaleServer, SmtpServer


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http_recorder() -> Iterator[HttpRecorder]:
    server = HttpRecorder()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    server = RadicaleServer(tmp_path_factory.mktemp("radicale"))
    server.start()
    yield server
    server.stop()
