"""The audit log holds against a database insider: every rewrite made before the newest signed checkpoint
is found, by raw SQL on SQLite and PostgreSQL, and what came after it is "not yet covered", never "ok".

Each scenario is one an insider with write access could carry out, and the per-case chains alone
would miss it (the insider recomputes the hashes and fixes the case row): the test shows the chains
fooled, then the checkpoint file catching it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from raw_db import RawDb, projection_statements
from support import BILLING, FRONT_DESK, INQUIRY, THERAPIST, who

from kapflow.app.audit_log import Checkpointer, Witness
from kapflow.audit import checkpoint_file
from kapflow.audit.chain import GENESIS, link_hash
from kapflow.audit.log_verify import LogReport
from kapflow.audit.merkle import leaf_hash
from kapflow.audit.note import Checkpoint
from kapflow.audit.signing import Ed25519Signer, generate_key, load_verifiers, sign_note
from kapflow.domain.audit_log import CheckpointRecord
from kapflow.domain.case import AuditEvent, replay_events
from kapflow.domain.entries import to_iso
from kapflow.domain.events import EventKind
from kapflow.domain.payload import canonical_json
from kapflow.errors import Refused
from kapflow.testing import ReminderKit

DESK = {"front_desk": {"email": "desk@practice.example"}}
ORIGIN = "practice.example/kapflow-audit"


class Practice:
    """Three cases with payments, refusals and delivered messages, and a signed checkpoint of it all."""

    def __init__(self, url: str, folder: Path) -> None:
        self.kit = ReminderKit(url=url, contacts=DESK)
        self.engine = self.kit.engine
        self.raw = RawDb(url)
        private, public = generate_key("practice-example")
        self.signer = Ed25519Signer.from_text(private)
        self.public = public
        self.file = folder / "checkpoints.jsonl"
        self.checkpoint: Checkpointer = self.engine.checkpointer(
            self.signer, origin=ORIGIN, publish=lambda records: checkpoint_file.publish(self.file, records))
        self.cases = [self._case(i) for i in range(3)]
        self.a, self.b, self.c = self.cases
        assert self.checkpoint() is not None
        assert self.verify().status == "ok"

    def _case(self, number: int) -> str:
        e, clock = self.engine, self.kit.clock
        case_id = e.open_case({**INQUIRY, "first_name": f"Case{number}"}, actor=FRONT_DESK).case_id
        e.book_appointment(case_id, "evaluation", clock.now() + timedelta(days=5), actor=FRONT_DESK, **who(case_id))
        e.fire(case_id, "book_evaluation", actor=FRONT_DESK)
        for _ in range(2):
            with pytest.raises(Refused):
                e.fire(case_id, "discharge", actor=THERAPIST)
        e.record(case_id, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING)
        self.kit.run()  # the booking's notice and calendar change go out: messages and delivery attempts
        clock.advance(timedelta(minutes=1))
        return case_id

    def verify(self, lines: list[str] | None = None) -> LogReport:
        opener = checkpoint_file.note_opener(load_verifiers(self.public))
        return self.engine.verify_log(lines if lines is not None else checkpoint_file.read_lines(self.file), opener)

    def history(self, case_id: str) -> list[AuditEvent]:
        return list(self.engine.history(case_id))

    def rewrite_chain(self, case_id: str, events: list[AuditEvent]) -> None:
        """What an insider does after changing or deleting events: renumber, re-hash, fix the case row."""
        rows = self.raw.rows("SELECT seq FROM audit_events WHERE case_id = :c ORDER BY case_seq", {"c": case_id})
        kept = {ev.seq for ev in events}
        statements: list[tuple[str, dict[str, object]]] = [
            ("DELETE FROM audit_events WHERE seq = :s", {"s": seq}) for (seq,) in rows if seq not in kept
        ]
        previous, fixed = GENESIS, []
        for position, ev in enumerate(events, 1):
            ev = replace(ev, case_seq=-position, prev_hash=previous)  # negative first: the unique (case, seq)
            ev = replace(ev, hash=link_hash(replace(ev, case_seq=position)))
            fixed.append(replace(ev, case_seq=position))
            previous = ev.hash
        for ev in fixed:
            statements.append(("UPDATE audit_events SET case_seq = :n WHERE seq = :s",
                               {"n": -ev.case_seq, "s": ev.seq}))
        for ev in fixed:
            statements.append((
                "UPDATE audit_events SET case_seq = :n, prev_hash = :p, hash = :h, data = :d WHERE seq = :s",
                {"n": ev.case_seq, "p": ev.prev_hash, "h": ev.hash, "d": canonical_json(dict(ev.data)), "s": ev.seq},
            ))
        state, previous_state, version, facts = replay_events(fixed)
        changes = [ev for ev in fixed if ev.kind not in (EventKind.REFUSED, EventKind.REMINDER)]
        statements.append((
            "UPDATE cases SET event_count = :n, head_hash = :h, state = :st, previous_state = :ps, version = :v, "
            "updated_at = :u WHERE id = :c",
            {"n": len(fixed), "h": fixed[-1].hash, "st": state, "ps": previous_state, "v": version,
             "u": to_iso(changes[-1].at), "c": case_id},
        ))
        statements += projection_statements(case_id, facts)
        self.raw.run(*statements)

    def close(self) -> None:
        self.raw.close()
        self.kit.close()


@pytest.fixture
def practice(any_ready_url: str, tmp_path: Path) -> Iterator[Practice]:
    p = Practice(any_ready_url, tmp_path)
    yield p
    p.close()


def _failed_at(report: LogReport, case_id: str | None = None) -> str:
    assert report.status == "failed", report.as_dict()
    first = report.problems[0]
    if case_id is not None:
        assert any(p.case_id == case_id for p in report.problems), report.as_dict()
    return first.reason


def _fooled_chains(practice: Practice) -> None:
    """The per-case chains alone are fooled by the insider's careful rewrite."""
    assert practice.engine.verify_audit().ok, practice.engine.verify_audit().as_dict()


