"""The case list's search by client name: ``name_words``, a word of a client's name per row.

Derived from each case's intake fact and written in the command's own transaction. The words of the
cases already in the database are filled in by ``kapflow db upgrade`` after this revision (it knows the
workflows, which say what the name fields are; this migration does not): an embedder upgrading with
``kapflow.bootstrap.upgrade_schema`` calls ``Engine.index_client_names()`` once afterwards.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 16:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "name_words" in sa.inspect(op.get_bind()).get_table_names():
        return
    word = sa.String(length=100).with_variant(sa.String(length=100, collation="C"), "postgresql")
    op.create_table(
        "name_words",
        sa.Column("word", word, nullable=False),
        sa.Column("case_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("word", "case_id"),
    )
    op.create_index("ix_name_words_case", "name_words", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_name_words_case", table_name="name_words")
    op.drop_table("name_words")
