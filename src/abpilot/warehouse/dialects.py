"""The SQL constructs whose spelling differs by engine, as SQLAlchemy elements with one
``@compiles`` override per dialect that needs one (docs/architecture.md §9). The plan uses only
these and portable Core (window functions, CASE, CAST to the generic types, UNION ALL).

- ``AddSeconds(moment, seconds)``: a timestamp plus a bound number of seconds (date arithmetic:
  PostgreSQL multiplies an interval, DuckDB ``to_seconds``, Snowflake ``DATEADD``, ClickHouse
  ``addSeconds``, BigQuery ``TIMESTAMP_ADD``, Databricks ``TIMESTAMPADD``);
- ``DayOf(moment)``: the calendar day of a timestamp (``CAST(.. AS DATE)``; ClickHouse
  ``toDate``);
- ``Percentile(value, quantile)``: the quantile by linear interpolation between order
  statistics (Hyndman and Fan's type 7, ``abpilot.stats.capping``'s definition), an aggregate:
  ``percentile_cont(q) WITHIN GROUP (ORDER BY value)`` (PostgreSQL, DuckDB, Snowflake,
  Databricks); ClickHouse ``quantileExactInclusive(q)(value)``; BigQuery has it only as an
  analytic function, ``PERCENTILE_CONT(value, q) OVER ()`` (the plan selects it DISTINCT).
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


class Percentile(FunctionElement[Any]):
    """The ``quantile`` (a number in (0, 1), checked with the metric, written into the SQL as
    a number: engines take it only as a constant) of ``value`` over the rows."""

    type = types.Double()
    inherit_cache = False  # the quantile is not a clause: no cached statement may share it
    name = "percentile"

    def __init__(self, value: ColumnElement[Any], quantile: float) -> None:
        super().__init__(value)
        if not 0 < quantile < 1:
            raise ValueError(f"a quantile is in (0, 1) (got {quantile!r})")
        self.quantile = float(quantile)


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


@compiles(Percentile)
def _percentile(element: Percentile, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = _args(element, compiler, **kw)
    return f"percentile_cont({element.quantile!r}) WITHIN GROUP (ORDER BY {value})"


@compiles(Percentile, "clickhousedb")
def _percentile_clickhouse(element: Percentile, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = _args(element, compiler, **kw)
    return f"quantileExactInclusive({element.quantile!r})({value})"


@compiles(Percentile, "bigquery")
def _percentile_bigquery(element: Percentile, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = _args(element, compiler, **kw)
    return f"PERCENTILE_CONT({value}, {element.quantile!r}) OVER ()"
