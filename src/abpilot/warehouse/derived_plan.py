"""The derived sums of the plan (issue 18's statistics, computed in the warehouse): the parts
``plan.build_plan`` adds, beside a metric's own, for a metric adjusted by a covariate, a capped
metric and a ratio metric. Each part is rows of the plan's ``ROW_FIELDS`` whose ``metric`` is
the reserved cell name of ``abpilot.domain.derived`` (``~x``, ``~xy``, ``~cap``, ``~nd``, and
``~pct`` for a percentile cap's threshold), so the refresh reads them back into
``VariantCounters.derived`` exactly as a store groups the cells its counting core keeps:

- ``~x:<cov>`` per (variant, day, dimension value): exposed units, Σx, Σx² of the covariate
  column of the unit's first exposure row (a missing value counts as 0, the unit still counts);
- ``~xy:<metric>``: Σ x·y over the units with a total y of the metric;
- ``~cap:<metric>``: converting units, Σ min(y, c), Σ min(y, c)²;
- ``~cxy:<metric>``: Σ min(y, c)·x, for a capped metric adjusted by a covariate;
- ``~pct:<metric>``: a percentile cap's threshold c, once for the experiment (``variant`` ''):
  ``Percentile`` of every exposed unit's total, of every variant pooled, a unit without one
  counting as 0 (``abpilot.stats.capping``'s definition); ``count`` 1 when there is one, and
  ``units`` the units it is the quantile of; the capped sums use it;
- ``~nd:<ratio>``: Σ N·D of the per-unit totals of the ratio's parts (a unit lacking one adds 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement, Select

from abpilot.domain import derived
from abpilot.warehouse.dialects import Percentile

INT = sa.BigInteger()
FLOAT: sa.Double[float] = sa.Double()
TEXT = sa.String()
Label = Callable[[str, str], ColumnElement[Any]]  # (parameter name, cell name) -> metric column


def cell(name: str, value: str) -> ColumnElement[Any]:
    """A row's ``metric``: a cell name, bound as every value abpilot adds."""
    return sa.cast(sa.bindparam(name, value, TEXT), TEXT).label("metric")


def keys_of(cte: Any) -> list[ColumnElement[Any]]:
    """The grouping keys of a CTE of the plan: variant, day, the first dimension's value
    (``dimension``) and the others' (``dimension_<k>``, which rows carry last)."""
    extra = [c for c in cte.c if c.name.startswith("dimension_")]
    return [cte.c.variant, cte.c.day, cte.c.dimension, *extra]


def _row(
    metric: ColumnElement[Any],
    keys: Sequence[ColumnElement[Any]],
    *,
    units: ColumnElement[Any] | int = 0,
    count: ColumnElement[Any] | int = 0,
    total: ColumnElement[Any] | float = 0.0,
    squares: ColumnElement[Any] | float = 0.0,
) -> Select[Any]:
    def as_int(v: ColumnElement[Any] | int) -> ColumnElement[Any]:
        return sa.cast(v if isinstance(v, ColumnElement) else sa.literal(v, INT), INT)

    def as_float(v: ColumnElement[Any] | float) -> ColumnElement[Any]:
        return sa.cast(v if isinstance(v, ColumnElement) else sa.literal(v, FLOAT), FLOAT)

    return sa.select(
        metric,
        *keys[:3],
        as_int(units).label("units"),
        sa.cast(sa.literal(0, INT), INT).label("exposures"),
        as_int(count).label("count"),
        as_float(total).label("sum"),
        as_float(squares).label("sum_squares"),
        *keys[3:],
    )


