"""``kapflow db upgrade``, ``db current`` and ``db check`` on a SQLite file, from empty to up to date."""

from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy import text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from kapflow.cli import app
from kapflow.store import schema
from kapflow.store.sql import create_db_engine


def _kapflow(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--db", url, "db", *args])
    return result.exit_code, result.stdout, result.stderr


def _execute(url: str, sql: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            conn.execution_options(kapflow_write=True)
            with conn.begin():
                conn.execute(text(sql))
    finally:
        engine.dispose()


def test_upgrade_current_and_check_from_an_empty_database(db_url: str) -> None:
    """An empty database is behind; upgrade prints from and to; then current says head and check passes."""
    _execute(db_url, "SELECT 1")  # an empty database (for SQLite, the file must exist: reads create none)
    head = schema.head()
    assert _kapflow(db_url, "current") == (0, f"(empty) (not at head {head}: run kapflow db upgrade)\n", "")

    code, out, err = _kapflow(db_url, "check")
    assert code == 1 and "add_table cases" in out
    assert err == f"kapflow: schema_mismatch: the database is at revision (empty), not {head}; run kapflow db upgrade\n"

    assert _kapflow(db_url, "upgrade") == (0, f"kapflow db: upgraded from (empty) to {head}\n", "")
    assert _kapflow(db_url, "upgrade") == (0, f"kapflow db: already at revision {head} (head)\n", "")
    assert _kapflow(db_url, "current") == (0, f"{head} (head)\n", "")
    assert _kapflow(db_url, "check") == (0, f"kapflow db: revision {head}, matches the models\n", "")


def test_check_lists_what_differs_and_exits_1(db_url: str) -> None:
    """A column added by hand is listed, and check fails with one line saying what to do."""
    _kapflow(db_url, "upgrade")
    _execute(db_url, "ALTER TABLE cases ADD COLUMN nickname VARCHAR(20)")
    code, out, err = _kapflow(db_url, "check")
    assert code == 1
    assert out == "  remove_column cases.nickname\n"
    assert err.startswith("kapflow: schema_mismatch: the database differs from the models in 1 place (listed above)")
    assert err.count("\n") == 1


def test_upgrade_stamps_a_database_made_before_migrations(db_url: str) -> None:
    """Tables from the old create_all path are marked as the baseline, not created again."""
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        conn.execution_options(kapflow_write=True)
        with conn.begin():
            SQLModel.metadata.create_all(conn)
    engine.dispose()
    code, out, _err = _kapflow(db_url, "upgrade")
    assert code == 0
    stamped, upgraded = out.splitlines()
    assert stamped == f"kapflow db: tables made before migrations found; marked as revision {schema.BASELINE}"
    assert upgraded in (f"kapflow db: upgraded from {schema.BASELINE} to {schema.head()}",
                        f"kapflow db: already at revision {schema.head()} (head)")
    assert _kapflow(db_url, "check")[0] == 0


def test_an_unreachable_database_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    """A server nobody listens on: exit 1 and one line naming the problem, never the password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://kapflow:s3cret@127.0.0.1:{port}/nowhere"
    for command in ("upgrade", "current", "check"):
        code, _out, err = _kapflow(url, command)
        assert code == 1, command
        assert err.startswith("kapflow: storage_error: cannot ") and err.count("\n") == 1
        assert "s3cret" not in err and "Traceback" not in err
