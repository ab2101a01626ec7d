"""Snapshots of a case's kept views: ``case_views``, one row per case and view (its appointments, its ledger).

A command on a case read cold folded every booking and every charge and payment it ever had: a year-old case's
first command cost three times a new one's. The views are now kept every few facts of their kinds, and a cold read
steps the snapshot by the facts since. Cases of before this revision have none until a command writes one; nothing
is moved.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "case_views" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "case_views",
        sa.Column("case_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("fact_count", sa.Integer(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("case_views")
