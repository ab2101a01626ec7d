"""The console's pages at scale: a case's page and a filtered page of the case list, on a SQLite database
of many cases, timed by the server itself.

Template cases go through the engine, one in each of three states (an inquiry, an evaluation booked, a
case ready for its KAP sessions, with its whole story so far); ``clone.clone_case`` copies each until
the database holds ``console_cases`` cases (100k in full mode), a third in each state, opened 5 minutes
apart. uvicorn serves
``create_app(..., console=ConsoleConfig())`` in a thread of this process; one keep-alive ``httpx``
client, signed in as a therapist, then asks for

- ``case_page``: ``GET /console/cases/{id}`` of a case picked at random (its diagram, actions, forms,
  appointments and timeline; one access-log row: a commit);
- ``case_list``: ``GET /console/cases?state=ready_for_kap&cursor=...``: a page of 50 cases of one state
  (with the count per state), at a cursor picked at random through the list;
- ``name_search``: ``POST /console/cases/search`` of a first name and the start of a last name (each case
  is given a synthetic name of 60 first names by 600 last names, its words written as the engine would).

Each figure is the median of the ``Server-Timing`` the server reports (from the request's arrival to its
answer, inside the process): the console's own time, without the client's or the network's.
"""

from __future__ import annotations

import random
import re
import sqlite3
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from api import serving
from clone import clone_case
from measure import Sizes
from paths import FRONT_DESK, INTAKE, PATH, THERAPIST, fire_path, new_clock, prepare_case

from kapflow.app.engine import Engine
from kapflow.app.queries import _encode_cursor
from kapflow.domain.entries import to_iso
from kapflow.http.app import create_app
from kapflow.http.console.pages import ConsoleConfig
from kapflow.http.identity import RequestAuthenticator
from kapflow.store.sql import SqlStore
from kapflow.workflows.kap import KAP_PATHWAY

