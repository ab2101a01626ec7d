"""CPU time of groups of processes, read from ``/proc/<pid>/stat`` (Linux; elsewhere every group reads None).

The service's scaling figure shares two cores between the servers it measures, PostgreSQL and the clients
loading them: how busy each group keeps the cores tells whether a figure is the service's or the machine's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Matcher = Callable[[str, int], bool]
"""Whether a process belongs to a group, from its command name and its session id."""


def _stat_fields(pid_dir: Path) -> tuple[str, list[str]] | None:
    """(command name, the fields after it) of one process, or None if it has gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    open_, close = text.find("("), text.rfind(")")  # the name may hold spaces and parentheses
    return text[open_ + 1:close], text[close + 2:].split()


def cpu_by_process(match: Matcher) -> dict[int, float] | None:
    """User and system CPU seconds of each live process ``match`` accepts, by pid; None where /proc is not there."""
    if not (_PROC / "self" / "stat").exists():
        return None
    found: dict[int, float] = {}
    for pid_dir in _PROC.iterdir():
        if not pid_dir.name.isdigit():
            continue
        fields = _stat_fields(pid_dir)
        if fields is None:
            continue
        name, rest = fields
        # After the name: state, ppid, pgrp, session, ... utime is the 12th, stime the 13th (proc(5)).
        if match(name, int(rest[3])):
            found[int(pid_dir.name)] = (int(rest[11]) + int(rest[12])) / _TICKS
    return found


def group_cpu_s(match: Matcher) -> float | None:
    """CPU seconds of every live process ``match`` accepts, in all; None where /proc is not there."""
    found = cpu_by_process(match)
    return None if found is None else sum(found.values())


def in_session(session: int) -> Matcher:
    """The processes of one session (a server started with ``start_new_session``: it and its workers)."""
    return lambda _name, sid: sid == session


def postgres_processes(name: str, _session: int) -> bool:
    """PostgreSQL's processes on this machine: the backends and the writers that do their WAL and checkpoints."""
    return name == "postgres" or name.startswith("postgres:")
