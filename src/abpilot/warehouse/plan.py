"""The query plan of a refresh, once for every dialect (SQLAlchemy Core), and its rows read
back as the counters the analysis reads.

One statement, built from the user's sources embedded as subqueries (``text(sql).columns(..)
.subquery()``, never concatenated with values; every value abpilot adds, the experiment key, its
variants and the windows, is a bound parameter):

1. ``first_exposure`` (a CTE): the experiment's assignment rows ranked per unit by time; a
   unit's first row gives its variant, day and dimension value, and its row count its exposures
   (events count under the unit's first variant, as ``domain/counting.py`` rule 3 counts them).
2. Per fact source and window (a CTE each, shared by the metrics that read them): the unit's
   fact rows within ``window_hours`` after its first exposure, reduced per unit to its rows and
   each metric's total by the metric's aggregation (a binary ``any`` metric: one conversion of
   value 1); units without a row are not there,
   as a unit without a conversion has no running total on the event path.
3. Per (metric, variant, day, dimension value): ``units``, ``exposures``, ``count`` (fact rows),
   ``sum`` (of unit totals) and ``sum_squares`` (of squared unit totals): the meaning of
   ``MetricTotals`` (counting.py rule 5), so the analysis of a refresh and of the same events
   ingested is the same. The exposure rows carry the metric ''.

Only these aggregates leave the warehouse. The derived sums of issue 18 (a covariate's Σx, Σx²,
Σxy; a capped Σy, Σy² and a percentile cap's threshold; a ratio's Σ N·D) are rows of the same
fields whose ``metric`` is the reserved cell name (``derived_plan``); ``counters_of`` puts them
in ``VariantCounters.derived``, where the analysis reads a store's.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement, CompoundSelect, Select, Subquery

from abpilot.domain import derived
from abpilot.domain.records import MetricTotals, VariantCounters
from abpilot.warehouse import derived_plan
from abpilot.warehouse.dialects import AddSeconds, DayOf
from abpilot.warehouse.spec import Aggregation, MetricSpec, Source, WarehouseOptions

EXPOSURES = ""  # the metric of the rows that count units and exposures
ROW_FIELDS = (
    "metric", "variant", "day", "dimension", "units", "exposures", "count", "sum", "sum_squares",
)  # fmt: skip
_INT = sa.BigInteger()
_FLOAT: sa.Double[float] = sa.Double()
_TEXT = sa.String()


@dataclass(frozen=True, slots=True)
class Plan:
    statement: CompoundSelect[Any] | Select[Any]
    metrics: tuple[str, ...]


def source_query(source: Source, columns: Iterable[str]) -> Subquery:
    """The user's SQL as a subquery with the columns the plan reads."""
    names = list(dict.fromkeys(columns))
    textual = sa.text(source.sql).columns(*(sa.column(n) for n in names))
    return textual.subquery(f"src_{source.name.replace('-', '_').replace('.', '_')}")


