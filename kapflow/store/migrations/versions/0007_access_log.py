"""The access log: every read of a case through the API (who, for whom, which case, which view, when).

Its rows are placed in the audit log like audit events (``log_position``, NULL until the sequencer
places them, found through a partial index that stays small), so signed checkpoints cover them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "access_log" in sa.inspect(bind).get_table_names():
        return
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=50), nullable=False),
        sa.Column("via", sa.String(length=200), nullable=True),
        sa.Column("case_id", sa.String(length=200), nullable=False),
        sa.Column("view", sa.String(length=50), nullable=False),
        sa.Column("log_position", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_log_case_at", "access_log", ["case_id", "at"])
    op.create_index("ix_access_log_actor_at", "access_log", ["actor", "at"])
    unlogged = sa.text("log_position IS NULL")
    op.create_index("ix_access_log_unlogged", "access_log", ["id"], sqlite_where=unlogged,
                    postgresql_where=unlogged)


def downgrade() -> None:
    op.drop_table("access_log")
