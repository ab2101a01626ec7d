"""Shared fixtures: a fake clock, an engine on a real SQLite file, the pathway's actors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kapflow.engine import Engine
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kapflow.db'}"


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    store = SqlStore(db_url)
    yield Engine(store, KAP_PATHWAY, clock=clock)
    store.close()


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("KAPFLOW_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KAPFLOW_TEST_POSTGRES_URL is not set; .ci/run sets it to the local PostgreSQL server")
    return url