def build_plan(
    *,
    experiment_key: str,
    variants: Sequence[str],
    options: WarehouseOptions,
    sources: Mapping[str, Source],
) -> Plan:
    """The refresh statement of an experiment; ``sources`` holds at least its assignment source
    and its metrics' fact sources (``abpilot.service.warehouse`` checks that they exist)."""
    assert options.assignment_source is not None
    assign_cols = ["unit_id", "experiment_key", "variant", "timestamp", *options.dimensions]
    covariates = sorted(set(options.covariates.values()))
    assign_cols.extend(covariates)
    a = source_query(sources[options.assignment_source], assign_cols)
    # Each dimension's value as text: ``dimension`` (the first, '' without one), then
    # ``dimension_<k>`` (rows carry them after the sums).
    dimensions: list[ColumnElement[Any]] = [
        sa.cast(a.c[d], _TEXT).label("dimension" if k == 0 else f"dimension_{k}")
        for k, d in enumerate(options.dimensions)
    ] or [sa.cast(sa.literal("", _TEXT), _TEXT).label("dimension")]
    ranked = (
        sa.select(
            a.c.unit_id.label("unit_id"),
            a.c.variant.label("variant"),
            a.c.timestamp.label("first_at"),
            *dimensions,
            # a missing covariate counts as 0 (coalesced before the cast: ClickHouse casts no
            # NULL to a non-nullable type)
            *(
                sa.cast(sa.func.coalesce(a.c[x], 0), _FLOAT).label(f"x_{j}")
                for j, x in enumerate(covariates)
            ),
            sa.func.row_number()
            .over(partition_by=a.c.unit_id, order_by=(a.c.timestamp, a.c.variant))
            .label("position"),
            sa.func.count().over(partition_by=a.c.unit_id).label("exposures"),
        )
        .where(
            a.c.experiment_key == sa.bindparam("experiment_key", experiment_key, _TEXT),
            a.c.variant.in_(sa.bindparam("variants", list(variants), expanding=True)),
            a.c.unit_id.is_not(None),
            a.c.timestamp.is_not(None),
        )
        .cte("ranked")
    )
    first = (
        sa.select(
            ranked.c.unit_id,
            ranked.c.variant,
            ranked.c.first_at,
            DayOf(ranked.c.first_at).label("day"),
            *(ranked.c[d.name] for d in dimensions),
            ranked.c.exposures,
            *(ranked.c[f"x_{j}"] for j in range(len(covariates))),
        )
        .where(ranked.c.position == 1)
        .cte("first_exposure")
    )
    keys = derived_plan.keys_of(first)
    parts: list[Select[Any]] = [
        sa.select(
            sa.cast(sa.literal(EXPOSURES, _TEXT), _TEXT).label("metric"),
            *keys[:3],
            sa.cast(sa.func.count(), _INT).label("units"),
            sa.cast(sa.func.sum(first.c.exposures), _INT).label("exposures"),
            sa.cast(sa.literal(0, _INT), _INT).label("count"),
            sa.cast(sa.literal(0.0, _FLOAT), _FLOAT).label("sum"),
            sa.cast(sa.literal(0.0, _FLOAT), _FLOAT).label("sum_squares"),
            *keys[3:],
        ).group_by(*keys)
    ]
    parts.extend(derived_plan.covariate_part(j, x, first) for j, x in enumerate(covariates))
    groups: dict[tuple[str, float | None], list[tuple[int, str, MetricSpec]]] = {}
    for i, (key, spec) in enumerate(options.metrics.items()):
        groups.setdefault((spec.fact_source, spec.window_hours), []).append((i, key, spec))
    x_of = {x: f"x_{j}" for j, x in enumerate(covariates)}
    totals_of: dict[str, tuple[Any, int]] = {}  # metric -> (its per-unit CTE, its index)
    for g, ((fact_source, hours), members) in enumerate(groups.items()):
        needed = sorted(
            {x_of[options.covariates[k]] for _, k, _ in members if k in options.covariates}
        )
        per_unit = _unit_totals(g, hours, members, first, sources[fact_source], needed)
        for i, key, spec in members:
            totals_of[key] = (per_unit, i)
            parts.append(_metric_part(i, key, spec, per_unit))
            parts.extend(_derived_parts(i, key, options, per_unit, first, x_of))
    for r, (key, (numerator, denominator)) in enumerate(options.ratios.items()):
        parts.append(derived_plan.ratio_part(r, key, totals_of[numerator], totals_of[denominator]))
    statement = parts[0] if len(parts) == 1 else sa.union_all(*parts)
    return Plan(statement, tuple(options.metrics))


def _unit_totals(
    g: int,
    hours: float | None,
    members: Sequence[tuple[int, str, MetricSpec]],
    first: Any,
    source: Source,
    covariates: Sequence[str] = (),
) -> Any:
    """Per unit, its fact rows in the window and each metric's total (``total_<i>``): the
    metrics that read one fact source over one window share one join (with the unit's
    ``covariates`` columns ``x_<j>`` its adjusted metrics read)."""
    value_columns = [spec.column for _, _, spec in members if spec.column]
    f = source_query(source, ["unit_id", "timestamp", *value_columns])
    within = [f.c.unit_id == first.c.unit_id, f.c.timestamp >= first.c.first_at]
    if hours is not None:
        seconds = sa.bindparam(f"window_seconds_{g}", round(hours * 3600), _INT)
        within.append(f.c.timestamp < AddSeconds(first.c.first_at, seconds))
    keys = derived_plan.keys_of(first)
    return (
        sa.select(
            first.c.unit_id,
            *keys,
            sa.func.count().label("rows"),
            *(
                _aggregate(spec.aggregation, f.c[spec.column] if spec.column else None).label(
                    f"total_{i}"
                )
                for i, _, spec in members
            ),
            *(first.c[x] for x in covariates),
        )
        .select_from(first.join(f, sa.and_(*within)))
        .group_by(first.c.unit_id, *keys, *(first.c[x] for x in covariates))
        .cte(f"unit_totals_{g}")
    )


