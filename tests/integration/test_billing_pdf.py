"""A superbill and a Good Faith Estimate rendered to PDF and read back with poppler (pdftotext, pdftoppm):
every field an insurer or a client needs is on the page with its value, accents survive, a long superbill
runs onto more pages with its table heading repeated, and the same view gives the same bytes. Every name,
number and address is synthetic.

Page 1 of each document is also rendered to PNG, into ``$KAPFLOW_SCREENSHOTS`` when set (for a person to
look at) or the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kapflow.documents import estimate_pdf, superbill_pdf
from kapflow.domain.billing_documents import (
    GFE_DISCLAIMER,
    GFE_DISPUTE_NOTICE,
    ClientDetails,
    Clinician,
    Diagnosis,
    EstimateLine,
    GoodFaithEstimateView,
    Party,
    SuperbillLine,
    SuperbillView,
)

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
    reason="poppler-utils (pdftotext, pdftoppm) is not installed: apt-get install poppler-utils",
)

PRACTICE = Party(
    name="Example Integrative Therapy Group, PLLC",
    address_lines=("1200 Example Avenue, Suite 305", "Springfield, OR 97477"),
    phone="(555) 010-2233", tax_id="12-3456789", npi="1234567893",
)
CLINICIAN = Clinician(name="Renée Exampleton-Søndergaard", credentials="PhD, LPC", npi="1987654320")
CLIENT = ClientDetails(
    name="Zoë Ñúñez-Ærø", date_of_birth=date(1987, 4, 3),
    address_lines=("45 Sample Street, Apt 2B", "Eugene, OR 97401"), phone="(555) 010-9876",
)
DIAGNOSES = (
    Diagnosis("F33.1", "Major depressive disorder, recurrent, moderate"),
    Diagnosis("F43.10", "Post-traumatic stress disorder, unspecified"),
)
STATEMENT = ("The medication and monitoring portion of each session was provided at no charge; only the "
             "psychotherapy is billed.")
FIRST_DAY = date(2026, 3, 2)


def superbill(lines: int = 3) -> SuperbillView:
    services = []
    for n in range(lines):
        long_session = n % 2 == 0
        services.append(SuperbillLine(
            date_of_service=FIRST_DAY + timedelta(days=n),
            place_of_service="11",
            code="90837" if long_session else "90834",
            modifiers=("95",) if n % 3 == 2 else (),
            units=1,
            fee=Decimal("1485.00") if long_session else Decimal("180.00"),
            diagnosis_pointers=("A", "B") if long_session else ("A",),
            description="Integration psychotherapy, 60 min" if long_session else "Psychotherapy, 45 min",
        ))
    charged = sum((s.fee for s in services), Decimal("0.00"))
    paid = Decimal("200.00")
    return SuperbillView(
        practice=PRACTICE, clinician=CLINICIAN, client=CLIENT, diagnoses=DIAGNOSES, lines=tuple(services),
        charged=charged, paid=paid, balance=charged - paid,
        period=(FIRST_DAY, services[-1].date_of_service), issued_on=services[-1].date_of_service + timedelta(days=1),
        statement=STATEMENT, reference="SB-2026-000042",
    )


def estimate() -> GoodFaithEstimateView:
    lines = (
        EstimateLine("Psychiatric diagnostic evaluation", "90791", 1, Decimal("250.00"), Decimal("250.00"), ""),
        EstimateLine("Preparation psychotherapy, 60 min", "90837", 2, Decimal("175.00"), Decimal("350.00"),
                     "Before the first medication session"),
        EstimateLine("Integration psychotherapy, 60 min", "90837", 6, Decimal("175.00"), Decimal("1050.00"), ""),
        EstimateLine("Medication and monitoring", None, 6, Decimal("0.00"), Decimal("0.00"),
                     "Provided at no charge"),
    )
    return GoodFaithEstimateView(
        practice=PRACTICE, clinician=CLINICIAN, client=ClientDetails(
            name=CLIENT.name, date_of_birth=CLIENT.date_of_birth, address_lines=CLIENT.address_lines, phone=""),
        diagnoses=DIAGNOSES[:1], lines=lines, total=Decimal("1650.00"), issued_on=date(2026, 2, 16),
        expected_from=date(2026, 3, 2), reference="GFE-2026-000017", disclaimer=GFE_DISCLAIMER,
        dispute_notice=GFE_DISPUTE_NOTICE,
    )


def pdf_text(pdf: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def flat(text: str) -> str:
    """The text with runs of white space as one space: wrapped paragraphs read as one line."""
    return " ".join(text.split())


def page_one_png(pdf: bytes, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ["KAPFLOW_SCREENSHOTS"]) if os.environ.get("KAPFLOW_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    source = tmp_path / f"{name}-source.pdf"
    source.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(source),
                    str(folder / name)], check=True, capture_output=True)
    return folder / f"{name}.png"


def test_a_superbill_carries_every_field_an_insurer_needs(tmp_path: Path) -> None:
    view = superbill(3)
    text = pdf_text(superbill_pdf(view), tmp_path, "superbill")
    words = flat(text)
    assert "Superbill (statement for insurance reimbursement)" in words
    for expected in ("Example Integrative Therapy Group, PLLC", "1200 Example Avenue, Suite 305",
                     "Springfield, OR 97477", "(555) 010-2233", "Tax ID (EIN): 12-3456789",
                     "NPI (group, type 2): 1234567893",
                     "Renée Exampleton-Søndergaard", "Credentials: PhD, LPC", "NPI (individual, type 1): 1987654320",
                     "Zoë Ñúñez-Ærø", "Date of birth: 04/03/1987", "45 Sample Street, Apt 2B", "Eugene, OR 97401",
                     "(555) 010-9876",
                     "A. F33.1 Major depressive disorder, recurrent, moderate",
                     "B. F43.10 Post-traumatic stress disorder, unspecified",
                     "Total charged $3,150.00", "Total paid $200.00", "Balance due $2,950.00",
                     STATEMENT, "Reference SB-2026-000042", "Issued 03/05/2026", "Page 1 of 1",
                     "Services from: 03/02/2026 to 03/04/2026"):
        assert expected in words, expected
    rows = [line for line in text.splitlines() if re.match(r"\s*\d\d/\d\d/\d{4}\s+11\s", line)]
    assert len(rows) == 3
    for row, line in zip(rows, view.lines, strict=True):
        cells = row.split()
        assert cells[0] == f"{line.date_of_service:%m/%d/%Y}"
        assert cells[1] == "11" and cells[2] == line.code
        assert cells[-1] == f"${line.fee:,.2f}"
        tail = " ".join(cells[-5:])
        pointers = ", ".join(line.diagnosis_pointers)
        assert f" {line.units} {pointers} ${line.fee:,.2f}" in " " + tail, row
        assert " ".join(line.modifiers) in row
        assert line.description.split(",")[0] in row
    heading = re.search(r"^\s*Date of\s+POS\s+CPT\s+Modifiers\s+Description\s+Units\s+Diagnosis\s+Fee\s*\n"
                        r"\s*service\s+pointer\s*$", text, flags=re.MULTILINE)
    assert heading, "the table's heading row"


def test_a_good_faith_estimate_carries_its_lines_total_and_notices(tmp_path: Path) -> None:
    view = estimate()
    words = flat(pdf_text(estimate_pdf(view), tmp_path, "estimate"))
    for expected in ("Good Faith Estimate", "Reference GFE-2026-000017", "Issued: 02/16/2026",
                     "Expected start of care: 03/02/2026", "Example Integrative Therapy Group, PLLC",
                     "Tax ID (EIN): 12-3456789", "1234567893", "1987654320", "Zoë Ñúñez-Ærø",
                     "Date of birth: 04/03/1987", "A. F33.1 Major depressive disorder, recurrent, moderate",
                     "Psychiatric diagnostic evaluation 90791 1 $250.00 $250.00",
                     "90837 2 $175.00 $350.00 Before the first medication session",
                     "Integration psychotherapy, 60 min 90837 6 $175.00 $1,050.00",
                     "Medication and monitoring \u2014 6 $0.00 $0.00 Provided at no charge",
                     "Total estimated cost $1,650.00", "is not a contract", "does not require you to obtain",
                     "$400 more than this Good Faith Estimate", "120 calendar days", "www.cms.gov/nosurprises",
                     "1-800-985-3059", "Page 1 of"):
        assert expected in words, expected
    assert flat(GFE_DISCLAIMER) in words and flat(GFE_DISPUTE_NOTICE) in words
    assert words.count("Phone:") == 1 and "Phone: (555) 010-2233" in words  # the practice's: the client has none


def test_a_long_superbill_repeats_its_table_heading_on_every_page(tmp_path: Path) -> None:
    view = superbill(40)
    pdf = superbill_pdf(view)
    pages = pdf_text(pdf, tmp_path, "long").split("\f")
    pages = [page for page in pages if page.strip()]
    assert len(pages) >= 2
    total = len(pages)
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {total}" in page
        assert re.search(r"Date of\s.*POS\s+CPT\s+Modifiers", page), f"no table heading on page {number}"
    assert "Page 2 of" in pages[1]
    assert "Zoë Ñúñez-Ærø" in pages[1]  # the running head names the client on every later page
    dates = re.findall(r"^\s*(\d\d/\d\d/\d{4})\s+11\s", "\n".join(pages), flags=re.MULTILINE)
    assert dates == [f"{line.date_of_service:%m/%d/%Y}" for line in view.lines]
    assert "Balance due $" in flat(pages[-1])


def test_the_same_view_gives_the_same_bytes() -> None:
    assert superbill_pdf(superbill(3)) == superbill_pdf(superbill(3))
    assert estimate_pdf(estimate()) == estimate_pdf(estimate())
    assert superbill_pdf(superbill(3)) != superbill_pdf(superbill(4))


def test_the_metadata_name_no_one(tmp_path: Path) -> None:
    path = tmp_path / "superbill.pdf"
    path.write_bytes(superbill_pdf(superbill(3)))
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout \
        if shutil.which("pdfinfo") else ""
    if info:
        assert re.search(r"^Title:\s+Superbill \(statement for insurance reimbursement\) SB-2026-000042$", info,
                         flags=re.MULTILINE)
        assert "Author:" not in info
        assert re.search(r"^Page size:\s+612 x 792 pts \(letter\)$", info, flags=re.MULTILINE)
        assert "Zo" not in info and "Exampleton" not in info
    raw = path.read_bytes()
    assert b"/Author" not in raw


def test_the_fonts_are_subset(tmp_path: Path) -> None:
    """Only the glyphs used are embedded: a page is far smaller than the font files."""
    assert len(superbill_pdf(superbill(3))) < 120_000


def test_page_one_renders_to_an_image(tmp_path: Path) -> None:
    for name, pdf in (("superbill", superbill_pdf(superbill(3))), ("good-faith-estimate", estimate_pdf(estimate())),
                      ("superbill-long", superbill_pdf(superbill(40)))):
        png = page_one_png(pdf, tmp_path, name)
        assert png.exists()
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 20_000, f"{png} is only {len(data)} bytes: an empty page?"
