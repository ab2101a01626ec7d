"""A superbill and a Good Faith Estimate as PDF pages a client can send to an insurer or keep: fpdf2 lays out
the plain views of ``kapflow.domain.billing_documents`` and adds nothing of its own but layout.

Text is set in DejaVu Sans, embedded from this package's ``fonts/`` folder (its licence is beside it), so a
name such as ``Zoë Ñúñez-Ærø`` prints as written; fpdf2 embeds only the glyphs used, which keeps a page to
some tens of kilobytes. A character the font lacks prints as ``?`` (fpdf2 would otherwise log it, and a
log line must never carry a client's name). The page is US Letter.

The output is a function of the view alone: the creation date is the issue date (midnight UTC) and the
metadata carry a title naming the document's reference, never a person, so the same view gives the
same bytes. Nothing here logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

from fpdf import FPDF, FontFace
from fpdf.enums import TableBordersLayout, VAlign
from fpdf.fonts import TTFFont

from kapflow.domain.billing_documents import (
    POINTER_LETTERS,
    ClientDetails,
    Clinician,
    Diagnosis,
    EstimateLine,
    GoodFaithEstimateView,
    Party,
    SuperbillLine,
    SuperbillView,
)

FONTS = Path(__file__).parent / "fonts"
_FAMILY = "DejaVu"
_REGULAR, _BOLD = FONTS / "DejaVuSans.ttf", FONTS / "DejaVuSans-Bold.ttf"

SUPERBILL_TITLE = "Superbill (statement for insurance reimbursement)"
ESTIMATE_TITLE = "Good Faith Estimate"

SUPERBILL_COLUMNS = ("Date of service", "POS", "CPT", "Modifiers", "Description", "Units", "Diagnosis pointer",
                     "Fee")
_SUPERBILL_WIDTHS = (21, 9, 12, 17, 58, 11, 16, 20)  # relative: the table fills the page between its margins
_SUPERBILL_ALIGN = ("LEFT", "CENTER", "LEFT", "LEFT", "LEFT", "RIGHT", "CENTER", "RIGHT")
ESTIMATE_COLUMNS = ("Item or service", "Code", "Quantity", "Fee per unit", "Total", "Note")
_ESTIMATE_WIDTHS = (52, 12, 16, 17, 18, 49)
_ESTIMATE_ALIGN = ("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT", "LEFT")

_MARGIN, _TOP, _BOTTOM = 16.0, 14.0, 16.0  # mm
_GREY_FILL = (232, 232, 232)
_LABEL_GREY = 90
_BODY, _SMALL, _TABLE = 9.0, 7.5, 8.5  # pt
_NO_CODE = "\u2014"  # an em dash: an item without a billing code


def us_date(day: date) -> str:
    """``MM/DD/YYYY``: the order US insurers and the CMS-1500 claim form use for dates of birth and service,
    so a claims processor keying a superbill in reads it as written (an ISO date is easily read as
    year-day-month there). Every date on both documents uses it, so no page mixes two orders."""
    return f"{day:%m/%d/%Y}"


def money(amount: Decimal) -> str:
    """``$1,485.00``; a negative amount (a credit) as ``-$20.00``."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


