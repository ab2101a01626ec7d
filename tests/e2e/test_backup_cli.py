"""``kapflow db backup FILE`` and ``kapflow db restore FILE`` through the real console script."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

KAPFLOW = Path(sys.executable).parent / "kapflow"  # the console script of the environment running the tests
INTAKE = ('{"first_name": "Sample", "last_name": "Client-One", "date_of_birth": "1988-04-12", '
          '"email": "sample.client@example.org", "concerns": ["depression"]}')


def kapflow(folder: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KAPFLOW_DB", "KAPFLOW_CONFIG"}}
    return subprocess.run([str(KAPFLOW), "--db", url, *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120, check=False, umask=0o022)


@pytest.fixture
def practice(tmp_path: Path) -> str:
    """A SQLite file with two cases opened through the command line."""
    url = f"sqlite:///{tmp_path / 'kapflow.db'}"
    for _ in range(2):
        opened = kapflow(tmp_path, url, "open", "--actor", "fd-avery", "--role", "front_desk", "--data", INTAKE)
        assert opened.returncode == 0, opened.stderr
    return url


def test_backup_then_restore_into_a_new_database(practice: str, tmp_path: Path) -> None:
    """One line each, saying what was copied; the restored database verifies."""
    done = kapflow(tmp_path, practice, "db", "backup", "backup.db")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert re.fullmatch(r"kapflow db: backed up 2 cases and 2 audit events \(\d+\.\d KB\) to backup\.db "
                        r"at \d{4}-\d\d-\d\d \d\d:\d\d UTC\n", done.stdout), done.stdout
    assert stat.S_IMODE((tmp_path / "backup.db").stat().st_mode) == 0o600

    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    back = kapflow(tmp_path, restored, "db", "restore", "backup.db")
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith("kapflow db: restored 2 cases and 2 audit events (revision ")
    assert back.stdout.endswith(f"from backup.db into {tmp_path / 'restored.db'}\n")
    assert stat.S_IMODE((tmp_path / "restored.db").stat().st_mode) == 0o600

    verified = kapflow(tmp_path, restored, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "2 cases, 2 events, ok" in verified.stdout


def test_backup_refuses_to_overwrite_unless_asked(practice: str, tmp_path: Path) -> None:
    """A second backup to the same file is refused (exit 1, one line) until --overwrite."""
    assert kapflow(tmp_path, practice, "db", "backup", "backup.db").returncode == 0
    again = kapflow(tmp_path, practice, "db", "backup", "backup.db")
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == ("kapflow: storage_error: backup.db already exists: give another file name, "
                            "or pass --overwrite to replace it\n")
    assert kapflow(tmp_path, practice, "db", "backup", "backup.db", "--overwrite").returncode == 0


def test_restore_refuses_an_occupied_database_without_replace(practice: str, tmp_path: Path) -> None:
    """A database holding cases is kept unless --replace, and the line says to stop the worker and API."""
    assert kapflow(tmp_path, practice, "db", "backup", "backup.db").returncode == 0
    refused = kapflow(tmp_path, practice, "db", "restore", "backup.db")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith("kapflow: storage_error: the database at ")
    assert "holds 2 cases: pass --replace" in refused.stderr and "the worker and the API" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr

    replaced = kapflow(tmp_path, practice, "db", "restore", "backup.db", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.startswith("kapflow db: restored 2 cases and 2 audit events")


def test_restore_refuses_a_file_that_is_not_a_kapflow_backup(tmp_path: Path) -> None:
    """Exit 1 and one line; no database is created."""
    (tmp_path / "notes.txt").write_text("shopping list")
    url = f"sqlite:///{tmp_path / 'kapflow.db'}"
    refused = kapflow(tmp_path, url, "db", "restore", "notes.txt")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == ("kapflow: storage_error: notes.txt is not a kapflow backup (not a SQLite database): "
                              "check the file name\n")
    assert not (tmp_path / "kapflow.db").exists()


def test_postgresql_is_pointed_to_pg_dump(tmp_path: Path) -> None:
    """No server needed: the answer comes before any connection."""
    done = kapflow(tmp_path, "postgresql+psycopg://kapflow@127.0.0.1:1/kapflow", "db", "backup", "backup.db")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("kapflow: storage_error: kapflow does not copy a PostgreSQL database itself: "
                                  "use pg_dump --format=custom")
    assert "docs/databases.md#backups" in done.stderr
    assert not (tmp_path / "backup.db").exists()