def zero_if_null(value: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.func.coalesce(value, sa.cast(sa.literal(0.0, FLOAT), FLOAT))


def covariate_part(j: int, covariate: str, first: Any) -> Select[Any]:
    """``~x:<covariate>`` per (variant, day, dimension value) over the exposed units."""
    keys = keys_of(first)
    x = zero_if_null(first.c[f"x_{j}"])
    return _row(
        cell(f"covariate_{j}", derived.covariate_cell(covariate)),
        keys,
        units=sa.func.count(),
        total=sa.func.sum(x),
        squares=sa.func.sum(x * x),
    ).group_by(*keys)


def cross_part(i: int, key: str, per_unit: Any, x: str) -> Select[Any]:
    """``~xy:<metric>``: Σ x·y over the units with a total of metric ``i``."""
    keys = keys_of(per_unit)
    product = per_unit.c[f"total_{i}"] * zero_if_null(per_unit.c[x])
    return _row(
        cell(f"cross_{i}", derived.cross_cell(key)), keys, total=sa.func.sum(product)
    ).group_by(*keys)


def _capped(i: int, per_unit: Any, cap: ColumnElement[Any]) -> ColumnElement[Any]:
    total = per_unit.c[f"total_{i}"]
    return sa.case((total > cap, cap), else_=total)


def capped_part(i: int, key: str, per_unit: Any, cap: ColumnElement[Any]) -> Select[Any]:
    """``~cap:<metric>``: the units' totals of metric ``i`` capped at ``cap``."""
    keys = keys_of(per_unit)
    capped = _capped(i, per_unit, cap)
    return _row(
        cell(f"capped_{i}", derived.capped_cell(key)),
        keys,
        units=sa.func.count(),
        total=sa.func.sum(capped),
        squares=sa.func.sum(capped * capped),
    ).group_by(*keys)


def capped_cross_part(
    i: int, key: str, per_unit: Any, cap: ColumnElement[Any], x: str
) -> Select[Any]:
    """``~cxy:<metric>``: Σ min(y, c)·x over the units with a total of metric ``i``, which the
    covariate adjustment of a capped metric reads in place of Σxy."""
    keys = keys_of(per_unit)
    product = _capped(i, per_unit, cap) * zero_if_null(per_unit.c[x])
    return _row(
        cell(f"capped_cross_{i}", derived.capped_cross_cell(key)),
        keys,
        total=sa.func.sum(product),
    ).group_by(*keys)


def threshold(i: int, quantile: float, first: Any, per_unit: Any) -> Any:
    """A CTE of one row, ``threshold`` (NULL without units): the ``quantile`` of
    metric ``i``'s total of every exposed unit, 0 for a unit without one. DISTINCT makes the
    analytic form some dialects spell (BigQuery) one row too."""
    joined = first.outerjoin(per_unit, first.c.unit_id == per_unit.c.unit_id)
    value = zero_if_null(per_unit.c[f"total_{i}"])
    return (
        sa.select(Percentile(value, quantile).label("threshold"))
        .select_from(joined)
        .distinct()
        .cte(f"threshold_{i}")
    )


def threshold_part(i: int, key: str, found: Any, first: Any) -> Select[Any]:
    """``~pct:<metric>``: the threshold, once for the experiment (no variant, day or value)."""
    blank = sa.cast(sa.literal("", TEXT), TEXT)
    units = sa.select(sa.func.count()).select_from(first).scalar_subquery()
    return _row(
        cell(f"threshold_{i}", derived.threshold_cell(key)),
        [
            blank.label("variant"),
            sa.null().label("day"),
            blank.label("dimension"),
            *(blank.label(c.name) for c in keys_of(first)[3:]),
        ],
        units=units,
        count=sa.case((found.c.threshold.is_(None), 0), else_=1),
        total=zero_if_null(found.c.threshold),
    ).select_from(found)


def ratio_part(
    r: int, key: str, numerator: tuple[Any, int], denominator: tuple[Any, int]
) -> Select[Any]:
    """``~nd:<ratio>``: Σ N·D over the units with both parts' totals (the others add 0); the
    parts' per-unit CTEs (and the index of the part's total in them) are one or two."""
    (a, i), (b, k) = numerator, denominator
    keys = keys_of(a)
    product = a.c[f"total_{i}"] * b.c[f"total_{k}"]
    part = _row(cell(f"ratio_{r}", derived.ratio_cell(key)), keys, total=sa.func.sum(product))
    if a is not b:
        part = part.select_from(a.join(b, a.c.unit_id == b.c.unit_id))
    return part.group_by(*keys)
