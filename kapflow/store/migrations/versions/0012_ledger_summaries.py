"""Billing's work list: ``ledger_summaries``, one row per case whose ledger has changed.

Written in the command that posts a charge or records a payment, an adjustment or a superbill. Cases whose
ledger last changed before this revision have no row until their next such command: before it no charge
was posted (charges came with it), so what they lack is at most a payment's credit, which is nobody's work.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "ledger_summaries" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "ledger_summaries",
        sa.Column("case_id", sa.String(length=200), nullable=False),
        sa.Column("balance_cents", sa.BigInteger(), nullable=False),
        sa.Column("unbilled", sa.Integer(), nullable=False),
        sa.Column("oldest_unbilled", sa.String(length=10), nullable=True),
        sa.Column("oldest_open", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_index("ix_ledger_summaries_unbilled", "ledger_summaries", ["oldest_unbilled", "case_id"])
    op.create_index("ix_ledger_summaries_open", "ledger_summaries", ["oldest_open", "case_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_summaries_open", table_name="ledger_summaries")
    op.drop_index("ix_ledger_summaries_unbilled", table_name="ledger_summaries")
    op.drop_table("ledger_summaries")
