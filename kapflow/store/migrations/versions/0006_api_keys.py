"""API keys of services: a public id, the service's name and role, the roles it may act for, and a hash.

A key's secret is never stored: ``key_hash`` is the hex HMAC-SHA256 of the key text under the
practice's pepper (``KAPFLOW_API_KEY_PEPPER``, empty when unset). A revoked key keeps its row, with
who revoked it and when, so the audit history's ``via`` always names a key that can be looked up.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "api_keys" in sa.inspect(bind).get_table_names():
        return
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=50), nullable=False),
        sa.Column("delegate_roles", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("revoked_at", sa.String(length=40), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
