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


def _spell(element: type[FunctionElement[Any]], spellings: dict[str | None, str]) -> None:
    """One ``@compiles`` per dialect named (None: every other dialect), each spelling a template
    of the element's compiled arguments (``{0}``, ``{1}``) and, for ``Percentile``, its
    quantile (``{q}``)."""
    for dialect, template in spellings.items():

        def spelled(
            found: FunctionElement[Any], compiler: SQLCompiler, _template: str = template, **kw: Any
        ) -> str:
            args = [compiler.process(arg, **kw) for arg in found.clauses]
            return _template.format(*args, q=repr(getattr(found, "quantile", None)))

        compiles(element, *([dialect] if dialect else []))(spelled)


_spell(
    AddSeconds,
    {
        None: "({0} + {1} * INTERVAL '1 second')",
        "duckdb": "({0} + to_seconds(CAST({1} AS BIGINT)))",
        "snowflake": "DATEADD(second, {1}, {0})",
        "clickhousedb": "addSeconds({0}, {1})",
        "bigquery": "TIMESTAMP_ADD({0}, INTERVAL {1} SECOND)",
        "databricks": "TIMESTAMPADD(SECOND, {1}, {0})",
    },
)
_spell(DayOf, {None: "CAST({0} AS DATE)", "clickhousedb": "toDate({0})"})
_spell(
    Percentile,
    {
        None: "percentile_cont({q}) WITHIN GROUP (ORDER BY {0})",
        "clickhousedb": "quantileExactInclusive({q})({0})",
        "bigquery": "PERCENTILE_CONT({0}, {q}) OVER ()",
    },
)
