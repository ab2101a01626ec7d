"""A case's projection in rows of its own: ``case_entries``, one per fact recorded or move made.

The case row held the whole projection as one JSON text, rewritten by every command: 82 kB on a case with a
year of weekly visits, so a command on it cost four times one on a new case. Each entry now has a row, a command
adds the rows of the entries it folds, and the case row counts them (``fact_count``, ``move_count``: a read takes
that many, so a case read while a command adds an entry is the case of one commit).

The upgrade moves every case's projection into its entries, each written as the canonical JSON it had inside the
projection's text (so the text joined from them is the very text the row held), then drops ``cases.facts``.
A projection that is not the JSON of ``{"facts": [...], "moves": [...]}`` stops the upgrade naming its case,
rather than being moved in part: ``kapflow audit verify`` shows what happened to it, and its history rebuilds it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:30:00.000000
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

BATCH = 500  # cases moved per round: a bounded amount of memory whatever the database's size

_cases = sa.table("cases", sa.column("id", sa.String), sa.column("facts", sa.String),
                  sa.column("fact_count", sa.Integer), sa.column("move_count", sa.Integer))
_entries = sa.table("case_entries", sa.column("case_id", sa.String), sa.column("section", sa.String),
                    sa.column("n", sa.Integer), sa.column("entry", sa.String))


def _canonical(value: object) -> str:
    # kapflow.domain.payload.canonical_json as of this revision (a migration must not change with later code).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def upgrade() -> None:
    bind = op.get_bind()
    found = sa.inspect(bind)
    # As in 0002: a database made with create_all by a kapflow whose models had the table already has it.
    if "case_entries" not in found.get_table_names():
        op.create_table(
            "case_entries",
            sa.Column("case_id", sa.String(length=200), nullable=False),
            sa.Column("section", sa.String(length=5), nullable=False),
            sa.Column("n", sa.Integer(), nullable=False),
            sa.Column("entry", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("case_id", "section", "n"),
        )
    columns = {c["name"] for c in found.get_columns("cases")}
    if "fact_count" not in columns:
        op.add_column("cases", sa.Column("fact_count", sa.Integer(), nullable=False, server_default="0"))
        op.add_column("cases", sa.Column("move_count", sa.Integer(), nullable=False, server_default="0"))
    if "facts" in columns:
        _move_projections(bind)
        op.execute("ALTER TABLE cases DROP COLUMN facts")  # SQLite has had DROP COLUMN since 3.35


def _move_projections(bind: sa.Connection) -> None:
    after = ""
    while True:
        rows = bind.execute(sa.select(_cases.c.id, _cases.c.facts).where(_cases.c.id > after)
                            .order_by(_cases.c.id).limit(BATCH)).all()
        if not rows:
            return
        entries: list[dict[str, Any]] = []
        counts: list[dict[str, Any]] = []
        for case_id, text in rows:
            projection = _projection(case_id, text)
            for section in ("facts", "moves"):
                entries += [{"case_id": case_id, "section": section, "n": n, "entry": _canonical(entry)}
                            for n, entry in enumerate(projection[section])]
            counts.append({"b_id": case_id, "f": len(projection["facts"]), "m": len(projection["moves"])})
        if entries:
            bind.execute(_entries.insert(), entries)
        bind.execute(sa.update(_cases).where(_cases.c.id == sa.bindparam("b_id"))
                     .values(fact_count=sa.bindparam("f"), move_count=sa.bindparam("m")), counts)
        after = rows[-1][0]


def _projection(case_id: str, text: str) -> dict[str, list[Any]]:
    try:
        projection = json.loads(text)
    except ValueError:
        projection = None
    if (not isinstance(projection, dict) or set(projection) != {"facts", "moves"}
            or not all(isinstance(projection[s], list) for s in ("facts", "moves"))):
        raise CommandError(
            f"case {case_id}'s projection (cases.facts) is not the JSON of {{\"facts\": [...], \"moves\": [...]}}, "
            "so it cannot be moved into its entries: run `kapflow audit verify` on that case, put the projection "
            "its history gives back into the row, and upgrade again"
        )
    return projection


def downgrade() -> None:
    bind = op.get_bind()
    op.add_column("cases", sa.Column("facts", sa.String(), nullable=True))
    after = ""
    while True:
        rows = bind.execute(sa.select(_cases.c.id).where(_cases.c.id > after)
                            .order_by(_cases.c.id).limit(BATCH)).all()
        if not rows:
            break
        ids = [r[0] for r in rows]
        lists: dict[str, dict[str, list[str]]] = {i: {"facts": [], "moves": []} for i in ids}
        for case_id, section, entry in bind.execute(
            sa.select(_entries.c.case_id, _entries.c.section, _entries.c.entry)
            .where(_entries.c.case_id.in_(ids)).order_by(_entries.c.case_id, _entries.c.section, _entries.c.n)
        ):
            lists[case_id][section].append(entry)
        texts = [{"b_id": i, "facts": '{"facts":[' + ",".join(lists[i]["facts"]) + '],"moves":['
                  + ",".join(lists[i]["moves"]) + "]}"} for i in ids]
        bind.execute(sa.update(_cases).where(_cases.c.id == sa.bindparam("b_id"))
                     .values(facts=sa.bindparam("facts")), texts)
        after = ids[-1]
    if bind.dialect.name == "postgresql":  # as 0001 made it (SQLite cannot add the constraint to a column)
        op.alter_column("cases", "facts", nullable=False)
    op.execute("ALTER TABLE cases DROP COLUMN move_count")
    op.execute("ALTER TABLE cases DROP COLUMN fact_count")
    op.drop_table("case_entries")
