"""Kept views the store keeps (``StoredView``): a case read cold with a snapshot of its appointments or its ledger
steps the snapshot by the facts since and gets what a fold of every fact gets; snapshots come due every
``SNAPSHOT_EVERY`` facts of their kinds; one this code cannot read is folded instead."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapflow.domain.appointments import STANDARD, appointments, stored_appointments
from kapflow.domain.billing import Service, ledger, ledger_snapshot, stored_ledger, summary
from kapflow.domain.case import CaseFacts, Snapshot, fold_fact, stored_projection
from kapflow.domain.entries import SNAPSHOT_EVERY, Entries
from kapflow.domain.errors import StorageError
from kapflow.domain.payload import canonical_json
from kapflow.workflows.kap.billing import KAP_BILLING

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CASE = "case-1"
SERVICES = ("evaluation", "integration_session", "kap_session")


def _booking(n: int) -> tuple[str, dict[str, Any]]:
    starts = T0 + timedelta(days=n, hours=n % 5)
    return "appointment", {"kind": "integration_session", "starts_at": starts.isoformat(), "minutes": 50,
                           "clinician": f"th-{n % 3}", "location": "in_person"}


def _update(target: int, action: str, n: int) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {"appointment": f"a{target}", "action": action}
    if action == "reschedule":
        data["starts_at"] = (T0 + timedelta(days=n + 2)).isoformat()
    return "appointment_update", data


def _charge(n: int, service: str, fee: int) -> tuple[str, dict[str, Any]]:
    return "charge", {"visit": f"a{n}", "service": service, "description": service, "units": 1, "fee": f"{fee}.00",
                      "insurance": n % 2 == 0, "date_of_service": date(2026, 3, 1 + n % 27).isoformat(),
                      "minutes": 53, "clinician": "th-1"}


# One fact of a case: a booking, a change to an earlier booking, a charge, a payment, an adjustment, or a fact no
# kept view reads.
facts_of_a_case = st.lists(st.one_of(
    st.builds(lambda n: _booking(n), st.integers(0, 60)),
    st.builds(lambda t, a, n: _update(t, a, n), st.integers(1, 12),
              st.sampled_from(("reschedule", "cancel", "no_show", "attended")), st.integers(0, 60)),
    st.builds(lambda n, s, f: _charge(n, s, f), st.integers(0, 40), st.sampled_from(SERVICES), st.integers(0, 400)),
    st.builds(lambda a, p: ("payment", {"amount": f"{a}.00", "purpose": p}), st.integers(1, 300),
              st.sampled_from(("", "evaluation_fee", "psychotherapy"))),
    st.builds(lambda c, a, x: ("billing_adjustment", {"charge": f"c{c}", "action": a, "reason": "r",
                                                      "amount": f"{x}.00"}),
              st.integers(1, 8), st.sampled_from(("void", "write_off", "refund")), st.integers(1, 50)),
    st.just(("vitals", {"phase": "pre_dose", "systolic": 120, "diastolic": 80})),
), max_size=60)


def _raw(entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    raw: dict[str, Any] = stored_projection([], [])
    for n, (kind, data) in enumerate(entries):
        raw = fold_fact(raw, kind, T0 + timedelta(minutes=n), "staff-1", data)
    return raw


def _cold(raw: dict[str, Any], snapshots: dict[str, Snapshot]) -> CaseFacts:
    """The projection a store's cold read makes: the entries' texts, undecoded, and the snapshots read."""
    return CaseFacts({"facts": Entries(list(raw["facts"].texts)), "moves": Entries([])}, snapshots)


def _snapshots(raw: dict[str, Any], count: int) -> dict[str, Snapshot]:
    """The snapshots a fold of the first ``count`` facts makes, as the store would hold them."""
    before = CaseFacts({"facts": raw["facts"][:count], "moves": []})
    kept = stored_appointments(CASE, STANDARD)
    return {kept.name: Snapshot(count, canonical_json(kept.encode(appointments(CASE, before)))),
            stored_ledger(KAP_BILLING).name: Snapshot(count, ledger_snapshot(before, KAP_BILLING))}


@settings(max_examples=150, deadline=None)
@given(facts_of_a_case, st.data())
def test_a_view_stepped_from_its_snapshot_is_the_view_folded(entries: list[tuple[str, dict[str, Any]]],
                                                            data: st.DataObject) -> None:
    raw = _raw(entries)
    count = data.draw(st.integers(1, max(1, len(entries))), label="facts the snapshots cover")
    if count > len(entries):
        return
    folded = CaseFacts(raw)
    cold = _cold(raw, _snapshots(raw, count))
    # What commands read without decoding a snapshot's settled lines and attended appointments, first:
    books, whole = ledger(cold, KAP_BILLING), ledger(folded, KAP_BILLING)
    billed = [c.id for c in whole.charges if int(c.id[1:]) % 3 == 0]
    assert summary(books, billed) == summary(whole, billed) and books.posted() == whole.posted()
    assert [books.charge(c.id) for c in whole.charges] == list(whole.charges)
    book, booked = appointments(CASE, cold), appointments(CASE, folded)
    for statuses in (("booked",), ("booked", "cancelled"), ("attended", "no_show")):
        assert book.select(statuses) == booked.select(statuses)
        assert book.select(statuses, "integration_session") == booked.select(statuses, "integration_session")
    assert book.changed_since({}) == list(booked.values())
    assert appointments(CASE, cold) == appointments(CASE, folded)
    assert ledger(cold, KAP_BILLING) == ledger(folded, KAP_BILLING)


def test_a_cold_read_decodes_only_the_facts_since_the_snapshot() -> None:
    entries = [_booking(n) for n in range(40)] + [_update(3, "attended", 41), _booking(42)]
    raw = _raw(entries)
    cold = _cold(raw, _snapshots(raw, 40))
    found = appointments(CASE, cold)
    assert len(found) == 41 and found["a3"].status == "attended"
    stored: Entries = cold.raw["facts"]
    assert [n for n in range(len(entries)) if stored._decoded[n] is not None] == [40, 41]


def test_a_snapshot_this_code_cannot_read_is_folded_instead() -> None:
    entries = [*(_booking(n) for n in range(20)), _charge(1, "integration_session", 165),
               ("payment", {"amount": "9.00"})]
    raw = _raw(entries)
    folded = CaseFacts(raw)
    names = list(_snapshots(raw, 20))
    for body in ("{", '[["a1"]]', '[["a1","k","not a time",50,"booked",0,"x","y","","",null]]', '{"charges": 5}',
                 '{"charges":[],"entries":[],"totals":["x","0","0","0"],"settled":0}', "null"):
        for count in (20, len(entries) + 1, 0):
            cold = _cold(raw, {name: Snapshot(count, body) for name in names})
            assert appointments(CASE, cold) == appointments(CASE, folded)
            assert ledger(cold, KAP_BILLING) == ledger(folded, KAP_BILLING)



def test_a_snapshot_part_read_when_asked_and_edited_by_hand_is_read_from_the_facts() -> None:
    """A ledger's settled lines and statement, and its appointments, are decoded only when something asks: one that
    cannot be read then (a hand's edit, which verification names) is taken from a fold of the facts."""
    entries = [*(_booking(n) for n in range(3)), _update(1, "attended", 4), _charge(1, "integration_session", 165),
               ("payment", {"amount": "165.00", "purpose": "psychotherapy"}), _charge(2, "integration_session", 165)]
    raw = _raw(entries)
    folded = CaseFacts(raw)
    snapshots = _snapshots(raw, len(entries))
    name = stored_ledger(KAP_BILLING).name
    held = json.loads(snapshots[name].body)
    assert held["settled"] == 1  # the first line is paid: kept as its row
    edits = [("fee", lambda b: b["charges"][0].__setitem__(7, "x")),
             ("date of service", lambda b: b["charges"][0].__setitem__(9, "not a day")),
             ("statement", lambda b: b.__setitem__("entries", "[[1]]"))]
    for what, edit in edits:
        body = json.loads(snapshots[name].body)
        edit(body)
        cold = _cold(raw, {**snapshots, name: Snapshot(len(entries), canonical_json(body))})
        books, whole = ledger(cold, KAP_BILLING), ledger(folded, KAP_BILLING)
        assert summary(books, ()) == summary(whole, ()), what
        assert books == whole and books.entries == whole.entries, what
    appts = stored_appointments(CASE, STANDARD).name
    rows = json.loads(snapshots[appts].body)
    rows[0][2] = "not a time"  # the attended appointment, read only when asked for
    cold = _cold(raw, {**snapshots, appts: Snapshot(len(entries), canonical_json(rows))})
    book = appointments(CASE, cold)
    assert book.select(("booked",)) == appointments(CASE, folded).select(("booked",))
    assert book["a1"] == appointments(CASE, folded)["a1"] and book == appointments(CASE, folded)
    kept = appointments(CASE, _cold(raw, {**snapshots, appts: Snapshot(len(entries), canonical_json(rows))}))
    # Its projection is gone (a view holds it weakly): nothing to fold from, so the error says what to do.
    with pytest.raises(StorageError, match="appointments of case case-1 cannot be read: run kapflow audit verify"):
        kept["a1"]


def test_projections_sharing_a_cold_read_decode_its_snapshots_once() -> None:
    """A record's projections (the one read, those a command folds after it, one built again from the record) share
    the views a snapshot decodes to: none decodes it again, or folds a year of facts because another decoded it."""
    entries = [_booking(n) for n in range(2 * SNAPSHOT_EVERY)] + [_charge(1, "integration_session", 165)]
    raw = _raw(entries)
    snapshots = _snapshots(raw, len(entries))
    first, second = _cold(raw, snapshots), CaseFacts(_cold(raw, {}).raw, snapshots)
    assert appointments(CASE, second) is appointments(CASE, first)
    books = ledger(first, KAP_BILLING)
    assert ledger(second, KAP_BILLING).posted() == books.posted()
    assert ledger(second, KAP_BILLING) is books  # the fold decoded once, its ledger made once
    assert ledger(second, KAP_BILLING) == ledger(CaseFacts(raw), KAP_BILLING)
    stored: Entries = second.raw["facts"]
    assert all(decoded is None for decoded in stored._decoded)  # the second read no fact: no fold


def test_snapshots_come_due_every_so_many_facts_of_their_kinds() -> None:
    """Facts of other kinds do not count; once due and returned, the next is due that many facts of its kinds on."""
    raw: dict[str, Any] = stored_projection([], [])
    view = CaseFacts(raw)
    due_at: list[int] = []
    for n in range(3 * SNAPSHOT_EVERY):
        for kind, data in (_booking(n), ("vitals", {"phase": "pre_dose", "systolic": 120, "diastolic": 80})):
            raw = fold_fact(raw, kind, T0 + timedelta(minutes=2 * n), "staff-1", data)
            view = view.extended(raw, "facts")
            appointments(CASE, view)  # a command works the view out
            due = view.snapshots_due()
            if due:
                (name, snapshot), = due.items()
                assert name == stored_appointments(CASE, STANDARD).name
                assert snapshot.fact_count == len(raw["facts"])
                assert snapshot.body == canonical_json(stored_appointments(CASE, STANDARD).encode(
                    appointments(CASE, CaseFacts(raw))))
                due_at.append(n + 1)
            assert view.snapshots_due() == {}  # returned once: it is the latest now
    assert due_at == [SNAPSHOT_EVERY, 2 * SNAPSHOT_EVERY, 3 * SNAPSHOT_EVERY]


def test_a_projection_read_with_a_snapshot_is_due_only_after_more_facts() -> None:
    """The snapshot a cold read stepped from counts as the latest: the command after it writes none."""
    entries = [_booking(n) for n in range(SNAPSHOT_EVERY + 3)]
    raw = _raw(entries)
    cold = _cold(raw, _snapshots(raw, SNAPSHOT_EVERY))
    appointments(CASE, cold)
    assert cold.snapshots_due() == {}
    fresh = CaseFacts({"facts": Entries(list(raw["facts"].texts)), "moves": Entries([])})
    appointments(CASE, fresh)
    assert list(fresh.snapshots_due()) == [stored_appointments(CASE, STANDARD).name]


def test_the_ledger_view_is_named_by_what_its_fold_reads() -> None:
    """The same in any process; another payment purpose for a service (which the fold reads) names another
    view; a change the fold does not read (a fee) names the same one."""
    name = stored_ledger(KAP_BILLING).name
    printed = subprocess.run(
        [sys.executable, "-c", "from kapflow.domain.billing import stored_ledger;"
         "from kapflow.workflows.kap.billing import KAP_BILLING; print(stored_ledger(KAP_BILLING).name)"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert printed == name
    therapy = KAP_BILLING.services["integration_session"]
    purposed = replace(KAP_BILLING, services={**KAP_BILLING.services,
                                               "integration_session": replace(therapy, purpose="other")})
    assert stored_ledger(purposed).name != name
    priced: Service = replace(therapy, fee=therapy.fee + 1)
    assert stored_ledger(replace(KAP_BILLING, services={**KAP_BILLING.services, "integration_session": priced})
                         ).name == name
