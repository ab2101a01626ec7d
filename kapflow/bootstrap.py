"""The composition root: the one place an ``Engine`` is assembled from a URL, workflows and ports."""

from __future__ import annotations

import os
from collections.abc import Sequence

from kapflow.domain.workflow import Workflow
from kapflow.engine import Engine
from kapflow.ports import Clock
from kapflow.store.sql import SqlStore

DEFAULT_DB_URL = "sqlite:///kapflow.db"


def database_url(url: str | None = None) -> str:
    """The URL given, else ``$KAPFLOW_DB``, else a SQLite file ``kapflow.db`` here."""
    return url or os.environ.get("KAPFLOW_DB") or DEFAULT_DB_URL


def build_engine(
    url: str | None = None,
    workflows: Workflow | Sequence[Workflow] | None = None,
    *,
    clock: Clock | None = None,
) -> Engine:
    """An engine on a database (default: a SQLite file) running the KAP pathway unless told otherwise."""
    if workflows is None:
        from kapflow.workflows.kap import KAP_PATHWAY

        workflows = KAP_PATHWAY
    return Engine(SqlStore(database_url(url)), workflows, clock=clock)