def _metric_part(i: int, key: str, spec: MetricSpec, per_unit: Any) -> Select[Any]:
    keys = derived_plan.keys_of(per_unit)
    # A binary (``any``) metric counts one conversion per unit, as a unit converts once.
    rows = sa.func.count() if spec.aggregation is Aggregation.ANY else sa.func.sum(per_unit.c.rows)
    total = per_unit.c[f"total_{i}"]
    return sa.select(
        sa.cast(sa.bindparam(f"metric_{i}", key, _TEXT), _TEXT).label("metric"),
        *keys[:3],
        sa.cast(sa.func.count(), _INT).label("units"),
        sa.cast(sa.literal(0, _INT), _INT).label("exposures"),
        sa.cast(rows, _INT).label("count"),
        *(sa.cast(expr, _FLOAT).label(name) for name, expr in _sums(total).items()),
        *keys[3:],
    ).group_by(*keys)


def _sums(total: ColumnElement[Any]) -> dict[str, ColumnElement[Any]]:
    """The per-unit sums of a metric part, by row field: Σy, Σy²."""
    return {"sum": sa.func.sum(total), "sum_squares": sa.func.sum(total * total)}


def _derived_parts(
    i: int, key: str, options: WarehouseOptions, per_unit: Any, first: Any, x_of: Mapping[str, str]
) -> list[Select[Any]]:
    """The derived cells of metric ``i`` beside its own: Σxy of its covariate, its capped
    sums (and a percentile cap's threshold)."""
    found: list[Select[Any]] = []

    def capped(cap: ColumnElement[Any]) -> list[Select[Any]]:
        parts = [derived_plan.capped_part(i, key, per_unit, cap)]
        if key in options.covariates:
            x = x_of[options.covariates[key]]
            parts.append(derived_plan.capped_cross_part(i, key, per_unit, cap, x))
        return parts

    if key in options.covariates:
        found.append(derived_plan.cross_part(i, key, per_unit, x_of[options.covariates[key]]))
    if key in options.caps:
        cap = sa.bindparam(f"cap_{i}", options.caps[key], _FLOAT)
        found.extend(capped(cap))
    if key in options.percentile_caps:
        threshold = derived_plan.threshold(i, options.percentile_caps[key], first, per_unit)
        found.append(derived_plan.threshold_part(i, key, threshold, first))
        found.extend(capped(sa.select(threshold.c.threshold).scalar_subquery()))
    return found


def _aggregate(aggregation: Aggregation, value: ColumnElement[Any] | None) -> ColumnElement[Any]:
    """A unit's total over its rows in the window, as a double."""
    if aggregation is Aggregation.ANY:
        return sa.cast(sa.literal(1.0, _FLOAT), _FLOAT)
    if aggregation is Aggregation.COUNT:
        return sa.cast(sa.func.count() if value is None else sa.func.count(value), _FLOAT)
    assert value is not None
    if aggregation is Aggregation.COUNT_DISTINCT:
        return sa.cast(sa.func.count(sa.distinct(value)), _FLOAT)
    if aggregation is Aggregation.MAX:
        return sa.cast(sa.func.max(sa.cast(value, _FLOAT)), _FLOAT)
    return sa.cast(sa.func.sum(sa.cast(value, _FLOAT)), _FLOAT)


