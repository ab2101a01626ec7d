"""Client bindings: the case a client's identity may reach over the network, bound by the practice (directly,
or by a one-time invitation the client redeems signed in: ``client_invitations``).

A row per (case, SHA-256 of the identity provider's subject); binding and unbinding are audited on
the case itself (events ``client_bound`` and ``client_unbound``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "client_bindings" in sa.inspect(bind).get_table_names():
        return
    op.create_table(
        "client_bindings",
        sa.Column("case_id", sa.String(length=200), nullable=False),
        sa.Column("subject_hash", sa.String(length=64), nullable=False),
        sa.Column("bound_at", sa.String(length=40), nullable=False),
        sa.Column("bound_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "subject_hash"),
    )
    op.create_table(
        "client_invitations",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.String(length=40), nullable=False),
        sa.Column("used_at", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )


def downgrade() -> None:
    op.drop_table("client_invitations")
    op.drop_table("client_bindings")
