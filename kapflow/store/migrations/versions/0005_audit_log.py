"""The audit log over all events: positions, the Merkle tree's perfect subtrees, signed checkpoints.

Every audit event, queued message and delivery attempt gets a ``log_position`` from the sequencer
(NULL until then, found through a partial index that stays small); ``log_entries`` says which row
sits at each position, ``log_nodes`` keeps the hash of each perfect subtree of the RFC 9162 tree,
and ``checkpoints`` the signed tree heads. Rows written before this revision are placed by the first
sequencer run, in the order they were written.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_SOURCES = (("audit_events", "seq"), ("outbox", "id"), ("delivery_attempts", "id"))


def upgrade() -> None:
    bind = op.get_bind()
    # As in 0002: a database made with create_all by a kapflow whose models had the tables already has them.
    if "log_entries" in sa.inspect(bind).get_table_names():
        return
    unlogged = sa.text("log_position IS NULL")
    for table, key in _SOURCES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("log_position", sa.BigInteger(), nullable=True))
        op.create_index(f"ix_{table}_unlogged", table, [key], sqlite_where=unlogged, postgresql_where=unlogged)
    op.create_table(
        "log_entries",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.String(length=200), nullable=True),
        sa.Column("case_seq", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("source", "source_id", name="uq_log_entries_source"),
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("signed_note", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("log_nodes")
    op.drop_table("log_entries")
    for table, _key in reversed(_SOURCES):
        op.drop_index(f"ix_{table}_unlogged", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("log_position")
