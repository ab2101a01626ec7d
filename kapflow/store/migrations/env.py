"""Alembic's environment for kapflow, loaded by ``kapflow.store.schema`` (there is no alembic.ini).

``schema`` hands over an open connection in ``config.attributes["connection"]``,
already inside the transaction that holds the migration lock, so the lock, the
revision check and the DDL are one unit. Without one (a bare ``alembic``
command), an engine is built from ``sqlalchemy.url`` with kapflow's settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import kapflow.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from kapflow.store.sql import create_db_engine


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _configure_and_run(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("kapflow migrations need a connection or sqlalchemy.url")
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            connection.execution_options(kapflow_write=True)  # SQLite: BEGIN IMMEDIATE
            _configure_and_run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    # Offline SQL scripts are not offered: a revision check and the lock need a live database.
    raise RuntimeError("kapflow migrations run against a live database only (no --sql mode)")
_run_online()
