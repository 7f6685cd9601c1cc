"""Helpers shared by the SQL store's modules."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import ParamSpec, TypeVar

import sqlalchemy as sa

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
