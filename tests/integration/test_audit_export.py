"""``export_case`` and ``kapflow audit export`` / ``prove`` on a real SQLite database with a signed checkpoint."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BILLING, FRONT_DESK, open_case, to_ready

from kapflow.app.engine import Engine
from kapflow.audit.checkpoint_file import note_opener
from kapflow.audit.export_formats import ExportFormat, read_export, render
from kapflow.audit.proof import prove_export
from kapflow.audit.signing import Ed25519Signer, generate_key, load_verifiers
from kapflow.errors import InvalidInput
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

KAPFLOW = Path(sys.executable).parent / "kapflow"
ORIGIN = "example.org/kapflow-test"


class Practice:
    """Two cases and a signed checkpoint; then one more event on the first case, after the checkpoint."""

    def __init__(self, url: str, clock: FakeClock, folder: Path) -> None:
        self.url = url
        self.store = SqlStore(url)
        self.engine = e = Engine(self.store, KAP_PATHWAY, clock=clock)
        private, public = generate_key("test-practice")
        self.signer = Ed25519Signer.from_text(private)
        self.public_file = folder / "audit.pub"
        self.public_file.write_text(public + "\n", encoding="utf-8")
        self.opener = note_opener(load_verifiers(public))
        self.a = open_case(e)
        self.b = open_case(e, first_name="Bravo")
        to_ready(e, clock, self.a, sessions=2)
        self.first = e.checkpoint(self.signer, origin=ORIGIN)
        e.record(self.a, "payment", {"amount": "250", "purpose": "evaluation_fee"}, actor=BILLING)
        e.fire(self.b, "hold", actor=FRONT_DESK, data={"reason": "vacation"})

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def practice(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Practice]:
    p = Practice(db_url, clock, tmp_path)
    yield p
    p.close()


def test_the_export_proves_and_later_events_are_not_yet_covered(practice: Practice) -> None:
    export = practice.engine.export_case(practice.a)
    history = practice.engine.history(practice.a)
    assert [ev.fields["case_seq"] for ev in export.events] == [ev.case_seq for ev in history]
    assert [ev.hash for ev in export.events] == [ev.hash for ev in history]
    assert export.events[-1].log_position is None and export.events[-1].inclusion_proof is None
    positions = [ev.log_position for ev in export.events[:-1]]
    assert None not in positions and positions == sorted(positions)
    report = prove_export(export, practice.opener)
    assert report.ok, report.as_dict()
    assert (report.proved, report.uncovered) == (len(history) - 1, 1)


def test_each_format_proves_or_reads(practice: Practice) -> None:
    export = practice.engine.export_case(practice.a)
    for form in (ExportFormat.JSONL, ExportFormat.FHIR):
        text = render(export, form)
        assert read_export(text) == export, form
        assert prove_export(text, practice.opener).ok, form
    rows = render(export, ExportFormat.CSV).splitlines()
    assert rows[0].startswith("#checkpoint,")


def test_the_fhir_bundle_parses_back_as_r4b(practice: Practice) -> None:
    from fhir.resources.R4B.auditevent import AuditEvent
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.provenance import Provenance

    export = practice.engine.export_case(practice.a)
    bundle = Bundle.model_validate_json(render(export, ExportFormat.FHIR))
    assert bundle.type == "collection"
    resources = [entry.resource for entry in bundle.entry or ()]
    audits = [r for r in resources if isinstance(r, AuditEvent)]
    provenances = [r for r in resources if isinstance(r, Provenance)]
    assert len(audits) == len(export.events)
    facts = [ev for ev in export.events if ev.fields["kind"] == "fact"]
    assert facts and len(provenances) == len(facts)
    first = audits[0]
    assert first.action == "C" and first.type.code == "110110"
    assert first.agent[0].who.identifier.value == export.events[0].fields["actor"]
    assert first.entity[0].what.identifier.value == practice.a
    details = {d.type for d in first.entity[0].detail}
    assert {"fields", "hash", "log_position", "leaf", "inclusion_proof", "checkpoint"} <= details
    last = {d.type for d in audits[-1].entity[0].detail}
    assert "log_position" not in last  # written after the checkpoint
    assert provenances[-1].target[0].identifier.value == practice.a


def test_an_older_checkpoint_can_be_named_and_an_unknown_size_is_refused(practice: Practice) -> None:
    assert practice.first is not None
    newer = practice.engine.checkpoint(practice.signer, origin=ORIGIN)
    assert newer is not None
    assert prove_export(practice.engine.export_case(practice.a), practice.opener).uncovered == 0
    older = practice.engine.export_case(practice.a, checkpoint_size=practice.first.size)
    assert older.checkpoint.size == practice.first.size
    assert prove_export(older, practice.opener).uncovered == 1
    with pytest.raises(InvalidInput, match=rf"sizes {practice.first.size}, {newer.size}"):
        practice.engine.export_case(practice.a, checkpoint_size=3)


def test_a_database_edit_after_the_checkpoint_fails_the_proof(practice: Practice) -> None:
    import sqlite3

    path = practice.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_events SET actor = 'someone-else' WHERE case_id = ? AND case_seq = 2",
                     (practice.a,))
    conn.close()
    report = prove_export(practice.engine.export_case(practice.a), practice.opener)
    assert not report.ok and report.problem is not None and report.problem.case_seq == 2


def _kapflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KAPFLOW_DB", "KAPFLOW_CONFIG"}}
    return subprocess.run([str(KAPFLOW), *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120, check=False, umask=0o022)


def test_the_cli_exports_and_proves(practice: Practice, tmp_path: Path) -> None:
    url, pub = practice.url, str(practice.public_file)
    for form in ("jsonl", "fhir"):
        out = tmp_path / f"case.{form}"
        done = _kapflow(tmp_path, "--db", url, "audit", "export", "--case", practice.a, "--format", form,
                        "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        proved = _kapflow(tmp_path, "audit", "prove", str(out), "--public-key", pub)
        assert proved.returncode == 0, proved.stderr
        assert "1 not yet covered" in proved.stdout
        shape = json.loads(_kapflow(tmp_path, "audit", "prove", str(out), "--public-key", pub, "--json").stdout)
        assert shape["ok"] and shape["not_yet_covered"] == 1

    printed = _kapflow(tmp_path, "--db", url, "audit", "export", "--case", practice.a, "--format", "csv")
    assert printed.returncode == 0 and printed.stdout.startswith("#checkpoint,")

    edited = tmp_path / "edited.jsonl"
    lines = (tmp_path / "case.jsonl").read_text(encoding="utf-8").splitlines()
    second = json.loads(lines[2])
    second["actor"] = "someone-else"
    edited.write_text("\n".join([*lines[:2], json.dumps(second), *lines[3:]]) + "\n", encoding="utf-8")
    failed = _kapflow(tmp_path, "audit", "prove", str(edited), "--public-key", pub)
    assert failed.returncode == 1
    assert "FAILED at event 2" in failed.stdout


def test_the_cli_refuses_an_unknown_checkpoint_size(practice: Practice, tmp_path: Path) -> None:
    done = _kapflow(tmp_path, "--db", practice.url, "audit", "export", "--case", practice.a, "--checkpoint", "3")
    assert done.returncode == 2
    assert "no checkpoint of size 3" in done.stderr and "Traceback" not in done.stderr
