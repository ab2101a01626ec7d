"""The hot path's statements: Core statements on the SQLModel tables, compiled once per dialect.

Every command runs a handful of the same statements. Executing a Core
statement costs tens of microseconds of SQLAlchemy work (cache keys, parameter
processing, result wrapping) before the database sees it; a command's whole
budget is a few hundred. So the statements are built with Core (the tables
stay the single definition) and compiled once into SQL text, then run on the
connection's DBAPI cursor. Their parameters are plain strings and integers,
which need no SQLAlchemy type processing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Dialect,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    column,
    delete,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy import case as sql_case  # ``case`` names a case's condition here
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from kapflow.domain.entries import ENTRY_INDEX
from kapflow.store.tables import (
    AuditRow,
    CaseEntryRow,
    CaseRow,
    CaseViewRow,
    DeliveryAttemptRow,
    IdempotencyRow,
    LedgerSummaryRow,
    NameWordRow,
    OutboxRow,
    ResourceHoldRow,
    TimerRow,
)

_cases = CaseRow.__table__  # type: ignore[attr-defined]
_entries = CaseEntryRow.__table__  # type: ignore[attr-defined]
_views = CaseViewRow.__table__  # type: ignore[attr-defined]
_audit = AuditRow.__table__  # type: ignore[attr-defined]
_idem = IdempotencyRow.__table__  # type: ignore[attr-defined]
_timers = TimerRow.__table__  # type: ignore[attr-defined]
_outbox = OutboxRow.__table__  # type: ignore[attr-defined]
_attempts = DeliveryAttemptRow.__table__  # type: ignore[attr-defined]
_holds = ResourceHoldRow.__table__  # type: ignore[attr-defined]
_words = NameWordRow.__table__  # type: ignore[attr-defined]
_ledgers = LedgerSummaryRow.__table__  # type: ignore[attr-defined]
LEDGER_COLUMNS = ("case_id", "balance_cents", "unbilled", "oldest_unbilled", "oldest_open")
HOLD_COLUMNS = ("resource", "starts_at", "ends_at", "case_id", "appointment_id")
HOLD_LOCK_SPACE = 0x6B66  # the first key of kapflow's per-resource advisory locks ("kf")

CASE_TABLE_COLUMNS = tuple(c.name for c in _cases.columns)
# A case read: its row, then its projection's entries and their kinds (``case_read``).
CASE_COLUMNS = (*CASE_TABLE_COLUMNS, "facts", "keys")
ENTRY_COLUMNS = ("case_id", "section", "n", "entry", "kind")
SECTIONS = ("facts", "moves")  # a projection's lists, in the order a case read takes them
VIEW_COLUMNS = ("case_id", "name", "fact_count", "body")
AUDIT_COLUMNS = tuple(c.name for c in _audit.columns)  # the order of a ``select(audit table)`` row


class Prepared:
    """One statement compiled for one dialect; ``run`` binds a dict of values on a DBAPI cursor."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, *, custom_plan: bool = False,
                 together: RowsTogether | None = None) -> None:
        """``together``: how ``run_many`` runs several rows in one statement where they fit."""
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        # psycopg prepares a statement on the server after its fifth run, and PostgreSQL may then keep one
        # generic plan for every value; ``custom_plan`` statements are planned for their values each time.
        self._options: dict[str, Any] = {"prepare": False} if custom_plan and dialect.driver == "psycopg" else {}
        self.sql = str(compiled)
        self._names: Sequence[str] | None = list(compiled.positiontup or ()) if compiled.positional else None
        # Constants written into the statement (status = 'cancelled') are binds with a value.
        self._defaults = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }
        self._together = together

    def bind(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        merged = {**self._defaults, **values}
        return [merged[n] for n in self._names] if self._names is not None else merged

    def run(self, cursor: Any, values: Mapping[str, Any]) -> Any:
        cursor.execute(self.sql, self.bind(values), **self._options)
        return cursor

    def run_many(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._together is not None and len(rows) > 1 and self._together.fits(rows):
            self._together.run(cursor, rows)
            return
        cursor.executemany(self.sql, [self.bind(r) for r in rows])


ROWS = "rows"  # the name ``rows_of`` binds its JSON to


class RowsTogether:
    """PostgreSQL: one statement for several rows, their values sent as one JSON array (``rows_of``).

    A statement in a pipeline costs the client about 18 µs of psycopg's Python and the server a parse, bind
    and execute of its own; a command plans up to four timers at once. The ``per_row`` values go in the JSON;
    values bound by other names are shared: bound once from the first row, so the rows must agree on them.
    The ``unique`` names must tell the rows apart: an upsert may not touch one row twice. Rows that do not fit
    run one by one. For inserts: an UPDATE joined to the rows may be planned as a hash of the whole table
    (PostgreSQL cannot tell how few rows the JSON holds), where one statement per key finds each by its index.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect, per_row: Iterable[str],
                 unique: Sequence[str]) -> None:
        self._prepared = Prepared(statement, dialect)
        self._per_row = tuple(per_row)
        self._unique = tuple(unique)

    def fits(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        first = rows[0]
        shared = [name for name in first if name not in self._per_row]
        if any(row[name] != first[name] for row in rows[1:] for name in shared):
            return False
        return len({tuple(row[name] for name in self._unique) for row in rows}) == len(rows)

    def run(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        per_row = self._per_row
        text = json.dumps([{name: row[name] for name in per_row} for row in rows], separators=(",", ":"))
        self._prepared.run(cursor, {**rows[0], ROWS: text})


def rows_of(columns: Mapping[str, Any]) -> Any:
    """PostgreSQL: a FROM of the rows in the JSON array bound as ``rows``, each column of ``columns`` (names to
    types) read from its objects, as ``rows.c[name]``. JSON, not an array per column: psycopg dumps a list in
    Python element by element (measured: more than the statements it saves), a string in C."""
    typed = [column(name, type_) for name, type_ in columns.items()]
    return func.json_to_recordset(bindparam(ROWS)).table_valued(*typed).render_derived(name="rows", with_types=True)


def _insert_ignoring(table: Any, dialect: Dialect, columns: Iterable[str]) -> ClauseElement:
    """INSERT ... ON CONFLICT (key) DO NOTHING: a second writer of the same key changes nothing."""
    values: dict[str, Any] = {c: bindparam(c) for c in columns}
    if dialect.name == "postgresql":
        return postgresql.insert(table).values(values).on_conflict_do_nothing(index_elements=["key"])
    return sqlite.insert(table).values(values).on_conflict_do_nothing(index_elements=["key"])


def _insert(dialect: Dialect, table: Any, columns: Sequence[str], rows: Any | None) -> Any:
    """An INSERT (an upsert-able one) of ``columns``: their bound values, or every row of ``rows``."""
    stmt = (postgresql if dialect.name == "postgresql" else sqlite).insert(table)
    if rows is None:
        return stmt.values({c: bindparam(c) for c in columns})
    return stmt.from_select(list(columns), select(*(rows.c[c] for c in columns)))


def _plan_timer(dialect: Dialect, columns: Sequence[str], rows: Any | None = None) -> ClauseElement:
    stmt = _insert(dialect, _timers, columns, rows)
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["key"],
        set_={"status": "pending", "claimed_by": None, "lease_until": None, "outcome": None, "attempts": 0,
              "updated_at": stmt.excluded.updated_at},
        where=and_(_timers.c.status == "cancelled", _timers.c.due_at >= bindparam("b_now")),
    )


def _update_and_append_or_fail(moved: Any, audit_columns: Sequence[str]) -> ClauseElement:
    """The compare-and-swap and the audit insert, for a case row this transaction holds FOR UPDATE.

    Its verdict is known before it runs (nobody else can change a locked row), so the store queues
    it with the command's other writes and its COMMIT instead of waiting for its row count. Should
    it miss all the same, the audit row's ``case_id`` comes from the updated row and is NULL: the
    NOT NULL constraint fails the statement, the server skips the queued COMMIT, and nothing of the
    command is written.
    """
    values: dict[str, Any] = {c: sql_cast(bindparam(f"a_{c}"), _audit.c[c].type) for c in audit_columns}
    values["case_id"] = select(moved.c.id).scalar_subquery()
    statement: ClauseElement = _audit.insert().values(values)
    return statement


def _entry_texts() -> Any:
    """PostgreSQL: the texts of the case's projection entries, its facts and then its moves, each in order: those
    the row counts (an entry a later command added is not this row's)."""
    texts = func.array_agg(postgresql.aggregate_order_by(_entries.c.entry, _entries.c.section, _entries.c.n))
    counted = or_(and_(_entries.c.section == literal_column("'facts'"), _entries.c.n < _cases.c.fact_count),
                  and_(_entries.c.section == literal_column("'moves'"), _entries.c.n < _cases.c.move_count))
    found = select(texts).where(and_(_entries.c.case_id == _cases.c.id, counted))
    return func.coalesce(found.scalar_subquery(), literal_column("ARRAY[]::text[]", postgresql.ARRAY(String)))


def _put_entry(dialect: Dialect) -> ClauseElement:
    """An entry's row, in place of any row at its place: one there is past the case row's count (no command left
    it: written by hand), so it is no entry of the case's, and must not stop the command that adds the next one.
    A command whose compare-and-swap misses writes nothing, so a committed entry is never replaced."""
    return _upsert(dialect, _entries, ENTRY_COLUMNS, ("case_id", "section", "n"))


def _upsert(dialect: Dialect, table: Any, columns: Sequence[str], keys: Sequence[str]) -> ClauseElement:
    """An insert of ``columns`` (bound by their names) that replaces the other columns of a row with the same
    ``keys``."""
    stmt = (postgresql if dialect.name == "postgresql" else sqlite).insert(table).values(
        {c: bindparam(c) for c in columns})
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns if c not in keys})


def case_read(dialect: Dialect) -> list[Any]:
    """The columns of a case read: its row, then its projection's entries as stored, the texts of its facts and
    then of its moves (``rows.case_from_row`` tells them apart by the row's counts), and their kinds (NULL here:
    a command's read of the entries gives them, ``HotStatements.select_entries``; readers of lists read the kinds
    a query asks about from the texts).

    PostgreSQL gathers them in the same statement (``array_agg ... ORDER BY``, one round trip). SQLite 3.40 has
    no ordered aggregate (``group_concat`` joins in an arbitrary order), so its reads leave the column NULL and
    ``rows.with_projections`` reads the entries in order with a second local statement.
    """
    texts = _entry_texts() if dialect.name == "postgresql" else literal_column("NULL")
    return [*_cases.columns, texts.label("facts"), literal_column("NULL").label("keys")]


def entries_of(dialect: Dialect) -> Select[Any]:
    """The entries of the cases whose ids are the JSON array ``ids``, by case, section and place."""
    ids: Any = bindparam("ids", type_=String)
    if dialect.name == "postgresql":
        among = _entries.c.case_id.in_(select(func.json_array_elements_text(sql_cast(ids, postgresql.JSON))))
    else:
        among = _entries.c.case_id.in_(select(literal_column("value")).select_from(func.json_each(ids)))
    return (select(*[_entries.c[c] for c in ("case_id", "section", "n", "entry")]).where(among)
            .order_by(_entries.c.case_id, _entries.c.section, _entries.c.n))


def _entries_read(dialect: Dialect, *, indexed_only: bool) -> Any:
    """A command's read of a case's entries (``id``), by section and place: with ``indexed_only``, of its facts only
    those past the store's index of them and the last of each kind it covers (those before are read when a query
    reaches them). Three ranges of the primary key, so neither database reads a year of entries to skip them."""
    columns = (_entries.c.section, _entries.c.n, _entries.c.entry, _entries.c.kind)
    case = _entries.c.case_id == bindparam("id")
    if not indexed_only:
        sections = _entries.c.section.in_([literal_column(f"'{s}'") for s in SECTIONS])
        return select(*columns).where(case, sections).order_by(_entries.c.section, _entries.c.n)
    index = (_views.c.case_id == bindparam("id"), _views.c.name == literal_column(f"'{ENTRY_INDEX}'"))
    past = func.coalesce(select(_views.c.fact_count).where(*index).scalar_subquery(), literal_column("0"))
    body: Any = select(_views.c.body).where(*index).scalar_subquery()
    if dialect.name == "postgresql":  # = ANY(array): looked up in the key, where IN (subquery) hashes the range
        lasts: Any = _entries.c.n == any_(func.array(select(sql_cast(func.json_array_elements_text(
            sql_cast(body, postgresql.JSON).op("->")(literal_column("'last'"))), Integer)).scalar_subquery()))
    else:
        lasts = _entries.c.n.in_(select(literal_column("value"))
                                 .select_from(func.json_each(body, literal_column("'$.last'"))))
    # SQLite would take ``n < past`` for the range of the key to read and test each of the year's entries for being a
    # last one (97 µs a year-old case, against 56 looking each last one up): ``n + 0`` is no range of the key.
    below = (_entries.c.n + literal_column("0") if dialect.name == "sqlite" else _entries.c.n) < past
    facts, moves = (_entries.c.section == literal_column(f"'{s}'") for s in SECTIONS)
    parts = union_all(select(*columns).where(case, facts, lasts, below),
                      select(*columns).where(case, facts, _entries.c.n >= past),
                      select(*columns).where(case, moves)).subquery()
    return select(*parts.c).order_by(parts.c.section, parts.c.n)


def _entry_texts_at(dialect: Dialect, *, holding: bool = False) -> Select[Any]:
    """The places and texts of a case's facts (``id``) at ``places``: an array of them on PostgreSQL (each looked up
    in the key), their JSON array on SQLite (``places_value``). With ``holding``, a text only where it holds the text
    ``holding`` or a backslash (``kapflow.domain.entries.Entries.holding``), else null: every place has its row, so
    one deleted by hand is still found missing."""
    if dialect.name == "postgresql":
        among: Any = _entries.c.n == any_(bindparam("places", type_=postgresql.ARRAY(Integer)))
        find: Any = func.strpos
    else:
        among = _entries.c.n.in_(select(literal_column("value"))
                                 .select_from(func.json_each(bindparam("places", type_=String))))
        find = func.instr
    text: Any = _entries.c.entry
    if holding:
        holds = or_(find(_entries.c.entry, bindparam("holding", type_=String)) > 0,
                    find(_entries.c.entry, literal_column("'\\'")) > 0)
        text = sql_case((holds, _entries.c.entry), else_=null())
    return select(_entries.c.n, text).where(
        _entries.c.case_id == bindparam("id"), _entries.c.section == literal_column("'facts'"), among)


def places_value(dialect: Dialect, places: Sequence[int]) -> Any:
    """``places`` as ``select_entry_texts`` binds them."""
    return list(places) if dialect.name == "postgresql" else json.dumps(list(places))


def case_views(case_id: str | None) -> Select[Any]:
    """The snapshots of kept views (one case's, or every case's), by case id and name."""
    query = select(*[_views.c[c] for c in VIEW_COLUMNS]).order_by(_views.c.case_id, _views.c.name)
    return query if case_id is None else query.where(_views.c.case_id == case_id)


def labelled_entries(case_id: str | None) -> Select[Any]:
    """The entries with a kind beside them (one case's, or every case's), by case id, section and place: what
    ``audit verify`` checks the kinds of."""
    query = (select(*[_entries.c[c] for c in ("case_id", "section", "entry", "kind")])
             .where(_entries.c.kind.is_not(None)).order_by(_entries.c.case_id, _entries.c.section, _entries.c.n))
    return query if case_id is None else query.where(_entries.c.case_id == case_id)


def entries_past_counts(case_id: str | None) -> Select[Any]:
    """How many projection entry rows no reader takes, by case id in id order (one case's, or every case's): past
    the counts the case row keeps, in neither list, or of no case. Only a hand edit leaves one."""
    counts = {"facts": _cases.c.fact_count, "moves": _cases.c.move_count}
    stray = or_(_cases.c.id.is_(None), _entries.c.n < 0, _entries.c.section.not_in(tuple(counts)),
                *(and_(_entries.c.section == section, _entries.c.n >= count) for section, count in counts.items()))
    query = (select(_entries.c.case_id, func.count()).select_from(_entries.outerjoin(_cases, _cases.c.id ==
                                                                                     _entries.c.case_id))
             .where(stray).group_by(_entries.c.case_id).order_by(_entries.c.case_id))
    return query if case_id is None else query.where(_entries.c.case_id == case_id)


OVERDUE_PENDING = ("pending", "claimed")  # a timer still to settle: overdue once its due time is long past
GAVE_UP = ("missed", "failed")  # a timer the worker gave up on (too late to send, or raised on every attempt)


def _held_between() -> Any:
    """The ids of cases with a hold starting in [day_from, day_until) (epoch seconds): a range of
    ``ix_resource_holds_starts``. A booked or attended appointment holds its clinician (and room) from its
    start; a cancelled, missed or moved one has released them, so these are its active appointments."""
    return select(_holds.c.case_id).where(and_(
        _holds.c.starts_at >= bindparam("day_from", type_=BigInteger),
        _holds.c.starts_at < bindparam("day_until", type_=BigInteger),
    ))


def _overdue_timers() -> Any:
    """The ids of cases with an overdue timer: pending or claimed and due before ``overdue_before``, or given
    up on. One range of ``ix_timers_status_due`` (status, due_at) per status, each a plain index seek on
    both databases (``SqlQueue.claim_timers`` keeps its statuses apart for the same reason)."""
    due = bindparam("overdue_before", type_=String)
    parts = [select(_timers.c.case_id).where(and_(_timers.c.status == s, _timers.c.due_at < due))
             for s in OVERDUE_PENDING]
    parts += [select(_timers.c.case_id).where(_timers.c.status == s) for s in GAVE_UP]
    return union_all(*parts)


def _named(n: int) -> Any:
    """The ids of cases a word of whose client's name begins with the ``n``-th word searched: a range
    [w<n>_from, w<n>_until) of ``name_words``' primary key."""
    return select(_words.c.case_id).where(and_(_words.c.word >= bindparam(f"w{n}_from", type_=String),
                                               _words.c.word < bindparam(f"w{n}_until", type_=String)))


@dataclass(frozen=True)
class PageShape:
    """Which filters a case page statement has: one statement per shape, compiled once."""

    by_state: bool = False
    by_workflow: bool = False
    after: bool = False
    by_day: bool = False
    overdue: bool = False
    name_words: int = 0  # how many words of a client's name it searches


def _case_page_statement(dialect: Dialect, shape: PageShape) -> Prepared:
    narrowed = shape.by_day or shape.overdue or shape.name_words > 0
    page = (select(*case_read(dialect)).order_by(_cases.c.opened_at, _cases.c.id)
            .limit(bindparam("limit", type_=Integer)))
    if shape.by_state:
        state = _cases.c.state
        if narrowed and dialect.name == "sqlite":
            state = UnaryExpression(state, operator=custom_op("+"))
        page = page.where(state == bindparam("state"))
    if shape.by_workflow:
        page = page.where(_cases.c.workflow == bindparam("workflow"))
    if shape.after:
        page = page.where(tuple_(_cases.c.opened_at, _cases.c.id)
                          > tuple_(bindparam("after_opened"), bindparam("after_id")))
    if shape.by_day:
        page = page.where(_cases.c.id.in_(_held_between()))
    if shape.overdue:
        page = page.where(_cases.c.id.in_(_overdue_timers()))
    for n in range(shape.name_words):  # every word searched begins a word of the name
        page = page.where(_cases.c.id.in_(_named(n)))
    return Prepared(page, dialect, custom_plan=narrowed)


class HotStatements:
    """The statements of one dialect, compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        def prep(statement: ClauseElement) -> Prepared:
            return Prepared(statement, dialect)

        def prep_rows(build: Callable[[Any | None], ClauseElement], columns: Mapping[str, Any],
                      unique: Sequence[str]) -> Prepared:
            """``build(None)``, whose many rows run as one ``build(rows_of(columns))`` on PostgreSQL."""
            if dialect.name != "postgresql":
                return prep(build(None))
            return Prepared(build(None), dialect, together=RowsTogether(build(rows_of(columns)), dialect, columns,
                                                                         unique))

        case_values: dict[str, Any] = {
            c: bindparam(c)
            for c in ("workflow_version", "state", "previous_state", "version", "event_count", "head_hash",
                      "fact_count", "move_count", "updated_at")
        }
        # FOR UPDATE on PostgreSQL: writers of one case queue on its row instead of failing their
        # compare-and-swap (SQLite has taken its write lock already; it renders no FOR UPDATE).
        read = case_read(dialect)
        self.read_case = prep(select(*read).where(_cases.c.id == bindparam("id")))
        # A command's read: the row, locked, and then its entries in a statement of their own (sent together).
        # Not in one statement on PostgreSQL: a read that waits for the row's lock sees the row as the command
        # before committed it, but the rest of the statement (the entries) as of before that commit.
        self.select_case = prep(select(*_cases.columns, literal_column("NULL").label("facts"),
                                       literal_column("NULL").label("keys"))
                                .where(_cases.c.id == bindparam("id")).with_for_update())
        # Its facts' entries and then its moves', each with its place and kind (``rows.read_entries``): the facts
        # past the store's index of them when it has one (``ENTRY_INDEX``), or all (``select_all_entries``, when
        # that index cannot be read); and the texts of some of its facts, when a query reaches them.
        self.select_entries = prep(_entries_read(dialect, indexed_only=True))
        self.select_all_entries = prep(_entries_read(dialect, indexed_only=False))
        self.select_entry_texts = prep(_entry_texts_at(dialect))
        self.select_entry_texts_holding = prep(_entry_texts_at(dialect, holding=True))
        self.dialect = dialect
        # Proves a kept copy of a case current: its event count, locked until the commit (PostgreSQL).
        self.select_event_count = prep(
            select(_cases.c.event_count).where(_cases.c.id == bindparam("id")).with_for_update()
        )
        self.insert_case = prep(_cases.insert().values({c: bindparam(c) for c in CASE_TABLE_COLUMNS}))
        # A case's projection, entry by entry: those a command adds; all of one case (written anew, which no
        # command does: only a record not folded from the one this transaction read); the entries of cases read.
        self.insert_entry = prep(_put_entry(dialect))
        self.delete_entries = prep(delete(_entries).where(_entries.c.case_id == bindparam("b_case")))
        # Its kept views' snapshots: read with a case whose facts may have one, written as they come due, and
        # deleted with its entries when those are written anew (they covered the entries that were).
        self.select_views = prep(select(_views.c.name, _views.c.fact_count, _views.c.body)
                                 .where(_views.c.case_id == bindparam("id")))
        self.put_view = prep(_upsert(dialect, _views, VIEW_COLUMNS, ("case_id", "name")))  # in place of the last
        self.delete_views = prep(delete(_views).where(_views.c.case_id == bindparam("b_case")))
        # When the index of its facts is written: the snapshots it would run ahead of (not written with it, and
        # then not stepped by the facts read past it), and those no view reads (of another fold's name).
        self.delete_views_before = prep(delete(_views).where(_views.c.case_id == bindparam("b_case"),
                                                             _views.c.fact_count < bindparam("b_count")))
        self.entries_of = prep(entries_of(dialect))
        self.update_case = prep(
            update(_cases)
            .where(and_(_cases.c.id == bindparam("b_id"), _cases.c.event_count == bindparam("b_expected")))
            .values(case_values)
        )
        audit_columns = [c.name for c in _audit.columns if c.name not in ("seq", "log_position")]
        self.insert_event = prep(_audit.insert().values({c: bindparam(c) for c in audit_columns}))
        # PostgreSQL: the compare-and-swap and the audit insert in one statement (one round trip);
        # the event is inserted only if the update matched, so the insert's row count is the verdict.
        self.update_and_append: Prepared | None = None
        self.update_and_append_locked: Prepared | None = None
        if dialect.name == "postgresql":
            moved = (
                update(_cases)
                .where(and_(_cases.c.id == bindparam("b_id"), _cases.c.event_count == bindparam("b_expected")))
                .values(case_values).returning(_cases.c.id).cte("moved")
            )
            row = select(*[sql_cast(bindparam(f"a_{c}"), _audit.c[c].type) for c in audit_columns]).select_from(moved)
            self.update_and_append = prep(_audit.insert().from_select(audit_columns, row))
            self.update_and_append_locked = prep(_update_and_append_or_fail(moved, audit_columns))
        by_opening = (
            select(*read).order_by(_cases.c.opened_at, _cases.c.id)
            .limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer))
        )
        self.list_cases = prep(by_opening)
        self.list_cases_in_state = prep(by_opening.where(_cases.c.state == bindparam("state")))
        # Keyset pages (a cursor: the last case's opening time and id), one statement per filter combination,
        # so a page deep in 100k cases costs what the first does (an offset would read every row before it).
        # The appointment-day, overdue and name filters narrow by an indexed set of case ids (``_held_between``,
        # ``_overdue_timers``, ``_named``); the order and the cursor stay those of every page.
        # The plan must start from that small set, then read each of its cases by primary key, never walk the cases
        # of one state (``ix_cases_state_opened``) testing each: SQLite, which keeps no statistics, would choose
        # that walk for a state filter unless its term is kept off that index (``+state``); PostgreSQL plans these
        # statements for their values each time (a generic plan, blind to how few holds one day has, walks).
        self._dialect = dialect
        self._case_pages: dict[PageShape, Prepared] = {}
        for by_state, by_workflow, after in itertools.product((False, True), repeat=3):
            self.case_page(PageShape(by_state, by_workflow, after))  # the narrowed ones on first use

        counted = select(func.count()).select_from(_cases)
        self.count_cases = prep(counted)
        self.count_cases_in_state = prep(counted.where(_cases.c.state == bindparam("state")))
        self.select_history = prep(
            select(_audit).where(_audit.c.case_id == bindparam("case_id")).order_by(_audit.c.case_seq)
        )
        self.select_idem = prep(select(_idem.c.fingerprint, _idem.c.result).where(_idem.c.key == bindparam("key")))
        self.insert_idem = prep(
            _idem.insert().values({c: bindparam(c) for c in ("key", "case_id", "fingerprint", "result")})
        )
        timer_columns = ("key", "case_id", "reminder", "appointment_id", "due_at", "status", "outcome",
                         "created_at", "updated_at", "attempts")
        # One upsert per planned timer: new keys are inserted; a key cancelled when the case left a
        # state comes back if the case returns in time; any other existing key is left alone.
        self.plan_timer = prep_rows(lambda rows: _plan_timer(dialect, timer_columns, rows),
                                    {c: _timers.c[c].type for c in timer_columns}, ("key",))
        # A pending timer follows its reminder's new timing; one claimed, sent or closed is left alone.
        self.retime_timer = prep(
            update(_timers)
            .where(and_(_timers.c.key == bindparam("b_key"), _timers.c.status == "pending"))
            .values(due_at=bindparam("due_at"), updated_at=bindparam("updated_at"))
        )
        # One statement per key, not one for all (as the timers planned): see ``RowsTogether``.
        self.cancel_timer = prep(
            update(_timers)
            .where(and_(_timers.c.key == bindparam("b_key"),
                        or_(_timers.c.status == "pending", _timers.c.status == "claimed")))
            .values(status="cancelled", updated_at=bindparam("updated_at"), outcome=bindparam("outcome"))
        )
        outbox_columns = ("key", "case_id", "channel", "audience", "recipient", "subject", "body", "payload",
                          "status", "attempts", "next_attempt_at", "created_at")
        self.insert_outbox = prep(_insert_ignoring(_outbox, dialect, outbox_columns))
        self.finish_timer = prep(
            update(_timers)
            .where(and_(_timers.c.id == bindparam("b_id"), _timers.c.status == "claimed",
                        _timers.c.claimed_by == bindparam("b_worker")))
            .values(status=bindparam("status"), outcome=bindparam("outcome"), updated_at=bindparam("updated_at"),
                    lease_until=None)
        )
        # A failed attempt: the row stays claimed until its backoff ends (then any worker takes it), or is parked.
        self.fail_timer = prep(
            update(_timers)
            .where(and_(_timers.c.id == bindparam("b_id"), _timers.c.status == "claimed",
                        _timers.c.claimed_by == bindparam("b_worker")))
            .values(status=bindparam("status"), outcome=bindparam("outcome"), updated_at=bindparam("updated_at"),
                    attempts=bindparam("attempts"), lease_until=bindparam("lease_until"))
        )
        # A delivery attempt's result, only by the worker holding the row's lease, and its record.
        self.settle_outbox = prep(
            update(_outbox)
            .where(and_(_outbox.c.id == bindparam("b_id"), _outbox.c.status == "sending",
                        _outbox.c.claimed_by == bindparam("b_worker")))
            .values(status=bindparam("status"), claimed_by=None, lease_until=None,
                    # NULL leaves a column as it was: a success keeps the last error, a failure has no sent_at.
                    sent_at=func.coalesce(bindparam("sent_at"), _outbox.c.sent_at),
                    last_error=func.coalesce(bindparam("last_error"), _outbox.c.last_error),
                    next_attempt_at=func.coalesce(bindparam("next_attempt_at"), _outbox.c.next_attempt_at))
        )
        self.insert_attempt = prep(
            _attempts.insert().values(
                {c: bindparam(c) for c in ("outbox_id", "attempt", "at", "worker", "outcome", "detail")}
            )
        )
        # Resource holds: those of other appointments overlapping a wanted one, released, added.
        self.select_taken = prep(
            select(*[_holds.c[c] for c in HOLD_COLUMNS]).where(and_(
                _holds.c.resource == bindparam("b_resource"),
                _holds.c.starts_at < bindparam("b_ends"),
                _holds.c.ends_at > bindparam("b_starts"),
                not_(and_(_holds.c.case_id == bindparam("b_case"),
                          _holds.c.appointment_id == bindparam("b_appointment"))),
            ))
        )
        self.release_holds = prep(
            delete(_holds).where(and_(_holds.c.case_id == bindparam("b_case"),
                                      _holds.c.appointment_id == bindparam("b_appointment")))
        )
        self.insert_hold = prep(_holds.insert().values({c: bindparam(c) for c in HOLD_COLUMNS}))
        # The words of a client's name (the case list's search): replaced whole when the intake changes.
        self.delete_words = prep(delete(_words).where(_words.c.case_id == bindparam("b_case")))
        self.insert_word = prep(_words.insert().values(word=bindparam("word"), case_id=bindparam("case_id")))
        # A case's ledger summary, replaced whole when its ledger changes (its row is locked: no other writer).
        self.put_ledger = prep(_upsert(dialect, _ledgers, LEDGER_COLUMNS, ("case_id",)))
        # Cases with no word indexed yet, by id after ``after_id``: those opened before the index existed.
        self.unindexed_cases = prep(
            select(*read)
            .where(and_(_cases.c.id > bindparam("after_id"),
                        ~select(_words.c.case_id).where(_words.c.case_id == _cases.c.id).exists()))
            .order_by(_cases.c.id).limit(bindparam("limit", type_=Integer))
        )
        # PostgreSQL: bookings of one resource take turns from their check to their commit, as SQLite's
        # writers do. Without it, two overlapping inserts can each wait for the other in the exclusion
        # constraint's check (a deadlock, one aborted); with it, the later one finds the hold and is refused.
        self.lock_resource: Prepared | None = None
        if dialect.name == "postgresql":
            self.lock_resource = prep(select(func.pg_advisory_xact_lock(
                literal(HOLD_LOCK_SPACE, Integer), func.hashtext(bindparam("resource", type_=String)))))

    def case_page(self, shape: PageShape) -> Prepared:
        """The keyset page statement with the filters of ``shape``."""
        found = self._case_pages.get(shape)
        if found is None:  # two threads may both compile it: the same text either way
            found = self._case_pages[shape] = _case_page_statement(self._dialect, shape)
        return found

