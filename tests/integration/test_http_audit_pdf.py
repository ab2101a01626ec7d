"""``GET /v1/cases/{id}/export?format=pdf`` on a real uvicorn: the case's history as a PDF attachment in the
practice's time zone, for the roles reading everything only, and the read in the access log."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_server import serving
from support import PRESCRIBER, open_case, to_evaluating

from kapflow.audit.signing import Ed25519Signer, generate_key
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.testing import ReminderKit
from kapflow.workflows.kap import KAP_PATHWAY

SCREENING = {"exclusions": [], "flags": ["liver_disease"]}


@pytest.fixture
def served(any_ready_url: str) -> Iterator[tuple[str, dict[str, str], ReminderKit]]:
    kit = ReminderKit(url=any_ready_url, workflows=KAP_PATHWAY, timezone="America/Chicago")
    keys = {role: kit.engine.create_api_key(f"pms-{role}", role, created_by="test-admin")[0]
            for role in ("front_desk", "auditor")}
    try:
        with serving(create_app(kit.engine, RequestAuthenticator(kit.engine))) as base:
            yield base, keys, kit
    finally:
        kit.close()


def test_the_pdf_export_is_an_attachment_in_the_practices_zone(
    served: tuple[str, dict[str, str], ReminderKit], tmp_path: Path,
) -> None:
    base, keys, kit = served
    engine = kit.engine
    case_id = open_case(engine)
    to_evaluating(engine, kit.clock, case_id)
    engine.record(case_id, "screening", SCREENING, actor=PRESCRIBER)
    engine.checkpoint(Ed25519Signer.from_text(generate_key("test-practice")[0]), origin="example.org/kapflow-test")
    auditor = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['auditor']}"}, timeout=30)
    desk = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['front_desk']}"}, timeout=30)
    with auditor, desk:
        pdf = auditor.get(f"/v1/cases/{case_id}/export", params={"format": "pdf"})
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == f'attachment; filename="{case_id}-audit.pdf"'
        assert pdf.content.startswith(b"%PDF-")
        assert desk.get(f"/v1/cases/{case_id}/export", params={"format": "pdf"}).status_code == 403
    assert [(a.role, a.view) for a in engine.accesses(case_id=case_id)].count(("auditor", "export")) == 1
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed; .ci/run installs it")
    path = tmp_path / "history.pdf"
    path.write_bytes(pdf.content)
    text = " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert f"Audit history of case {case_id}" in text and "America/Chicago" in text
    assert "book_evaluation" in text and "fact screening" in text and "liver_disease" in text
    assert "covered" in text and "page 1 of" in text
