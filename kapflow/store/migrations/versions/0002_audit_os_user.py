"""The operating-system account beside the claimed actor of an audit event (the CLI's commands).

Nullable, and covered by the event's hash only when set, so every chain written
before this revision verifies as it did.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A database kapflow made with create_all before it used Alembic, by a kapflow whose models
    # already had the column, is stamped as the baseline yet has it: nothing to add then.
    if "os_user" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("audit_events")}:
        return
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("os_user", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("os_user")