LISTED_STATE = "ready_for_kap"
_TIMING = re.compile(r"app;dur=([0-9.]+)")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def build(directory: Path, cases: int) -> tuple[Path, list[str]]:
    """A database of ``cases`` cases in three states; returns its path and the ready cases' ids."""
    path = directory / "console.db"
    clock = new_clock()
    store = SqlStore(f"sqlite:///{path}")
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock)
        inquiry = engine.open_case(dict(INTAKE), actor=FRONT_DESK).case_id
        booked = prepare_case(engine, clock)
        engine.fire(booked, "book_evaluation", actor=FRONT_DESK)
        ready = _ready_case(engine, clock)
    finally:
        store.close()
    third = max(1, (cases - 3) // 3)
    ready_ids = [f"case-cready-{i:07d}" for i in range(third)]
    for template, prefix in ((inquiry, "case-cinq"), (booked, "case-cbook")):
        clone_case(path, template, [f"{prefix}-{i:07d}" for i in range(third)])
    clone_case(path, ready, ready_ids)
    _spread_openings(path)
    _index_names(path)
    return path, [ready, *ready_ids]


def _spread_openings(path: Path) -> None:
    """Copies share their template's opening time; a practice opens cases minutes apart. The list's keyset
    (opened_at, id) then orders them as in life, instead of sorting one tie of a third of the database."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    with sqlite3.connect(path) as conn:
        ids = [case_id for (case_id,) in conn.execute("SELECT id FROM cases ORDER BY id")]
        conn.executemany("UPDATE cases SET opened_at = ? WHERE id = ?",
                         [(to_iso(base + timedelta(minutes=5 * n)), case_id) for n, case_id in enumerate(ids)])


FIRST = [a + b for a in ("al", "be", "ca", "da", "el", "fa", "ga", "ha", "jo", "ka") for b in ("ra", "ne", "li",
                                                                                              "mo", "sa", "vi")]
LAST = [a + b + c for a in ("bar", "cor", "dal", "fen", "gor", "hal", "kin", "lor", "mar", "nor")
        for b in ("e", "i", "o", "u", "a", "y") for c in ("ck", "n", "s", "t", "ll", "rd", "m", "x", "th", "z")]


def _index_names(path: Path) -> None:
    """Each case a synthetic name (one of 60 first names by 600 last names), its words in ``name_words``
    as the engine writes them when it opens a case (the clones copy no words)."""
    with sqlite3.connect(path) as conn:
        ids = [case_id for (case_id,) in conn.execute("SELECT id FROM cases ORDER BY id")]
        conn.execute("DELETE FROM name_words")
        rows = [(word, case_id) for n, case_id in enumerate(ids)
                for word in (FIRST[n % len(FIRST)], LAST[(n * 7919) % len(LAST)])]
        conn.executemany("INSERT INTO name_words (word, case_id) VALUES (?, ?)", rows)


def _ready_case(engine: Engine, clock: Any) -> str:
    case_id = prepare_case(engine, clock)
    steps = [s.trigger for s in PATH]
    fire_path(engine, clock, [case_id])  # the whole path: its story so far, then back to ready_for_kap
    if engine.case(case_id).state != LISTED_STATE:
        raise RuntimeError(f"the template case ended in {engine.case(case_id).state}, not {LISTED_STATE} "
                           f"(path: {', '.join(steps)})")
    return case_id


def _server_ms(response: httpx.Response) -> float:
    found = _TIMING.search(response.headers.get("server-timing", ""))
    if response.status_code != 200 or found is None:
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} without a Server-Timing")
    return float(found.group(1))


def run(sizes: Sizes, directory: Path) -> dict[str, Any]:
    """The ``console`` section of results.json."""
    cases = sizes.history_cases * 5  # 100k in full mode, 10k quick
    samples = max(20, sizes.history_samples // 4)
    started = time.perf_counter()
    path, ready = build(directory, cases)
    build_s = time.perf_counter() - started
    store = SqlStore(f"sqlite:///{path}", create=False)
    engine = Engine(store, KAP_PATHWAY)
    rng = random.Random(7)
    try:
        token, _ = engine.open_session(THERAPIST.id, THERAPIST.role, via="oidc")
        app = create_app(engine, RequestAuthenticator(engine), ready=lambda: None, console=ConsoleConfig())
        with serving(app) as url, httpx.Client(base_url=url, timeout=60,
                                              cookies={"kapflow-session": token}) as client:
            ordered = sorted(ready)
            for case_id in ordered[:3]:  # warm up: compiled statements, templates
                _server_ms(client.get(f"/console/cases/{case_id}"))
            page_ms = [_server_ms(client.get(f"/console/cases/{rng.choice(ready)}")) for _ in range(samples)]
            list_ms = []
            for _ in range(samples):
                after = engine.case(rng.choice(ordered))
                cursor = _encode_cursor(to_iso(after.opened_at), after.id)
                list_ms.append(_server_ms(client.get("/console/cases", params={
                    "state": LISTED_STATE, "cursor": cursor})))
            csrf = _CSRF.search(client.get("/console/cases").text)
            if csrf is None:
                raise RuntimeError("the case list has no form with a CSRF token")
            search_ms = [_server_ms(client.post("/console/cases/search", data={
                "csrf": csrf.group(1), "name": f"{rng.choice(FIRST)} {rng.choice(LAST)[:3]}"}))
                for _ in range(samples)]
    finally:
        store.close()
    return {
        "case_page_ms_p50": statistics.median(page_ms),
        "case_list_ms_p50": statistics.median(list_ms),
        "case_page_ms_max": max(page_ms),
        "case_list_ms_max": max(list_ms),
        "name_search_ms_p50": statistics.median(search_ms),
        "name_search_ms_max": max(search_ms),
        "cases": cases,
        "samples": samples,
        "database_mb": path.stat().st_size / 2**20,
        "build_s": build_s,
        "measures": "the Server-Timing of GET /console/cases/{id} (a random case ready for KAP, its whole story) and "
        f"of GET /console/cases?state={LISTED_STATE}&cursor=... (a page of 50 at a random cursor, with the counts "
        "per state), and of POST /console/cases/search (a first name and the start of a last name), signed in as "
        "a therapist, on SQLite"
        + ("" if cases >= 100_000 else f"; {cases:,} cases, not 100k ({sizes.name} mode)"),
    }