@pytest.mark.parametrize("deleted", [3, 5])
def test_deleting_a_case_s_newest_events_and_fixing_its_row_is_found(practice: Practice, deleted: int) -> None:
    events = practice.history(practice.b)
    practice.rewrite_chain(practice.b, events[:-deleted])
    _fooled_chains(practice)
    reason = _failed_at(practice.verify(), practice.b)
    assert "deleted" in reason or "edited" in reason


def test_a_payment_raised_and_every_later_hash_recomputed_is_found_at_that_event(practice: Practice) -> None:
    events = practice.history(practice.b)
    (paid,) = [i for i, ev in enumerate(events) if ev.kind == EventKind.FACT and ev.data.get("kind") == "payment"]
    fact = {**events[paid].data["fact"], "amount": "2500"}
    events[paid] = replace(events[paid], data={**events[paid].data, "fact": fact})
    practice.rewrite_chain(practice.b, events)
    _fooled_chains(practice)
    report = practice.verify()
    _failed_at(report, practice.b)
    first = report.problems[0]
    assert (first.case_id, first.case_seq) == (practice.b, paid + 1)


def test_removing_every_refused_attempt_and_rehashing_is_found(practice: Practice) -> None:
    events = [ev for ev in practice.history(practice.b) if ev.kind != EventKind.REFUSED]
    practice.rewrite_chain(practice.b, events)
    _fooled_chains(practice)
    _failed_at(practice.verify(), practice.b)


def test_deleting_a_whole_case_is_found(practice: Practice) -> None:
    # Its projection's entries too: entries left behind are named by the chains' verification already.
    practice.raw.run(("DELETE FROM audit_events WHERE case_id = :c", {"c": practice.c}),
                     ("DELETE FROM case_entries WHERE case_id = :c", {"c": practice.c}),
                     ("DELETE FROM cases WHERE id = :c", {"c": practice.c}))
    _fooled_chains(practice)
    assert "gone" in _failed_at(practice.verify())


def test_changing_a_case_s_opened_or_updated_time_is_found(practice: Practice) -> None:
    for column in ("opened_at", "updated_at"):
        practice.raw.run((f"UPDATE cases SET {column} = :t WHERE id = :c",
                          {"t": "2025-01-01T00:00:00.000000+00:00", "c": practice.a}))
        report = practice.engine.verify_audit()
        assert not report.ok and report.problems[0].case_id == practice.a and "time" in report.problems[0].reason


def test_redirecting_a_message_is_found(practice: Practice) -> None:
    (message_id,) = practice.raw.rows("SELECT MIN(id) FROM outbox WHERE channel = 'email'")[0]
    practice.raw.run(("UPDATE outbox SET recipient = :r WHERE id = :i", {"r": "outsider@elsewhere.example",
                                                                          "i": message_id}))
    report = practice.verify()
    assert "message (id" in _failed_at(report) and report.problems[0].position is not None


def test_marking_a_message_unsent_or_sent_is_found(practice: Practice) -> None:
    (message_id,) = practice.raw.rows("SELECT MIN(id) FROM outbox WHERE status = 'sent'")[0]
    practice.raw.run(("UPDATE outbox SET status = 'pending' WHERE id = :i", {"i": message_id}))
    assert f"message {message_id}" in _failed_at(practice.verify())


def test_a_deleted_checkpoint_row_is_found(practice: Practice) -> None:
    practice.raw.run(("DELETE FROM checkpoints", {}))
    report = practice.verify()
    assert "not in the database's checkpoints" in _failed_at(report)


def test_an_edited_checkpoint_file_fails_its_signature(practice: Practice) -> None:
    line = json.loads(practice.file.read_text().splitlines()[0])
    body, sig = line["signed_note"].split("\n\n")
    size = body.split("\n")[1]
    line["signed_note"] = body.replace(f"\n{size}\n", f"\n{int(size) + 1}\n") + "\n\n" + sig
    report = practice.verify([json.dumps(line)])
    assert "does not verify" in _failed_at(report) or "signature" in _failed_at(report)