class _Page(FPDF):
    """Letter pages in DejaVu Sans: a running head naming the document and client from the second page on,
    and a foot with the reference and ``Page N of M`` on every page."""

    def __init__(self, title: str, reference: str, issued_on: date, client: ClientDetails) -> None:
        super().__init__(orientation="portrait", unit="mm", format="Letter")
        self.document_title, self.reference, self.issued_on, self.client = title, reference, issued_on, client
        self.set_margins(_MARGIN, _TOP, _MARGIN)
        self.set_auto_page_break(auto=True, margin=_BOTTOM)
        self.add_font(_FAMILY, "", _REGULAR)
        self.add_font(_FAMILY, "B", _BOLD)
        self._glyphs = self._cmap(_FAMILY.lower()) & self._cmap(_FAMILY.lower() + "B")
        self.set_title(f"{title} {reference}")
        self.set_subject(title)
        self.set_creator("kapflow")
        self.set_lang("en-US")
        self.set_creation_date(datetime.combine(issued_on, time(0), tzinfo=UTC))

    def _cmap(self, key: str) -> frozenset[int]:
        font = self.fonts[key]
        return frozenset(font.cmap) if isinstance(font, TTFFont) else frozenset()

    def text_of(self, text: str) -> str:
        """``text`` as the font can set it: line breaks kept, tabs as spaces, other controls dropped, a
        character the font lacks as ``?``."""
        out = []
        for char in text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "):
            if char == "\n" or ord(char) in self._glyphs:
                out.append(char)
            elif ord(char) >= 0x20 and char not in "\x7f\u200b\u200c\u200d\u2060\ufeff":
                out.append("?")
        return "".join(out)

    def font(self, size: float, *, bold: bool = False) -> None:
        self.set_font(_FAMILY, "B" if bold else "", size)

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.font(_SMALL)
        self.set_text_color(_LABEL_GREY)
        self.cell(0, 4, self.text_of(f"{self.document_title}, continued: {self.client.name}, date of birth "
                                     f"{us_date(self.client.date_of_birth)}"),
                  new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)
        self.ln(2)

    def footer(self) -> None:
        self.set_y(-11)
        self.font(_SMALL)
        self.set_text_color(_LABEL_GREY)
        self.cell(0, 5, self.text_of(f"{self.document_title} \u00b7 Reference {self.reference} \u00b7 Issued "
                                     f"{us_date(self.issued_on)}"), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)

    # -- pieces both documents use ------------------------------------------------------------------------

    def title_block(self, facts: Sequence[tuple[str, str]]) -> None:
        """The title, then ``label: value`` facts on one line (reference, dates), then a rule."""
        self.font(16, bold=True)
        self.multi_cell(0, 8, self.text_of(self.document_title), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)
        for label, value in facts:
            self.font(_BODY, bold=True)
            self.cell(self.get_string_width(label + ": ") + 0.5, 5, self.text_of(label + ":"))
            self.font(_BODY)
            self.cell(self.get_string_width(self.text_of(value)) + 7, 5, self.text_of(value))
        self.ln(6)
        self.rule()

    def rule(self) -> None:
        self.set_draw_color(160)
        self.set_line_width(0.2)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_draw_color(0)
        self.ln(2.5)

    def heading(self, text: str, *, x: float | None = None, width: float = 0) -> None:
        self.set_x(self.l_margin if x is None else x)
        self.font(_SMALL, bold=True)
        self.set_text_color(_LABEL_GREY)
        self.cell(width, 4.5, self.text_of(text.upper()), new_x="LEFT", new_y="NEXT")
        self.set_text_color(0)

    def block(self, x: float, width: float, heading: str, name: str, lines: Sequence[str],
              labelled: Sequence[tuple[str, str]]) -> float:
        """A heading, a bold name, plain lines and ``label: value`` lines in a column at ``x``; its bottom."""
        self.heading(heading, x=x, width=width)
        self.set_x(x)
        self.font(10, bold=True)
        self.multi_cell(width, 5, self.text_of(name), new_x="LEFT", new_y="NEXT")
        self.font(_BODY)
        for line in lines:
            self.multi_cell(width, 4.4, self.text_of(line), new_x="LEFT", new_y="NEXT")
        for label, value in labelled:
            self.font(_BODY, bold=True)
            label_width = self.get_string_width(label + ": ") + 0.5
            self.cell(label_width, 4.4, self.text_of(label + ":"))
            self.font(_BODY)
            self.multi_cell(width - label_width, 4.4, self.text_of(value), new_x="LEFT", new_y="NEXT")
            self.set_x(x)
        return self.get_y()

    def parties(self, practice: Party, clinician: Clinician, client: ClientDetails) -> None:
        """The provider (practice, then rendering clinician) on the left, the client on the right."""
        gap = 8.0
        column = (self.epw - gap) / 2
        top = self.get_y()
        left = self.block(self.l_margin, column, "Provider", practice.name, practice.address_lines,
                          [("Phone", practice.phone), ("Tax ID (EIN)", practice.tax_id),
                           ("NPI (group, type 2)", practice.npi)])
        self.set_y(left + 2.5)
        left = self.block(self.l_margin, column, "Rendering clinician", clinician.name, (),
                          [("Credentials", clinician.credentials), ("NPI (individual, type 1)", clinician.npi)])
        self.set_y(top)
        client_lines: list[tuple[str, str]] = [("Date of birth", us_date(client.date_of_birth))]
        if client.phone:
            client_lines.append(("Phone", client.phone))
        right = self.block(self.l_margin + column + gap, column, "Client (patient)", client.name,
                           client.address_lines, client_lines)
        self.set_y(max(left, right) + 2)
        self.rule()

    def diagnoses(self, diagnoses: Sequence[Diagnosis]) -> None:
        """``A. F33.1 Major depressive disorder, ...``: the letter the service lines point to, code, words."""
        self.heading("Diagnoses (ICD-10-CM)")
        self.font(_BODY)
        if not diagnoses:
            self.multi_cell(0, 4.6, "None given.", new_x="LMARGIN", new_y="NEXT")
        for letter, diagnosis in zip(POINTER_LETTERS, diagnoses, strict=False):
            self.font(_BODY, bold=True)
            self.cell(6, 4.6, f"{letter}.")
            self.cell(16, 4.6, self.text_of(diagnosis.code))
            self.font(_BODY)
            self.multi_cell(0, 4.6, self.text_of(diagnosis.description), new_x="LMARGIN", new_y="NEXT")
        self.ln(2.5)

    def lines_table(self, columns: Sequence[str], widths: Sequence[int], align: Sequence[str],
                    rows: Sequence[Sequence[str]]) -> None:
        """A table filling the width, its heading row repeated at the top of every page it runs onto."""
        self.font(_TABLE)
        self.set_draw_color(170)
        self.set_line_width(0.15)
        with self.table(
            col_widths=tuple(widths), text_align=tuple(align), v_align=VAlign.T, line_height=4.0,
            padding=(1.3, 1.6), borders_layout=TableBordersLayout.HORIZONTAL_LINES, first_row_as_headings=True,
            headings_style=FontFace(family=_FAMILY, emphasis="BOLD", size_pt=_SMALL, fill_color=_GREY_FILL),
            repeat_headings=1,
        ) as table:
            table.row([self.text_of(c) for c in columns])
            for row in rows:
                table.row([self.text_of(text) for text in row])
        self.set_draw_color(0)
        self.ln(3)

    def totals(self, amounts: Sequence[tuple[str, str, bool]]) -> None:
        """``label  amount`` lines at the right margin; the flagged ones bold."""
        label_width, amount_width = 48.0, 28.0
        if self.will_page_break(5.5 * len(amounts)):
            self.add_page()
        for label, amount, bold in amounts:
            self.set_x(self.w - self.r_margin - label_width - amount_width)
            self.font(_BODY + 0.5, bold=bold)
            self.cell(label_width, 5.5, self.text_of(label), align="R")
            self.cell(amount_width, 5.5, amount, align="R", new_x="LMARGIN", new_y="NEXT")
        self.ln(3)

    def paragraph(self, heading: str, text: str, *, size: float = _BODY) -> None:
        if self.will_page_break(15):
            self.add_page()
        self.heading(heading)
        self.font(size)
        self.multi_cell(0, size * 0.5, self.text_of(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(3)


def _render(title: str, reference: str, issued_on: date, client: ClientDetails, body: Callable[[_Page], None]) -> bytes:
    doc = _Page(title, reference, issued_on, client)
    doc.add_page()
    body(doc)
    return bytes(doc.output())


def superbill_pdf(view: SuperbillView) -> bytes:
    """``view`` as a Letter-size superbill: provider, rendering clinician and client; the diagnoses lettered
    A, B, ...; one table row per service (date, place of service, CPT, modifiers, description, units,
    diagnosis pointers, fee); the totals charged, paid and due; the statement; reference, issue date and
    ``Page N of M`` at the foot of each page."""

    def body(doc: _Page) -> None:
        first, last = view.period
        doc.title_block([("Reference", view.reference), ("Issued", us_date(view.issued_on)),
                         ("Services from", f"{us_date(first)} to {us_date(last)}")])
        doc.parties(view.practice, view.clinician, view.client)
        doc.diagnoses(view.diagnoses)
        doc.heading("Services")
        doc.lines_table(SUPERBILL_COLUMNS, _SUPERBILL_WIDTHS, _SUPERBILL_ALIGN,
                        [_superbill_row(line) for line in view.lines])
        doc.totals([("Total charged", money(view.charged), False), ("Total paid", money(view.paid), False),
                    ("Balance due", money(view.balance), True)])
        doc.paragraph("Statement", view.statement)

    return _render(SUPERBILL_TITLE, view.reference, view.issued_on, view.client, body)


def _superbill_row(line: SuperbillLine) -> tuple[str, ...]:
    return (us_date(line.date_of_service), line.place_of_service, line.code, " ".join(line.modifiers),
            line.description, str(line.units), ", ".join(line.diagnosis_pointers), money(line.fee))


def estimate_pdf(view: GoodFaithEstimateView) -> bytes:
    """``view`` as a Letter-size Good Faith Estimate: provider, clinician and client; the diagnoses (if any);
    one row per expected item or service (code, quantity, fee per unit, total, note); the total estimated
    cost; the disclaimer and the dispute notice; reference, issue date and ``Page N of M`` at each foot."""

    def body(doc: _Page) -> None:
        expected = us_date(view.expected_from) if view.expected_from is not None else "not yet scheduled"
        doc.title_block([("Reference", view.reference), ("Issued", us_date(view.issued_on)),
                         ("Expected start of care", expected)])
        doc.parties(view.practice, view.clinician, view.client)
        doc.diagnoses(view.diagnoses)
        doc.heading("Expected items and services")
        doc.lines_table(ESTIMATE_COLUMNS, _ESTIMATE_WIDTHS, _ESTIMATE_ALIGN,
                        [_estimate_row(line) for line in view.lines])
        doc.totals([("Total estimated cost", money(view.total), True)])
        doc.paragraph("Disclaimer", view.disclaimer, size=8.5)
        doc.paragraph("Your right to dispute the bill", view.dispute_notice, size=8.5)

    return _render(ESTIMATE_TITLE, view.reference, view.issued_on, view.client, body)


def _estimate_row(line: EstimateLine) -> tuple[str, ...]:
    return (line.service, line.code or _NO_CODE, str(line.quantity), money(line.unit_fee), money(line.total),
            line.note)
