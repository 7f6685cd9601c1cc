"""Helpers shared by the SQL store's modules."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from abpilot.domain.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")
CHUNK = 500
RETRIES = 5
# PostgreSQL SQLSTATEs worth retrying: serialization failure and deadlock.
RETRYABLE = {"40001", "40P01"}


def guarded(method: Callable[P, T]) -> Callable[P, T]:
    """Retry transient conflicts; report an unreachable database as ``StoreUnavailable``."""

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
        raise AssertionError("unreachable")

    return wrapper


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
