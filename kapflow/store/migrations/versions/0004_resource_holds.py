"""Resource holds: the clinician and room each booked appointment takes, and when.

One row per resource an appointment holds (``clinician:<id>``, ``room:<id>``), over
[starts_at, ends_at) in whole seconds since the epoch. On PostgreSQL an exclusion
constraint refuses two overlapping holds of one resource, so two desks booking the same
slot at once cannot both commit; it needs the ``btree_gist`` extension (for ``=`` on text
in a GiST index), created in the ``public`` schema when the migrating user may (a
trusted extension since PostgreSQL 13: the database's owner may), else in the current one.
Appointments booked before this revision named no clinician or room: they hold nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ExcludeConstraint

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_PUBLIC_WRITABLE = (
    "SELECT 1 FROM pg_namespace WHERE nspname = 'public' AND has_schema_privilege(oid, 'CREATE')"
)


def upgrade() -> None:
    bind = op.get_bind()
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "resource_holds" in sa.inspect(bind).get_table_names():
        return
    constraints: list[sa.Constraint] = []
    if bind.dialect.name == "postgresql":
        if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'btree_gist'")).first() is None:
            public = bind.execute(sa.text(_PUBLIC_WRITABLE)).first() is not None
            op.execute(f"CREATE EXTENSION IF NOT EXISTS btree_gist{' SCHEMA public' if public else ''}")
        constraints.append(ExcludeConstraint(
            ("resource", "="), (sa.func.int8range(sa.column("starts_at"), sa.column("ends_at")), "&&"),
            name="ex_resource_holds_overlap", using="gist",
        ))
    op.create_table(
        "resource_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource", sa.String(length=250), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.String(length=200), nullable=False),
        sa.Column("appointment_id", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        *constraints,
    )
    op.create_index("ix_resource_holds_resource_starts", "resource_holds", ["resource", "starts_at"])
    op.create_index("ix_resource_holds_appointment", "resource_holds", ["case_id", "appointment_id"])


def downgrade() -> None:
    # btree_gist stays: other schemas or applications of the database may use it.
    op.drop_index("ix_resource_holds_appointment", table_name="resource_holds")
    op.drop_index("ix_resource_holds_resource_starts", table_name="resource_holds")
    op.drop_table("resource_holds")
