"""Helpers shared by the SQL store's modules."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from abpilot.domain.errors import (
    AbpilotError,
    ConcurrentModification,
    DuplicateKey,
    StoreUnavailable,
)
from abpilot.store.base import experiment_taken
from abpilot.store.sql.engine import autocommit_twin
from abpilot.store.sql.schema import metadata

P = ParamSpec("P")
T = TypeVar("T")
CHUNK = 500
RETRIES = 5
# PostgreSQL SQLSTATEs worth retrying: serialization failure and deadlock.
RETRYABLE = {"40001", "40P01"}
UNIQUE_VIOLATION = "23505"  # PostgreSQL
SQLITE_UNIQUE = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def guarded(method: Callable[P, T]) -> Callable[P, T]:
    """Retry transient conflicts; report an unreachable database as ``StoreUnavailable``.
    (Unique violations become domain errors statement by statement: ``translate_conflicts``.)"""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(RETRIES):
            try:
                return method(*args, **kwargs)
            except sa.exc.OperationalError as error:
                code = getattr(error.orig, "sqlstate", None)
                if code in RETRYABLE and attempt < RETRIES - 1:
                    time.sleep(0.01 * 2**attempt)
                    continue
                if code in RETRYABLE:
                    raise
                raise StoreUnavailable(f"the database is unavailable: {error.orig}") from error
            except sa.exc.TimeoutError as error:  # the pool's, not a statement's
                raise StoreUnavailable(
                    f"no database connection came free in time: {error}"
                ) from error
        raise AssertionError("unreachable")

    return wrapper


def translate_conflicts(context: sa.engine.ExceptionContext) -> AbpilotError | None:
    """The engine's ``handle_error`` hook (installed by ``SqlStore``), so the one place where
    every statement's unique violation becomes the domain's error: a race lost between a check
    and a write (a key taken by a concurrent create or rename, a period taken by a concurrent
    recalculation) gets the answer the memory and Redis stores give for the same race, not an
    ``IntegrityError``. Any other error is left as it is."""
    violated = unique_violation(context.original_exception)
    if violated is None:
        return None
    table, columns = violated
    rows = getattr(context.execution_context, "compiled_parameters", None) or []
    return conflict_error(table, columns, rows[0] if len(rows) == 1 else None)


def unique_violation(orig: BaseException) -> tuple[str, tuple[str, ...]] | None:
    """(table, columns) of the unique constraint or primary key a statement violated, from the
    driver's error; None for any other error."""
    if getattr(orig, "sqlstate", None) == UNIQUE_VIOLATION:
        diag = getattr(orig, "diag", None)
        table = getattr(diag, "table_name", None) or ""
        return table, _constraint_columns(table, getattr(diag, "constraint_name", None) or "")
    if getattr(orig, "sqlite_errorname", None) in SQLITE_UNIQUE:
        # "UNIQUE constraint failed: experiments.key" (or "t.a, t.b" for several columns)
        _, _, spec = str(orig).partition(": ")
        qualified = [c.strip().partition(".") for c in spec.split(",")]
        return qualified[0][0], tuple(column for _, _, column in qualified)
    return None


def _constraint_columns(table: str, constraint: str) -> tuple[str, ...]:
    """The columns of a PostgreSQL constraint named by its default name (``t_pkey``,
    ``t_a_b_key``); every constraint of the schema has one (the migrations name none)."""
    found = metadata.tables.get(table)
    if found is None:
        return ()
    if constraint == f"{table}_pkey":
        return tuple(c.name for c in found.primary_key.columns)
    for unique in found.constraints:
        if isinstance(unique, sa.UniqueConstraint):
            columns = tuple(c.name for c in unique.columns)
            if constraint == "_".join((table, *columns, "key")):
                return columns
    for column in found.columns:
        if column.unique and constraint == f"{table}_{column.name}_key":
            return (column.name,)
    return ()


def conflict_error(table: str, columns: Sequence[str], params: Any = None) -> AbpilotError:
    """The domain error for a unique violation on ``table``: the same one, with the same
    message, that the memory and Redis stores raise for the same race. ``params`` are the
    failing statement's parameters by name, where the offending value may be found."""
    column = columns[-1] if columns else None
    value = params.get(column) if isinstance(params, Mapping) and column else None
    if table == "experiments":
        return experiment_taken(column or "key", None if value is None else str(value))
    if table == "allocations":
        return ConcurrentModification(
            "another process stored this experiment's next allocation period first; reload and "
            "retry",
            field="period",
        )
    if table == "decisions":
        what = "this id" if value is None else f"id '{value}'"
        return DuplicateKey(f"a decision with {what} already exists", field="id")
    names = ", ".join(columns) or "key"
    return DuplicateKey(f"a row of {table or 'a table'} with this {names} exists", field=column)


def one_read(engine: sa.Engine) -> sa.Connection:
    """A connection for a read of ONE statement: on PostgreSQL in autocommit, since one
    statement sees one snapshot anyway, and ``BEGIN`` and ``ROLLBACK`` were two of its three
    round trips; from the engine's autocommit twin when it has one (``autocommit_twin``), whose
    connections stay in autocommit. (SQLite keeps its transaction: it has no round trips, and
    its ``begin`` hook takes the locks.)"""
    if engine.dialect.name != "postgresql":
        return engine.connect()
    twin = autocommit_twin(engine)
    if twin is not None:
        return twin.connect()
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def chunks(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    """Slices of at most ``CHUNK`` items: rows for one bulk statement, ids for one ``IN``."""
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def dialect_insert(dialect: str) -> Callable[[sa.Table], postgresql.Insert | sqlite.Insert]:
    """The ``insert`` with ``ON CONFLICT`` of a dialect name (``postgresql`` or ``sqlite``)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def adding_upsert(
    dialect: str,
    table: sa.Table,
    keys: Sequence[str],
    names: Sequence[str],
    also: Mapping[str, Callable[[Any], Any]] | None = None,
) -> sa.Insert:
    """``INSERT .. ON CONFLICT (keys) DO UPDATE SET n = table.n + excluded.n`` for ``names``,
    and ``c = also[c](excluded)`` for the other columns it sets. Build it once and execute it
    with a list of rows: SQLAlchemy compiles it once ("insertmanyvalues"), where
    ``insert(t).values(rows)`` compiles anew on every call."""
    stmt = dialect_insert(dialect)(table)
    added: dict[str, Any] = {n: table.c[n] + stmt.excluded[n] for n in names}
    added.update({c: make(stmt.excluded) for c, make in (also or {}).items()})
    return stmt.on_conflict_do_update(index_elements=[table.c[k] for k in keys], set_=added)
