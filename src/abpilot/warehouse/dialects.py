"""The SQL constructs whose spelling differs by engine, as SQLAlchemy elements with one
``@compiles`` override per dialect that needs one (docs/architecture.md §9). The plan uses only
these and portable Core (window functions, CASE, CAST to the generic types, UNION ALL).

- ``AddSeconds(moment, seconds)``: a timestamp plus a bound number of seconds (date arithmetic:
  PostgreSQL multiplies an interval, DuckDB ``to_seconds``, Snowflake ``DATEADD``, ClickHouse
  ``addSeconds``, BigQuery ``TIMESTAMP_ADD``, Databricks ``TIMESTAMPADD``);
- ``DayOf(moment)``: the calendar day of a timestamp (``CAST(.. AS DATE)``; ClickHouse
  ``toDate``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import types
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class AddSeconds(FunctionElement[Any]):
    """``moment`` plus ``seconds`` (an integer expression, a bound parameter in the plan)."""

    type = types.DateTime()
    inherit_cache = True
    name = "add_seconds"

    def __init__(self, moment: ColumnElement[Any], seconds: ColumnElement[Any]) -> None:
        super().__init__(moment, seconds)


class DayOf(FunctionElement[Any]):
    """The calendar day of ``moment``."""

    type = types.Date()
    inherit_cache = True
    name = "day_of"

    def __init__(self, moment: ColumnElement[Any]) -> None:
        super().__init__(moment)


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(arg, **kw) for arg in element.clauses]


@compiles(AddSeconds)
def _add_seconds(element: AddSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _args(element, compiler, **kw)
    return f"({moment} + {seconds} * INTERVAL '1 second')"


@compiles(AddSeconds, "duckdb")
def _add_seconds_duckdb(element: AddSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _args(element, compiler, **kw)
    return f"({moment} + to_seconds(CAST({seconds} AS BIGINT)))"


@compiles(AddSeconds, "snowflake")
def _add_seconds_snowflake(element: AddSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _args(element, compiler, **kw)
    return f"DATEADD(second, {seconds}, {moment})"


@compiles(AddSeconds, "clickhousedb")
def _add_seconds_clickhouse(element: AddSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _args(element, compiler, **kw)
    return f"addSeconds({moment}, {seconds})"


@compiles(AddSeconds, "bigquery")
def _add_seconds_bigquery(element: AddSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _args(element, compiler, **kw)
    return f"TIMESTAMP_ADD({moment}, INTERVAL {seconds} SECOND)"


@compiles(AddSeconds, "databricks")
def _add_seconds_databricks(element: AddSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _args(element, compiler, **kw)
    return f"TIMESTAMPADD(SECOND, {seconds}, {moment})"


@compiles(DayOf)
def _day_of(element: DayOf, compiler: SQLCompiler, **kw: Any) -> str:
    (moment,) = _args(element, compiler, **kw)
    return f"CAST({moment} AS DATE)"


@compiles(DayOf, "clickhousedb")
def _day_of_clickhouse(element: DayOf, compiler: SQLCompiler, **kw: Any) -> str:
    (moment,) = _args(element, compiler, **kw)
    return f"toDate({moment})"
