"""Shared fixtures: a fake clock, databases on both backends, engines on them, the pathway's actors.

Every test using ``engine`` (or ``any_db_url``, ``any_ready_url``) runs twice: on a SQLite file and on a
PostgreSQL schema of its own. The PostgreSQL run is marked ``postgres`` and skips, saying why, when
``KAPFLOW_TEST_POSTGRES_URL`` is unset (``.ci/run`` sets it).

A fresh schema at the newest revision is the main cost of a PostgreSQL test: Alembic's upgrade takes
~150 ms. So the first one of a session records the DDL the upgrade runs (in a template schema, through
``SqlStore`` itself) and each later one replays it in one transaction (~40 ms), after a check that the
replay builds exactly what the upgrade built. Every test still gets a schema nobody else has touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from argon2 import PasswordHasher
from sqlalchemy import create_engine, event, text

from kapflow.app.engine import Engine
from kapflow.secrets import passwords
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

pytest_plugins = ["skip_summary"]  # skipped tests counted by reason, one line each


POSTGRES_ENV = "KAPFLOW_TEST_POSTGRES_URL"
NO_POSTGRES = f"{POSTGRES_ENV} is not set; .ci/run sets it to the local PostgreSQL server"
_DDL = ("CREATE", "ALTER", "INSERT", "UPDATE", "DELETE", "DROP", "COMMENT")


QUICK_HASHES = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
"""argon2id at its smallest: the console's tests sign in hundreds of times, and the real parameters cost
tens of milliseconds a hash on purpose. tests/unit/test_secrets.py checks the real ones, and the browser
tests' ``kapflow serve`` processes use them."""


@pytest.fixture(autouse=True)
def _quick_password_hashes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.path.name != "test_secrets.py":
        monkeypatch.setattr(passwords, "_hasher", QUICK_HASHES)
        monkeypatch.setattr(passwords, "_dummy", None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A SQLite file (not created yet): for tests about SQLite itself (files, WAL, raw sqlite3)."""
    return f"sqlite:///{tmp_path / 'kapflow.db'}"


# ------------------------------------------------------------------ PostgreSQL


_READER_SIZE = ("COLUMNS", "LINES")


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist's workers start with COLUMNS=80 and LINES=24 whatever the run's own environment, and the CLI
    takes COLUMNS as its reader's width (200 when piped and unset): a worker takes the run's own values back."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # the run itself: its workers are started after this
        for name in _READER_SIZE:
            os.environ[f"KAPFLOW_TEST_RUN_{name}"] = os.environ.get(name, "")
        return
    for name in _READER_SIZE:
        value = os.environ.get(f"KAPFLOW_TEST_RUN_{name}", "")
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)

def schema_url(base: str, schema: str) -> str:
    """``base`` with every connection's search_path set to ``schema``."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


class PostgresSchemas:
    """Makes and drops the test schemas of one session, on one admin connection pool."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.admin = create_engine(base, pool_size=1)
        self._names: dict[str, str] = {}
        self._ddl: list[tuple[str, Any]] | None = None
        self._template: str | None = None

    def create(self) -> str:
        """A new, empty schema; returns a URL whose connections use it."""
        schema = f"kapflow_test_{uuid.uuid4().hex[:12]}"
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = schema_url(self.base, schema)
        self._names[url] = schema
        return url

    def drop(self, url: str) -> None:
        schema = self._names.pop(url)
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def fill(self, url: str) -> None:
        """Bring the empty schema behind ``url`` to the newest revision, as ``SqlStore(url)`` would."""
        if self._template is None:
            self._record_template()
        if self._ddl is None:  # the replay did not match the upgrade: take the slow, sure way
            SqlStore(url).close()
            return
        self._replay(self._names[url])

    def close(self) -> None:
        if self._template is not None:
            with self.admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self._template}" CASCADE'))
        for url in list(self._names):
            self.drop(url)
        self.admin.dispose()

    def _record_template(self) -> None:
        url = self.create()
        self._template = self._names.pop(url)
        seen: list[tuple[str, Any]] = []

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
            if statement.lstrip().upper().startswith(_DDL):
                seen.append((statement, parameters))

        event.listen(sqlalchemy.Engine, "before_cursor_execute", record)
        try:
            SqlStore(url).close()
        finally:
            event.remove(sqlalchemy.Engine, "before_cursor_execute", record)
        self._ddl = seen
        probe = self.create()
        try:
            self._replay(self._names[probe])
            if not seen or self._catalog(self._names[probe]) != self._catalog(self._template):
                self._ddl = None
        finally:
            self.drop(probe)

    def _replay(self, schema: str) -> None:
        assert self._ddl is not None
        with self.admin.begin() as conn:
            conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
            for statement, parameters in self._ddl:
                conn.exec_driver_sql(statement, parameters or ())

    def _catalog(self, schema: str) -> list[tuple[Any, ...]]:
        """Columns, indexes, constraints and the revision of ``schema``, with its name taken out."""
        queries = [
            "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = :s ORDER BY 1, 2",
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s ORDER BY 1, 2",
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = :s ORDER BY 1, 2",
        ]
        with self.admin.connect() as conn:
            rows = [tuple(r) for q in queries for r in conn.execute(text(q), {"s": schema})]
            rows += [tuple(r) for r in conn.execute(text(f'SELECT * FROM "{schema}".alembic_version'))]
        return [tuple(str(v).replace(schema, "<schema>") for v in row) for row in rows]


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(NO_POSTGRES)
    return url


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(NO_POSTGRES)
    schemas = PostgresSchemas(url)
    yield schemas
    schemas.close()


@pytest.fixture
def postgres_schema_url(postgres_schemas: PostgresSchemas) -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema, dropped afterwards: tests never share tables."""
    url = postgres_schemas.create()
    yield url
    postgres_schemas.drop(url)


@pytest.fixture
def postgres_ready_url(postgres_schemas: PostgresSchemas, postgres_schema_url: str) -> str:
    """A fresh schema of its own with kapflow's tables at the newest revision."""
    postgres_schemas.fill(postgres_schema_url)
    return postgres_schema_url


# ------------------------------------------------------------------ both backends


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend in turn: a SQLite file, and a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kapflow.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def any_ready_url(request: pytest.FixtureRequest, any_db_url: str) -> str:
    """``any_db_url`` with kapflow's tables at the newest revision (the same URL, so tests may ask for both)."""
    if any_db_url.startswith("sqlite"):
        SqlStore(any_db_url).close()
    else:
        request.getfixturevalue("postgres_schemas").fill(any_db_url)
    return any_db_url


@pytest.fixture
def engine(any_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    """The KAP pathway with the fake clock, on each backend in turn (``any_db_url`` names its database)."""
    store = SqlStore(any_ready_url)
    yield Engine(store, KAP_PATHWAY, clock=clock)
    store.close()


@pytest.fixture
def sqlite_engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    """The KAP pathway with the fake clock on a SQLite file only: for rules the database plays no part in
    (what is computed, said or refused); what the database must hold (races, indexes, migrations) runs on
    ``engine``, on each backend."""
    store = SqlStore(db_url)
    yield Engine(store, KAP_PATHWAY, clock=clock)
    store.close()


@pytest.fixture
def any_engine(engine: Engine) -> Engine:
    """The same as ``engine`` (both run on each backend)."""
    return engine
