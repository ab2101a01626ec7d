"""Failed attempts to settle a timer: retried with backoff, then parked as ``failed``.

Existing timers start at 0 attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # As in 0002: a database made with create_all by a kapflow whose models had the column already has it.
    if "attempts" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("timers")}:
        return
    with op.batch_alter_table("timers") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("timers") as batch:
        batch.drop_column("attempts")
