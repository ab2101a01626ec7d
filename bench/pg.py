"""The PostgreSQL server the benchmark may use, and a schema of its own that is dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import create_engine, text

ENV = ("KAPFLOW_BENCH_POSTGRES_URL", "KAPFLOW_TEST_POSTGRES_URL")


def postgres_url() -> str | None:
    """The SQLAlchemy URL from the environment (``postgresql://`` becomes ``postgresql+psycopg://``)."""
    for name in ENV:
        url = os.environ.get(name, "").strip()
        if url:
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
    return None


@dataclass(frozen=True)
class Schema:
    name: str
    base_url: str

    @property
    def url(self) -> str:
        """kapflow's URL: every connection's search_path is this schema."""
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options=-csearch_path%3D{self.name}"

    @property
    def dsn(self) -> str:
        """The same server for plain psycopg."""
        return "postgresql://" + self.base_url.split("://", 1)[1]

    @property
    def options(self) -> str:
        return f"-csearch_path={self.name}"


@contextmanager
def bench_schema(base_url: str) -> Iterator[Schema]:
    """A fresh schema ``kapflow_bench_<random>``, dropped with everything in it on the way out."""
    schema = Schema(f"kapflow_bench_{uuid.uuid4().hex[:12]}", base_url)
    admin = create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema.name}"'))
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema.name}" CASCADE'))
        admin.dispose()
