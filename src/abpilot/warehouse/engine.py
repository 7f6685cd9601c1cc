"""The warehouse's engine: opened from ``WAREHOUSE_URL`` (any SQLAlchemy URL), sources described
and checked, statements run with a timeout that interrupts the query.

Errors name what the user can fix (a source, a column); the URL's credentials appear nowhere
(``safe_url``), and driver messages are cut short.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from abpilot.domain.errors import AbpilotError
from abpilot.warehouse.spec import Source, SourceKind

SAMPLE_ROWS = 100  # rows a check reads to tell the types of the columns
MAX_MESSAGE = 500


class WarehouseError(AbpilotError):
    """A source or a query the warehouse refused (a missing column, a wrong type, SQL that
    fails): the user's input, so a 422 naming the field."""

    code = "warehouse_error"
    status_code = 422


class WarehouseTimeout(AbpilotError):
    code = "warehouse_timeout"
    status_code = 409


class WarehouseUnavailable(AbpilotError):
    """No warehouse configured (``WAREHOUSE_URL``), or a refresh of the experiment is already
    running."""

    code = "warehouse_unavailable"
    status_code = 409


def safe_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split(":", 1)[0] + "://…"


def open_engine(url: str) -> Engine:
    """The warehouse's engine (``abpilot.warehouse.chdb`` registers ``clickhousedb+chdb``)."""
    if url.startswith("clickhousedb+chdb"):
        import abpilot.warehouse.chdb  # noqa: F401

    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except Exception as error:
        raise WarehouseUnavailable(
            f"WAREHOUSE_URL {safe_url(url)} cannot be opened: {_short(error)}",
            field="WAREHOUSE_URL",
        ) from None


def _short(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first[:MAX_MESSAGE]


def describe(engine: Engine, source: Source, *, field: str = "sql") -> tuple[str, ...]:
    """The columns ``source`` returns (its query run with no row), or a ``WarehouseError``
    naming the first required column it lacks, or why the query fails."""
    query = sa.select(sa.text("*")).select_from(sa.text(source.sql).columns().subquery("s"))
    try:
        with engine.connect() as connection:
            result = connection.execute(query.limit(0))
            columns = tuple(str(k) for k in result.keys())  # noqa: SIM118 - a Result, not a dict
            result.close()
    except Exception as error:
        raise WarehouseError(
            f"source '{source.name}': its query fails in the warehouse: {_short(error)}",
            field=field,
        ) from None
    lowered = {c.lower() for c in columns}
    for name in source.required():
        if name.lower() not in lowered:
            raise WarehouseError(
                f"source '{source.name}' has no column '{name}' (its query returns: "
                f"{', '.join(columns) or 'nothing'}); a {source.kind.value} source returns "
                f"{', '.join(source.required())}",
                field=f"columns.{name}",
            )
    return columns


_TIMES = (dt.datetime, dt.date)
_NUMBERS = (int, float, decimal.Decimal)


def check_types(
    engine: Engine, source: Source, value_columns: Sequence[str] = ()
) -> dict[str, str]:
    """Read up to ``SAMPLE_ROWS`` rows and check the types of the columns the plan uses:
    ``timestamp`` a time, value columns numbers. The Python type seen per column; a
    ``WarehouseError`` naming the first column of the wrong type."""
    columns = [*source.required(), *value_columns]
    q: Any = sa.select(*(sa.column(c) for c in dict.fromkeys(columns))).select_from(
        sa.text(source.sql).columns().subquery("s")
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(q.limit(SAMPLE_ROWS)).all()
    except Exception as error:
        raise WarehouseError(
            f"source '{source.name}': its query fails in the warehouse: {_short(error)}",
            field="sql",
        ) from None
    seen: dict[str, str] = {}
    names = list(dict.fromkeys(columns))
    for row in rows:
        for name, value in zip(names, row, strict=True):
            if value is None:
                continue
            seen.setdefault(name, type(value).__name__)
            expect = _expected(source.kind, name, value_columns)
            if expect is not None and not isinstance(value, expect[0]):
                raise WarehouseError(
                    f"source '{source.name}': column '{name}' must hold {expect[1]} (it holds "
                    f"{type(value).__name__}, e.g. {str(value)[:40]!r})",
                    field=f"columns.{name}",
                )
    return seen


def _expected(
    kind: SourceKind, name: str, value_columns: Sequence[str]
) -> tuple[tuple[type, ...], str] | None:
    if name == "timestamp":
        return _TIMES, "timestamps"
    if name in value_columns:
        return _NUMBERS, "numbers"
    return None


def run(
    engine: Engine,
    statement: Any,
    *,
    timeout_seconds: float,
    what: str,
    field: str = "sql",
) -> list[Sequence[Any]]:
    """Every row of ``statement``, in a worker thread; after ``timeout_seconds`` the query is
    interrupted (through the driver: DuckDB's ``interrupt``, psycopg's ``cancel``, ...) and a
    ``WarehouseTimeout`` raised. A query the warehouse refuses is a ``WarehouseError``."""
    outcome: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            with engine.connect() as connection:
                raw["connection"] = connection.connection.dbapi_connection
                outcome["rows"] = [tuple(r) for r in connection.execute(statement)]
        except BaseException as error:
            outcome["error"] = error
        finally:
            done.set()

    worker = threading.Thread(target=work, name="warehouse-query", daemon=True)
    worker.start()
    if not done.wait(timeout_seconds):
        _interrupt(raw.get("connection"))
        done.wait(5.0)
        raise WarehouseTimeout(
            f"{what} took longer than {timeout_seconds:g} s and was stopped", field="timeout"
        )
    if "error" in outcome:
        raise WarehouseError(
            f"{what} failed in the warehouse: {_short(outcome['error'])}", field=field
        ) from None
    rows: list[Sequence[Any]] = outcome["rows"]
    return rows


def _interrupt(connection: Any) -> None:
    """Stop the query running on this DBAPI connection, where the driver can."""
    for name in ("interrupt", "cancel", "cancel_query"):
        method: Callable[[], object] | None = getattr(connection, name, None)
        if callable(method):
            with contextlib.suppress(Exception):  # best effort: the timeout is reported
                method()
            return


def describe_all(engine: Engine, sources: Mapping[str, Source]) -> dict[str, tuple[str, ...]]:
    return {name: describe(engine, source) for name, source in sources.items()}
