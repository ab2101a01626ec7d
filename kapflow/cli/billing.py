"""Billing: ``kapflow billing ledger``, ``superbill`` and ``reprint``.

``ledger CASE``: a case's charges, payments and adjustments, and its balance. Charges are posted by the
engine as visits complete; payments and adjustments are recorded as facts (``kapflow case record CASE
payment ...``, ``... billing_adjustment ...``). ``superbill CASE --from --to --output F.pdf`` issues the
case's superbill (recorded on the case); ``reprint CASE REFERENCE --output F.pdf`` makes an issued one again.
The PDFs hold the client's data: they are written 0600, never to a terminal.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from kapflow.cli.common import (
    ActorId,
    AsJson,
    CaseId,
    Role,
    acting,
    cell,
    console,
    engine,
    group,
    handled,
    print_json,
    reader,
    write_private,
)
from kapflow.domain.billing import Ledger, money_text
from kapflow.domain.calendar import PracticeCalendar
from kapflow.errors import InvalidInput
from kapflow.present import ledger_shape, superbill_shape

commands = typer.Typer()
billing_app = group("A case's ledger: charges posted as visits complete, payments, adjustments, balance.")
commands.add_typer(billing_app, name="billing")


@billing_app.command("ledger")
@handled
def ledger_command(ctx: typer.Context, case_id: CaseId, as_json: AsJson = False) -> None:
    """The case's charge lines (c1, c2, ...: what an adjustment names), its statement with the balance after
    each entry, and the totals. Amounts in dollars and cents; a negative balance is a credit."""
    built = reader(ctx)
    books = built.ledger(case_id)
    if as_json:
        print_json(ledger_shape(books))
        return
    out = console()
    out.print(_charges(books) if books.charges else Text("no charges yet"))
    if books.entries:
        out.print(_statement(books, built.app.practice))
    out.print(Text(f"charged {money_text(books.charged)} · paid {money_text(books.paid)} · adjusted "
                   f"{money_text(books.adjusted)} · balance {money_text(books.balance)}"
                   + (f" (credit {money_text(books.credit)})" if books.credit > 0 else "")))


def _charges(books: Ledger) -> Table:
    table = Table("line", "date", "service", "code", "payer", "fee", "open", title="Charges",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), title_justify="left")
    for c in books.charges:
        status = "void" if c.voided else money_text(c.open)
        table.add_row(cell(c.id), cell(c.date_of_service.isoformat()), cell(c.description), cell(c.code or "-"),
                      cell("insurer" if c.insurance else "client"), cell(money_text(c.fee)), cell(status))
    return table


def _statement(books: Ledger, practice: PracticeCalendar) -> Table:
    table = Table("date", "entry", "amount", "balance", title="Statement", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1, 0, 0), title_justify="left")
    for e in books.entries:
        table.add_row(cell(practice.local_date(e.at).isoformat()), cell(e.description), cell(money_text(e.amount)),
                      cell(money_text(e.balance)))
    return table


Output = Annotated[Path, typer.Option("--output", "-o", help="The PDF to write (0600: it holds client data).")]


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name}: give a date as YYYY-MM-DD", field=name) from None


@billing_app.command("superbill")
@handled
def superbill_command(
    ctx: typer.Context, case_id: CaseId, output: Output, actor: ActorId, role: Role,
    first: Annotated[str, typer.Option("--from", help="The first date of service it covers, YYYY-MM-DD.")],
    last: Annotated[str, typer.Option("--to", help="The last date of service it covers, YYYY-MM-DD.")],
    diagnosis: Annotated[list[str] | None, typer.Option(
        "--diagnosis", help="An ICD-10-CM code to list (repeat it); default: every one made by the dates.")] = None,
    as_json: AsJson = False,
) -> None:
    """Issue the case's superbill for the services billed to insurance from --from to --to: it is recorded on
    the case and written to --output. Every gap is named at once (the practice's or a clinician's details
    in [billing], the client's address, a line with no diagnosis made by its date), and nothing is written."""
    built = engine(ctx)
    issued = built.issue_superbill(case_id, first=_day(first, "from"), last=_day(last, "to"),
                                   diagnoses=diagnosis or None, actor=acting(actor, role))
    write_private(output, built.document_pdf(issued.view))
    if as_json:
        print_json(superbill_shape(issued.record))
        return
    record = issued.record
    print(f"kapflow billing: issued superbill {record.reference} ({len(record.lines)} line(s), "
          f"{money_text(record.charged)} charged, balance {money_text(record.charged - record.paid)}) to {output}")


@billing_app.command("reprint")
@handled
def reprint_command(
    ctx: typer.Context, case_id: CaseId,
    reference: Annotated[str, typer.Argument(help="The superbill's reference, e.g. SB-7F3A2B10-1.")],
    output: Output,
) -> None:
    """Write a superbill issued on the case again, exactly as it was issued."""
    built = reader(ctx)
    write_private(output, built.document_pdf(built.superbill(case_id, reference)))
    print(f"kapflow billing: wrote superbill {reference} to {output}")


@billing_app.command("fhir")
@handled
def fhir_command(
    ctx: typer.Context, case_id: CaseId,
    output: Annotated[Path, typer.Option("--output", "-o", help="The JSON file (0600: it holds client data).")],
) -> None:
    """The case's billing and care as a FHIR R4B Bundle (JSON): Patient, EpisodeOfCare, CarePlan, Appointment,
    Encounter, ChargeItem, Invoice and Account (the fhir extra)."""
    write_private(output, reader(ctx).billing_fhir(case_id).encode("utf-8"))
    print(f"kapflow billing: wrote the FHIR Bundle of {case_id} to {output}")