def test_a_checkpoint_signed_by_another_key_is_refused(practice: Practice) -> None:
    other = Ed25519Signer.from_text(generate_key("practice-example")[0])
    size = practice.engine.store.log().size()
    record = practice.engine.store.log().checkpoints()[-1]
    note = sign_note(Checkpoint(ORIGIN, size, record.root, record.at).body(), other)
    report = practice.verify([json.dumps({"signed_note": note.text()})])
    assert "signature" in _failed_at(report) or "key" in _failed_at(report)


def test_a_forked_log_is_found(practice: Practice) -> None:
    """Two checkpoints of one size with different roots, both signed by the practice's key."""
    record = practice.engine.store.log().checkpoints()[-1]
    forged = sign_note(Checkpoint(ORIGIN, record.size, leaf_hash(b"another history"), record.at).body(),
                       practice.signer)
    lines = [*checkpoint_file.read_lines(practice.file), json.dumps({"signed_note": forged.text()})]
    assert "forked" in _failed_at(practice.verify(lines))


def test_a_full_rewrite_of_the_log_itself_is_found(practice: Practice) -> None:
    """The insider changes a payment, then rebuilds the log and its tree from the rewritten rows: only the
    signed checkpoint outside the database still says what the history was."""
    events = practice.history(practice.a)
    (paid,) = [i for i, ev in enumerate(events) if ev.kind == EventKind.FACT and ev.data.get("kind") == "payment"]
    fact = {**events[paid].data["fact"], "amount": "2.50"}
    events[paid] = replace(events[paid], data={**events[paid].data, "fact": fact})
    practice.rewrite_chain(practice.a, events)
    practice.raw.run(("DELETE FROM log_entries", {}), ("DELETE FROM log_nodes", {}), ("DELETE FROM checkpoints", {}),
                     *[(f"UPDATE {t} SET log_position = NULL", {}) for t in ("audit_events", "outbox",
                                                                              "delivery_attempts")])
    practice.engine.sequence_audit_log()
    practice.checkpoint()  # the insider can even sign, if they hold the key: the file keeps the old head
    _fooled_chains(practice)
    assert "rewritten" in " ".join(p.reason for p in practice.verify().problems)
    assert practice.verify().status == "failed"


def test_changes_after_the_newest_checkpoint_are_not_yet_covered_never_ok(practice: Practice) -> None:
    e = practice.engine
    e.record(practice.a, "payment", {"amount": "165", "purpose": "psychotherapy"}, actor=BILLING)
    (seq,) = practice.raw.rows("SELECT MAX(seq) FROM audit_events")[0]
    practice.raw.run(("UPDATE audit_events SET actor = 'someone-else' WHERE seq = :s", {"s": seq}))
    report = practice.verify()  # edited before any checkpoint covered it: nothing outside can tell
    assert report.status == "not_yet_covered" and report.uncovered == 1 and not report.problems
    e.sequence_audit_log()
    report = practice.verify()
    assert report.status == "not_yet_covered" and report.uncovered == 1
    practice.checkpoint()
    assert practice.verify().status == "ok"


def test_a_checkpoint_with_nothing_new_is_not_signed_twice(practice: Practice) -> None:
    assert practice.checkpoint() is None
    assert isinstance(practice.checkpoint(force=True), CheckpointRecord)
    assert practice.verify().status == "ok"


def test_each_checkpoint_is_mailed_to_the_witness_and_the_mail_is_in_the_log_too(practice: Practice) -> None:
    witnessed = practice.engine.checkpointer(practice.signer, origin=ORIGIN, witnesses=[
        Witness("email", "compliance@practice.example"), Witness("webhook", "witness")])
    practice.engine.record(practice.a, "payment", {"amount": "165", "purpose": "psychotherapy"}, actor=BILLING)
    record = witnessed()
    assert record is not None
    practice.kit.run()
    (mail,) = [m for m in practice.kit.email.sent if m.recipient == "compliance@practice.example"]
    assert record.note in mail.body and mail.subject.endswith(f"{record.size} entries")
    (posted,) = practice.raw.rows("SELECT body FROM outbox WHERE channel = 'webhook' AND audience = 'witness'")
    assert record.note in posted[0]  # the webhook adapter signs what it posts (kapflow.adapters.notify.webhook)
    practice.checkpoint()
    assert practice.verify().status == "ok"


def test_a_rotated_key_keeps_the_old_checkpoints_verifiable(practice: Practice) -> None:
    """After a rotation the public file lists both keys: every checkpoint verifies; the new key alone does not."""
    private, public = generate_key("practice-example-2027")
    rotated = practice.engine.checkpointer(Ed25519Signer.from_text(private), origin=ORIGIN,
                                           publish=lambda records: checkpoint_file.publish(practice.file, records))
    practice.engine.record(practice.a, "payment", {"amount": "165", "purpose": "psychotherapy"}, actor=BILLING)
    assert rotated() is not None
    both = checkpoint_file.note_opener(load_verifiers(practice.public + "\n" + public))
    report = practice.engine.verify_log(checkpoint_file.read_lines(practice.file), both)
    assert report.status == "ok" and len({c.key_id for c in report.checkpoints}) == 2
    only_new = checkpoint_file.note_opener(load_verifiers(public))
    assert "signed" in _failed_at(practice.engine.verify_log(checkpoint_file.read_lines(practice.file), only_new))