@dataclass(frozen=True, slots=True)
class Row:
    """One aggregate row of a refresh (``ROW_FIELDS``)."""

    metric: str
    variant: str
    day: str
    dimension: str
    units: int
    exposures: int
    count: int
    sum: float
    sum_squares: float
    more: tuple[str, ...] = ()  # the values of the experiment's other dimensions, in order

    @property
    def values(self) -> tuple[str, ...]:
        """The value of each dimension ('' where the unit has none)."""
        return (self.dimension, *self.more)

    @classmethod
    def read(cls, raw: Sequence[Any]) -> Row:
        metric, variant, day, dimension, units, exposures, count, total, squares = raw[:9]
        return cls(
            str(metric or ""),
            str(variant),
            "" if day is None else str(day)[:10],
            "" if dimension is None else str(dimension),
            int(units or 0),
            int(exposures or 0),
            int(count or 0),
            float(total or 0.0),
            float(squares or 0.0),
            tuple("" if v is None else str(v) for v in raw[9:]),
        )

    def to_json(self) -> list[Any]:
        return [*(getattr(self, name) for name in ROW_FIELDS), *self.more]


def counters_of(
    rows: Iterable[Row],
    *,
    day: str | None = None,
    dimension: str | None = None,
    segment: tuple[int, Container[str]] | None = None,
) -> dict[str, VariantCounters]:
    """Per variant the counters of these rows (every day and dimension value, or those named:
    ``dimension`` a value of the first dimension, ``segment`` (k, values) of the k-th),
    as a store gives them for ingested events: exposed units are the assigned units too, and
    the reserved cells (``derived_plan``) are in ``derived``; a row of the whole experiment
    (no variant: a percentile cap's threshold) is in every variant's."""
    units: dict[str, list[int]] = {}
    metrics: dict[str, dict[str, list[float]]] = {}
    shared: dict[str, MetricTotals] = {}
    for row in rows:
        if not row.variant:
            shared[row.metric] = MetricTotals(row.count, row.units, row.sum, row.sum_squares)
            continue
        if (
            (day is not None and row.day != day)
            or (dimension is not None and row.dimension != dimension)
            or (segment is not None and _value(row, segment[0]) not in segment[1])
        ):
            continue
        if row.metric == EXPOSURES:
            found = units.setdefault(row.variant, [0, 0])
            found[0] += row.units
            found[1] += row.exposures
        else:
            sums = metrics.setdefault(row.variant, {}).setdefault(row.metric, [0, 0, 0.0, 0.0])
            sums[0] += row.count
            sums[1] += row.units
            sums[2] += row.sum
            sums[3] += row.sum_squares

    def totals(variant: str, reserved: bool) -> dict[str, MetricTotals]:
        return {
            key: MetricTotals(int(s[0]), int(s[1]), s[2], s[3])
            for key, s in metrics.get(variant, {}).items()
            if derived.is_reserved(key) is reserved
        }

    return {
        variant: VariantCounters(
            assigned_units=units.get(variant, [0, 0])[0],
            exposures=units.get(variant, [0, 0])[1],
            unique_units=units.get(variant, [0, 0])[0],
            metrics=totals(variant, False),
            derived={**totals(variant, True), **shared},
        )
        for variant in sorted(units.keys() | metrics.keys())
    }


def _value(row: Row, k: int) -> str:
    values = row.values
    return values[k] if k < len(values) else ""


def build_daily_plan(*, experiment_key: str, variants: Sequence[str], source: Source) -> Any:
    """A bandit's daily totals from a ``daily`` source: per (day, variant) the impressions and
    clicks, summed over the source's rows of the experiment."""
    d = source_query(source, ("experiment_key", "day", "variant", "impressions", "clicks"))
    day = DayOf(d.c.day)
    return (
        sa.select(
            day.label("day"),
            d.c.variant,
            sa.cast(sa.func.sum(d.c.impressions), _INT).label("impressions"),
            sa.cast(sa.func.sum(d.c.clicks), _INT).label("clicks"),
        )
        .where(
            d.c.experiment_key == sa.bindparam("experiment_key", experiment_key, _TEXT),
            d.c.variant.in_(sa.bindparam("variants", list(variants), expanding=True)),
            d.c.day.is_not(None),
        )
        .group_by(day, d.c.variant)
        .order_by(day, d.c.variant)
    )
