"""Shared fixtures: a fake clock, an engine on a real SQLite file, the pathway's actors."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

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


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema, dropped afterwards: tests never share tables."""
    schema = f"kapflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on a SQLite file and on a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kapflow.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def any_engine(any_db_url: str, clock: FakeClock) -> Iterator[Engine]:
    """An engine on each backend in turn, with the fake clock."""
    store = SqlStore(any_db_url)
    yield Engine(store, KAP_PATHWAY, clock=clock)
    store.close()
