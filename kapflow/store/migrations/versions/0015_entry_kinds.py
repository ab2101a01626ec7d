"""Each projection entry's kind beside its text: ``case_entries.kind`` (the fact's kind, or the move's trigger).

A command on a case read cold grouped its entries by kind by reading each one's text: 420 texts on a case with a
year of weekly visits, on its first command. The kind now comes with the text, written by the command that adds
the entry; this revision fills it in for every entry there is, in batches of 500 cases, from each entry's JSON.
An entry whose text is not a JSON object with the key (edited by hand) is left NULL, and its case's entries are
read from their texts as before; ``kapflow audit verify`` says what happened to it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 07:00:00.000000
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

BATCH = 500  # cases filled in per round: a bounded amount of memory whatever the database's size
KEYS = {"facts": "kind", "moves": "trigger"}

_cases = sa.table("cases", sa.column("id", sa.String))
_entries = sa.table("case_entries", sa.column("case_id", sa.String), sa.column("section", sa.String),
                    sa.column("n", sa.Integer), sa.column("entry", sa.String), sa.column("kind", sa.String))


def upgrade() -> None:
    bind = op.get_bind()
    # As in 0002: a database made with create_all by a kapflow whose models had the column already has it.
    if "kind" not in {c["name"] for c in sa.inspect(bind).get_columns("case_entries")}:
        op.add_column("case_entries", sa.Column("kind", sa.String(length=200), nullable=True))
    after = ""
    while True:
        ids = [r[0] for r in bind.execute(sa.select(_cases.c.id).where(_cases.c.id > after)
                                          .order_by(_cases.c.id).limit(BATCH))]
        if not ids:
            return
        found = bind.execute(sa.select(_entries.c.case_id, _entries.c.section, _entries.c.n, _entries.c.entry)
                             .where(_entries.c.case_id.in_(ids), _entries.c.kind.is_(None))).all()
        kinds = [{"b_case": c, "b_section": s, "b_n": n, "kind": _key(s, e)} for c, s, n, e in found]
        kinds = [k for k in kinds if k["kind"] is not None]
        if kinds:
            bind.execute(sa.update(_entries).where(
                _entries.c.case_id == sa.bindparam("b_case"), _entries.c.section == sa.bindparam("b_section"),
                _entries.c.n == sa.bindparam("b_n")).values(kind=sa.bindparam("kind")), kinds)
        after = ids[-1]


def _key(section: str, text: str) -> str | None:
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    value = entry.get(KEYS.get(section, "")) if isinstance(entry, dict) else None
    return value if isinstance(value, str) and len(value) <= 200 else None


def downgrade() -> None:
    op.drop_column("case_entries", "kind")
