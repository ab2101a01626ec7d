"""The case list's appointment-day filter: an index on resource holds by their start alone.

``ix_resource_holds_resource_starts`` (resource, starts_at) finds one clinician's or room's
appointments; the case list asks for every appointment starting on one day, whoever holds it.
``ix_resource_holds_starts`` (starts_at, case_id) answers that range from the index alone.
The overdue-reminders filter uses ``ix_timers_status_due``, which exists already. The list of every
case, oldest first, pages by (opened_at, id): ``ix_cases_opened`` gives that order without a sort.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

INDEXES = (("ix_resource_holds_starts", "resource_holds", ["starts_at", "case_id"]),
           ("ix_cases_opened", "cases", ["opened_at", "id"]))


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for name, table, columns in INDEXES:
        # As in 0002: a database made with create_all by a kapflow whose models had the index already has it.
        if name not in {i["name"] for i in inspector.get_indexes(table)}:
            op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
