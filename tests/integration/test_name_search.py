"""Finding cases by the client's name, in the engine, the API and the console, on SQLite and PostgreSQL.

The words of the name are indexed in the command that opens the case and follow a corrected intake; a
search matches when each word typed begins a word of the name, accents and case aside. The name travels
in a POST body, never in a URL, and only roles that read the intake may search by it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from console_support import Console, console_serving
from http_server import serving
from sqlalchemy import text
from support import FRONT_DESK, INQUIRY, open_case
from typer.testing import CliRunner

from kapflow.app.engine import Engine
from kapflow.cli import app as cli_app
from kapflow.domain.errors import InvalidInput, NotPermitted
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.store import schema
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.kap.definition import BILLING, READ_ACCESS


def named(engine: Engine, clock: FakeClock, first: str, last: str) -> str:
    clock.advance(minutes=1)  # the list's order is the opening order
    return open_case(engine, first_name=first, last_name=last)


def found(engine: Engine, name: str, **filters: object) -> list[str]:
    return [c.id for c in engine.case_page(name=name, limit=100, **filters).cases]  # type: ignore[arg-type]


def words_of(engine: Engine, case_id: str) -> set[str]:
    store = engine.app.store
    assert isinstance(store, SqlStore)
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT word FROM name_words WHERE case_id = :c"), {"c": case_id})
        return {str(w) for (w,) in rows}


def test_a_name_is_found_by_the_start_of_its_words_accents_and_case_aside(engine: Engine, clock: FakeClock) -> None:
    zoe = named(engine, clock, "Zoë", "O'Neil")
    zora = named(engine, clock, "Zora", "Ruiz-Ærø")
    neil = named(engine, clock, "Neil", "Sample")
    assert found(engine, "zo") == [zoe, zora]
    assert found(engine, "ZOE") == [zoe]
    assert found(engine, "zoë o'neil") == [zoe]
    assert found(engine, "neil") == [zoe, neil]  # O'Neil's part, and a first name
    assert found(engine, "zo aer") == [zora]  # every word must match: Zoë has no word starting "aer"
    assert found(engine, "ruiz") == [zora]
    assert found(engine, "sampl neil") == [neil]
    assert found(engine, "nobody") == []
    assert found(engine, "eil") == []  # from the start of a word, not within it
    assert words_of(engine, zoe) == {"zoe", "oneil", "o", "neil"}


def test_a_corrected_intake_replaces_the_words(sqlite_engine: Engine, clock: FakeClock) -> None:
    case_id = named(sqlite_engine, clock, "Zoe", "Misspelt")
    sqlite_engine.record(case_id, "inquiry", {**INQUIRY, "first_name": "Zoe", "last_name": "Spelt"}, actor=FRONT_DESK)
    assert found(sqlite_engine, "misspelt") == []
    assert found(sqlite_engine, "spelt") == [case_id]
    assert words_of(sqlite_engine, case_id) == {"zoe", "spelt"}


def test_a_name_combines_with_state_and_pages_with_the_cursor(engine: Engine, clock: FakeClock) -> None:
    sams = [named(engine, clock, "Sam", f"Client-{n}") for n in range(5)]
    named(engine, clock, "Other", "Client-9")
    for case_id in sams[1::2]:
        engine.fire(case_id, "withdraw", actor=FRONT_DESK, data={"reason": "moved away"})
    assert found(engine, "sam", state="withdrawn") == [sams[1], sams[3]]
    assert found(engine, "sam client", state="inquiry") == [sams[0], sams[2], sams[4]]
    first = engine.case_page(name="sam", limit=2)
    assert [c.id for c in first.cases] == sams[:2] and first.next_cursor
    rest = engine.case_page(name="sam", limit=3, cursor=first.next_cursor)
    assert [c.id for c in rest.cases] == sams[2:] and rest.next_cursor
    assert engine.case_page(name="sam", limit=3, cursor=rest.next_cursor).cases == []


def test_a_search_with_no_letter_is_invalid_input(sqlite_engine: Engine) -> None:
    for bad in ("", " - ", "x" * 201):
        with pytest.raises(InvalidInput) as refused:
            sqlite_engine.case_page(name=bad)
        assert refused.value.field == "name"


def test_only_a_role_that_reads_the_intake_may_search_by_name(sqlite_engine: Engine) -> None:
    sqlite_engine.check_name_search("front_desk")
    sqlite_engine.check_name_search("billing", "kap")
    with pytest.raises(NotPermitted, match=r"role 'system' may not do 'search_by_name'; allowed roles: .*front_desk"):
        sqlite_engine.check_name_search("system")


def test_cases_opened_before_the_index_are_indexed_by_the_upgrade(any_ready_url: str, clock: FakeClock) -> None:
    """A database at 0010 holding cases is upgraded by ``kapflow db upgrade``, which indexes their names."""
    store = SqlStore(any_ready_url)
    engine = Engine(store, KAP_PATHWAY, clock=clock)
    ids = [named(engine, clock, "Early", f"Client-{n}") for n in range(3)]
    with store.engine.begin() as conn:  # as a database made by kapflow at revision 0010 has them: no index
        conn.execute(text("DELETE FROM name_words"))
    assert found(engine, "early") == []
    store.close()
    schema.downgrade(any_ready_url, "0010")
    assert schema.current(any_ready_url) == "0010"
    result = CliRunner().invoke(cli_app, ["--db", any_ready_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "indexed the client names of 3 case(s)" in result.output
    store = SqlStore(any_ready_url)
    engine = Engine(store, KAP_PATHWAY, clock=clock)
    assert found(engine, "early") == ids
    assert engine.index_client_names() == 0  # nothing left to do: safe to run again
    store.close()


# ------------------------------------------------------------------ the API and the console

BARRED = replace(KAP_PATHWAY, version="name-barred", read_access={**READ_ACCESS, BILLING: frozenset({"payment"})})


@pytest.fixture
def barred(any_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    """A practice whose billing role may not read the intake (a stricter minimum necessary)."""
    store = SqlStore(any_ready_url)
    yield Engine(store, BARRED, clock=clock)
    store.close()


def test_the_api_searches_by_name_in_the_body_and_refuses_a_role_that_may_not_read_it(
    barred: Engine, clock: FakeClock
) -> None:
    zoe = named(barred, clock, "Zoë", "Sample")
    desk_key = barred.create_api_key("pms-desk", "front_desk", created_by="test-admin")[0]
    billing_key = barred.create_api_key("pms-billing", "billing", created_by="test-admin")[0]
    with serving(create_app(barred, RequestAuthenticator(barred))) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {desk_key}"}, timeout=30) as desk:
            answer = desk.post("/v1/cases/search", json={"name": "zoe"})
            assert answer.status_code == 200, answer.text
            assert [(c["id"], c["client"]) for c in answer.json()["cases"]] == [(zoe, "Zoë Sample")]
            assert desk.post("/v1/cases/search", json={"name": "zoe", "state": "withdrawn"}).json()["cases"] == []
            empty = desk.post("/v1/cases/search", json={"name": " ' "})
            assert empty.status_code == 422 and "name" in empty.text and "Zoë" not in empty.text
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {billing_key}"}, timeout=30) as billing:
            refused = billing.post("/v1/cases/search", json={"name": "zoe"})
            assert refused.status_code == 403, refused.text
            assert "search_by_name" in refused.text and "Zoë" not in refused.text and zoe not in refused.text


@pytest.fixture
def console(barred: Engine) -> Iterator[Console]:
    with console_serving(barred) as served:
        yield served


def test_the_console_searches_by_name_with_a_posted_form(barred: Engine, clock: FakeClock, console: Console) -> None:
    from kapflow.http.console.pages import CASES_PAGE

    ids = [named(barred, clock, "Zoë", f"Client-{n:03d}") for n in range(CASES_PAGE + 1)]
    other = named(barred, clock, "Other", "Person")
    with console.signed_in("desk-1") as b:
        page = b.get("/console/cases").text
        assert re.search(r'<form method="post" action="/console/cases/search"[^>]*role="search"', page)
        assert re.search(r'<label for="f-name">Client.s name</label>\s*<input id="f-name" name="name"', page)
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        first = b.post("/console/cases/search", data={"csrf": token.group(1), "name": "zoe"})
        assert first.status_code == 200
        assert ids[0] in first.text and ids[CASES_PAGE - 1] in first.text and ids[CASES_PAGE] not in first.text
        assert other not in first.text and "Zoë Client-000" in first.text
        cursor = re.search(r'name="cursor" value="([^"]+)"', first.text)
        assert cursor and 'name="name" value="zoe"' in first.text  # the next page posts the name again
        second = b.post("/console/cases/search", data={"csrf": token.group(1), "name": "zoe",
                                                       "cursor": cursor.group(1)})
        assert ids[CASES_PAGE] in second.text and ids[0] not in second.text
        forged = b.post("/console/cases/search", data={"csrf": "forged", "name": "zoe"})
        assert forged.status_code == 403 and ids[0] not in forged.text
    with console.signed_in("billing-1") as b:
        page = b.get("/console/cases").text
        assert 'action="/console/cases/search"' not in page  # no form for a role that may not search
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        refused = b.post("/console/cases/search", data={"csrf": token.group(1), "name": "zoe"})
        assert refused.status_code == 403 and ids[0] not in refused.text
