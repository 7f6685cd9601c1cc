"""Set-based statements of the event path: one statement per table per batch, with a fixed text.

Each statement is written once as plain SQL and run on the driver's own cursor (``driver_rows``:
the transaction, the error hooks and ``guarded``'s retries stay SQLAlchemy's; no statement is
compiled per call and no parameter passes through SQLAlchemy's per-row processing):

- PostgreSQL: the rows go as one array per column, ``INSERT .. SELECT .. FROM unnest(%s::text[],
  ..)``: the text is the same for every batch (psycopg parses it once and prepares it after a few
  executions) and a batch is one round trip, however many rows it has. Multi-row ``VALUES`` sent
  a new statement text of thousands of placeholders per batch, which psycopg parsed in Python.
- SQLite: multi-row ``VALUES (?, ..), (?, ..)`` with the parameters as one flat tuple, in pages
  of at most ``SQLITE_PARAMETERS`` parameters (the text cached per page size).

Rows keep the order they are given in (sorted by key by the counting core), so PostgreSQL
transactions lock rows in one order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

SQLITE_PARAMETERS = 30_000  # below SQLite's limit of 32,766 host parameters (since 3.32)
POSTGRES_CHUNK = 50_000  # rows per statement: bounds one message, not the round trips of a batch


@dataclass(frozen=True, slots=True)
class BulkStatement:
    """``INSERT INTO table (columns) <rows> <tail>``; ``types`` are the PostgreSQL types of the
    columns (their arrays carry the rows)."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    tail: str

    def run(self, conn: sa.Connection, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Insert ``rows`` (tuples in the order of ``columns``); the rows ``RETURNING`` gave."""
        found: list[Any] = []
        if conn.dialect.name == "postgresql":
            sql = _postgres_text(self)
            for start in range(0, len(rows), POSTGRES_CHUNK):
                page = rows[start : start + POSTGRES_CHUNK]
                columns = zip(*page, strict=True)
                arrays = tuple(_ARRAYS[t](c) for t, c in zip(self.types, columns, strict=True))
                found.extend(driver_rows(conn, sql, arrays))
            return found
        size = max(1, SQLITE_PARAMETERS // len(self.columns))
        for start in range(0, len(rows), size):
            page = rows[start : start + size]
            flat = tuple(value for row in page for value in row)
            found.extend(driver_rows(conn, _sqlite_text(self, len(page)), flat))
        return found


@functools.cache
def _postgres_text(statement: BulkStatement) -> str:
    arrays = ", ".join(f"%s::{t}[]" for t in statement.types)
    names = ", ".join(statement.columns)
    return (
        f"INSERT INTO {statement.table} ({names}) SELECT {names} "
        f"FROM unnest({arrays}) AS batch ({names}) {statement.tail}"
    )


@functools.lru_cache(maxsize=256)
def _sqlite_text(statement: BulkStatement, count: int) -> str:
    row = "(" + ", ".join("?" * len(statement.columns)) + ")"
    names, values = ", ".join(statement.columns), ", ".join([row] * count)
    return f"INSERT INTO {statement.table} ({names}) VALUES {values} {statement.tail}"


def adding(
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    keys: Sequence[str],
    added: Sequence[str],
    returning: str = "",
) -> BulkStatement:
    """An upsert that adds ``added`` to the stored row on a conflict of ``keys``; a table with
    ``last_event_at`` keeps the later time (an atomic maximum: a NULL never wins over a time,
    so concurrent batches never move it back)."""
    sets = [f"{n} = {table}.{n} + excluded.{n}" for n in added]
    if "last_event_at" in columns:
        stored, incoming = f"{table}.last_event_at", "excluded.last_event_at"
        sets.append(
            f"last_event_at = CASE WHEN {incoming} IS NOT NULL AND ({stored} IS NULL OR "
            f"{incoming} > {stored}) THEN {incoming} ELSE {stored} END"
        )
    tail = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)} {returning}"
    return BulkStatement(table, tuple(columns), tuple(types), tail.strip())


def new_only(
    table: str, columns: Sequence[str], types: Sequence[str], returning: str
) -> BulkStatement:
    """An insert that skips rows whose key exists and returns those it inserted."""
    return BulkStatement(table, tuple(columns), tuple(types), f"ON CONFLICT DO NOTHING {returning}")


def select_units(
    conn: sa.Connection, columns: str, table: str, experiment_id: str, unit_ids: Sequence[str]
) -> list[Any]:
    """``SELECT columns FROM table`` for these units of one experiment: one statement with an
    array on PostgreSQL, pages of ``IN (?, ..)`` on SQLite (both through the primary key)."""
    where = f"SELECT {columns} FROM {table} WHERE experiment_id = "
    if conn.dialect.name == "postgresql":
        sql = f"{where}%s AND unit_id = ANY(%s::text[])"
        return driver_rows(conn, sql, (experiment_id, texts_array(unit_ids)))
    found: list[Any] = []
    for start in range(0, len(unit_ids), SQLITE_PARAMETERS):
        page = tuple(unit_ids[start : start + SQLITE_PARAMETERS])
        sql = f"{where}? AND unit_id IN ({', '.join('?' * len(page))})"
        found.extend(driver_rows(conn, sql, (experiment_id, *page)))
    return found


def time_value(dialect: sa.Dialect) -> Any:
    """How a dialect's driver takes a ``DateTime`` parameter: SQLite stores SQLAlchemy's text
    form (so what this writes reads back as what SQLAlchemy writes), PostgreSQL the datetime.
    Built once per dialect: every counting step asks, and building it adapts a type (about
    30 µs)."""
    if dialect.name == "postgresql":
        return _same
    return _sqlite_time(dialect)


@functools.lru_cache(maxsize=64)
def _sqlite_time(dialect: sa.Dialect) -> Any:
    process = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    return _same if process is None else process


def _same(value: datetime | None) -> datetime | None:
    return value


# PostgreSQL array literals, built here rather than by psycopg's list dumper, which scans every
# element with a regular expression in Python (about 5x slower for a batch's unit ids). Inside
# double quotes only a backslash and a double quote need escaping; an unquoted NULL is NULL.


def texts_array(values: Sequence[Any]) -> str:
    quoted = [
        "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values
    ]
    return "{" + ",".join(quoted) + "}"


def _integers(values: Sequence[Any]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(int(v)) for v in values]) + "}"


def _floats(values: Sequence[Any]) -> str:
    """``repr`` is the shortest text that reads back as the same double (``inf`` and ``nan``
    are read by PostgreSQL too)."""
    return "{" + ",".join(["NULL" if v is None else repr(float(v)) for v in values]) + "}"


def _times(values: Sequence[Any]) -> str:
    """A batch's times are one or a few (its claim time, its assignment time): each is
    formatted once."""
    text = {v: "NULL" if v is None else '"' + v.isoformat() + '"' for v in set(values)}
    return "{" + ",".join([text[v] for v in values]) + "}"


_ARRAYS = {
    "text": texts_array,
    "integer": _integers,
    "bigint": _integers,
    "float8": _floats,
    "timestamptz": _times,
}


def driver_rows(
    conn: sa.Connection, sql: str, parameters: tuple[Any, ...] | Mapping[str, Any]
) -> list[Any]:
    """Run one statement of the event path through the driver's own cursor (psycopg's or
    sqlite3's), inside the connection's transaction; the rows it returned, as the driver's
    tuples (none for a statement without). An error goes through SQLAlchemy's handling as it
    would from ``exec_driver_sql`` (wrapped as ``sa.exc.DBAPIError``, the engine's
    ``handle_error`` hooks, the pool invalidated on a lost connection), so ``guarded`` and
    ``translate_conflicts`` see what they always saw. SQLAlchemy's execution context and
    ``Row`` objects cost about 45 µs of CPU per statement on PostgreSQL, a third of what a
    statement costs the client, and these statement texts are fixed and need none of it."""
    raw = conn.connection.driver_connection
    assert raw is not None  # a checked-out connection has its driver's connection
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(sql, parameters)
            return list(cursor.fetchall()) if _returns_rows(sql) else []
        finally:
            cursor.close()
    except Exception as error:
        conn._handle_dbapi_exception(error, sql, parameters, None, None)


@functools.lru_cache(maxsize=512)
def _returns_rows(sql: str) -> bool:
    """Whether a statement of the event path returns rows (a read, or ``RETURNING``): known
    from its text, since in pipeline mode a cursor has no description before its rows come."""
    text = sql.lstrip().upper()
    return text.startswith(("SELECT", "WITH")) or " RETURNING " in text


@contextmanager
def pipelined(conn: sa.Connection) -> Iterator[None]:
    """The end of a write transaction (``with write, conn.begin(), pipelined(conn):``).

    PostgreSQL: the block's statements go in psycopg's pipeline mode, so the transaction's
    implicit BEGIN, a read whose rows are taken later (``read_later``) and a statement that
    returns none travel with the next statement whose rows are fetched, instead of taking a
    round trip each; a block that ends without an error ends with COMMIT, sent with the last
    such statements (the counters' upserts). So the counter rows every event of a variant
    adds to are locked only from their upsert to the COMMIT on the server, never while the
    client waits for a round trip or for its turn to run: those rows are where concurrent
    single events queue. An error of a statement answered later, or of the COMMIT, is raised
    at the block's end, wrapped by SQLAlchemy as any other; then nothing was committed and
    ``conn.begin()`` rolls back. (SQLAlchemy's own commit after the block finds nothing left
    to commit.) Elsewhere: nothing; ``conn.begin()`` commits."""
    if conn.dialect.name != "postgresql":
        yield
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        with raw.pipeline():
            yield
            raw.commit()
    except conn.dialect.loaded_dbapi.Error as error:  # raised by a later sync or the commit
        conn._handle_dbapi_exception(error, None, None, None, None)


def read_later(
    conn: sa.Connection, sql: str, parameters: tuple[Any, ...]
) -> Callable[[], list[Any]]:
    """Send a read now and take its rows later (the returned function): under ``pipelined``
    on PostgreSQL it travels with the next statement that is fetched; elsewhere it runs now."""
    if conn.dialect.name != "postgresql":
        found = driver_rows(conn, sql, parameters)
        return lambda: found
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.execute(sql, parameters)
    except Exception as error:
        cursor.close()
        conn._handle_dbapi_exception(error, sql, parameters, None, None)

    def fetched() -> list[Any]:
        try:
            return list(cursor.fetchall())
        except Exception as error:
            conn._handle_dbapi_exception(error, sql, parameters, None, None)
        finally:
            cursor.close()

    return fetched
