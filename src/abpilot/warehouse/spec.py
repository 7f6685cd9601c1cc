"""Sources and an experiment's warehouse settings: what a user describes, checked (pure).

A **source** is a named SQL query of the user's: an ``assignment`` source returns ``unit_id``,
``experiment_key``, ``variant`` and ``timestamp`` (and optional dimension columns); a ``fact``
source returns ``unit_id``, ``timestamp`` and value columns. An experiment with ``"source":
"warehouse"`` keeps, in ``settings.warehouse``, its assignment source and, per metric, the
fact source, column, aggregation and window (``fold.fold`` moves the fields the faces accept on the
experiment and its metrics there); its ``dimensions`` (columns of the assignment source) are
the experiment's, as for an experiment of the events (``"dimension"`` is an alias of one).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.domain.experiment import Metric, MetricKind, validate_key
from abpilot.domain.text import check_text

SETTINGS_KEY = "warehouse"  # the experiment settings section of a warehouse experiment
WAREHOUSE = "warehouse"  # the "source" of an experiment analysed from the warehouse
EVENTS = "events"  # the "source" of an experiment analysed from the events it ingests
MAX_SQL = 100_000
MAX_WINDOW_HOURS = 24 * 366
METRIC_FIELDS = ("fact_source", "column", "aggregation", "window_hours")


class SourceKind(enum.StrEnum):
    ASSIGNMENT = "assignment"
    FACT = "fact"
    DAILY = "daily"  # a bandit's daily impressions and clicks per variant (the MAB API's flow)


REQUIRED_COLUMNS: dict[SourceKind, tuple[str, ...]] = {
    SourceKind.ASSIGNMENT: ("unit_id", "experiment_key", "variant", "timestamp"),
    SourceKind.FACT: ("unit_id", "timestamp"),
    SourceKind.DAILY: ("experiment_key", "day", "variant", "impressions", "clicks"),
}


class Aggregation(enum.StrEnum):
    """How a unit's fact rows in its window become the unit's value."""

    COUNT = "count"  # rows (of non-null ``column`` when one is named)
    SUM = "sum"
    COUNT_DISTINCT = "count_distinct"
    MAX = "max"
    ANY = "any"  # 1 when the unit has a row, the binary metric


@dataclass(frozen=True, slots=True)
class Source:
    """A named query. ``dimensions`` lists the columns (beyond the required ones) an analysis
    may break down by; ``columns`` of a fact source lists its value columns when the user
    wants them checked up front (the metrics name theirs anyway)."""

    name: str
    kind: SourceKind
    sql: str
    description: str = ""
    dimensions: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    def required(self) -> tuple[str, ...]:
        return (*REQUIRED_COLUMNS[self.kind], *self.dimensions, *self.columns)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "sql": self.sql,
            "description": self.description,
            "dimensions": list(self.dimensions),
            "columns": list(self.columns),
        }


def source_from(raw: Mapping[str, Any], where: str = "") -> Source:
    """A source from user input (a request body, a YAML entry), checked; ``where`` prefixes
    the fields errors name (``sources[2].``)."""
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where or 'source'} must be an object", field=where or "source")
    known = {"name", "kind", "sql", "description", "dimensions", "columns"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValidationError(
            f"unknown field {unknown[0]!r} in a source (known: {', '.join(sorted(known))})",
            field=f"{where}{unknown[0]}",
        )
    name = raw.get("name")
    if not isinstance(name, str):
        raise ValidationError("a source needs a name", field=f"{where}name")
    validate_key(name, field_name=f"{where}name")
    try:
        kind = SourceKind(str(raw.get("kind")))
    except ValueError:
        raise ValidationError(
            f"{where}kind must be 'assignment', 'fact' or 'daily' (got {raw.get('kind')!r:.60})",
            field=f"{where}kind",
        ) from None
    sql = raw.get("sql")
    check_text(sql, field=f"{where}sql", max_length=MAX_SQL)  # type: ignore[arg-type]
    assert isinstance(sql, str)
    body = sql.strip().rstrip(";").strip()
    if ";" in body:
        raise ValidationError(
            f"{where}sql must be one query (it is embedded as a subquery): remove the ';'",
            field=f"{where}sql",
        )
    description = raw.get("description") or ""
    check_text(description, field=f"{where}description", max_length=10_000, required=False)
    return Source(
        name=name,
        kind=kind,
        sql=body,
        description=description,
        dimensions=_names(raw.get("dimensions"), f"{where}dimensions"),
        columns=_names(raw.get("columns"), f"{where}columns"),
    )


def _names(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise ValidationError(f"{where} must be a list of column names", field=where)
    for i, name in enumerate(raw):
        if not isinstance(name, str):
            raise ValidationError(f"{where}[{i}] must be a column name", field=f"{where}[{i}]")
        check_column(name, f"{where}[{i}]")
    return tuple(raw)


def check_column(name: str, where: str) -> str:
    """A column name abpilot quotes into SQL as an identifier: letters, digits and '_'."""
    if not (name and len(name) <= 128 and name.replace("_", "a").isalnum() and name.isascii()):
        raise ValidationError(
            f"{where} must be a column name of letters, digits and '_' (got {name!r:.60})",
            field=where,
        )
    if name[0].isdigit():
        raise ValidationError(f"{where} must not start with a digit", field=where)
    return name


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Where a metric's values come from: ``aggregation`` of ``column`` over the unit's rows of
    ``fact_source`` within ``window_hours`` after its first exposure."""

    fact_source: str
    aggregation: Aggregation
    column: str | None = None
    window_hours: float | None = None  # None: every row from the first exposure on

    def to_json(self) -> dict[str, Any]:
        return {
            "fact_source": self.fact_source,
            "column": self.column,
            "aggregation": self.aggregation.value,
            "window_hours": self.window_hours,
        }


@dataclass(frozen=True, slots=True)
class WarehouseOptions:
    """``settings.warehouse`` of an experiment, checked: an assignment source and its metrics'
    fact sources (the analysis reads the refresh), and/or, for a bandit fed daily totals, a
    ``daily`` source whose days the refresh records as if they were posted."""

    assignment_source: str | None
    metrics: Mapping[str, MetricSpec] = field(default_factory=dict)
    # columns of the assignment source to break totals down by: the experiment's dimensions
    # (after the one a ``settings.warehouse.dimension`` of an older experiment names)
    dimensions: tuple[str, ...] = ()
    daily_source: str | None = None
    # Issue 18's metric fields, from the experiment's metrics: the covariate column (of the
    # assignment source) of each adjusted metric, the absolute and percentile caps, the ratios'
    # (numerator, denominator); computed in the warehouse (``derived_plan``).
    covariates: Mapping[str, str] = field(default_factory=dict)
    caps: Mapping[str, float] = field(default_factory=dict)
    percentile_caps: Mapping[str, float] = field(default_factory=dict)
    ratios: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def is_warehouse(settings: Mapping[str, Any]) -> bool:
    """The experiment is refreshed from the warehouse."""
    return isinstance(settings.get(SETTINGS_KEY), Mapping)


def analysed_in_warehouse(settings: Mapping[str, Any]) -> bool:
    """The experiment's analysis reads its latest refresh (it has an assignment source); a
    bandit fed only daily totals is analysed from its store like one fed by posts."""
    section = settings.get(SETTINGS_KEY)
    return isinstance(section, Mapping) and section.get("assignment_source") is not None


def warehouse_options(
    settings: Mapping[str, Any], metrics: Sequence[Metric], dimensions: Sequence[str] = ()
) -> WarehouseOptions:
    """``settings.warehouse`` checked against the experiment's metrics and dimensions: every
    metric but a ratio names its fact source; a binary metric aggregates by ``any``; a
    covariate and a dimension are columns (of the assignment source)."""
    raw = settings.get(SETTINGS_KEY)
    where = f"settings.{SETTINGS_KEY}"
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where} must be an object", field=where)
    unknown = sorted(set(raw) - {"assignment_source", "metrics", "dimension", "daily_source"})
    if unknown:
        raise ValidationError(f"unknown field {where}.{unknown[0]}", field=f"{where}.{unknown[0]}")
    daily = raw.get("daily_source")
    if daily is not None:
        if not isinstance(daily, str):
            raise ValidationError("daily_source must name a source", field="daily_source")
        validate_key(daily, field_name="daily_source")
    source = raw.get("assignment_source")
    if source is None and daily is not None:
        if raw.get("metrics") or raw.get("dimension") or dimensions:
            raise ValidationError(
                "metrics read from fact sources need an assignment_source",
                field="assignment_source",
            )
        return WarehouseOptions(None, {}, (), daily)
    if not isinstance(source, str):
        raise ValidationError(
            "a warehouse experiment names its assignment_source (a source of kind "
            "'assignment'), or for a bandit fed daily totals its daily_source",
            field="assignment_source",
        )
    validate_key(source, field_name="assignment_source")
    legacy = raw.get("dimension")
    if legacy is not None:
        check_column(legacy, f"{where}.dimension")
    for i, name in enumerate(dimensions):
        check_column(name, f"dimensions[{i}]")
    columns = tuple(dict.fromkeys([*([legacy] if legacy else []), *dimensions]))
    specs = raw.get("metrics") or {}
    if not isinstance(specs, Mapping):
        raise ValidationError(f"{where}.metrics must be an object", field=f"{where}.metrics")
    found: dict[str, MetricSpec] = {}
    read = {m.key for m in metrics if m.kind is not MetricKind.RATIO}
    for extra in sorted(set(specs) - read):
        raise ValidationError(
            f"{where}.metrics names '{extra:.100}', which is not a metric of the experiment"
            + (
                " read from a fact source (a ratio reads its parts)"
                if extra in _keys(metrics)
                else ""
            ),
            field=f"{where}.metrics.{extra}",
        )
    for i, m in enumerate(metrics):
        if m.kind is MetricKind.RATIO:
            continue
        if m.key not in specs:
            raise ValidationError(
                f"metric '{m.key}' of a warehouse experiment needs a fact_source, and an "
                "aggregation (count, sum, count_distinct, max, any) of one of its columns",
                field=f"metrics[{i}].fact_source",
            )
        found[m.key] = _metric_spec(specs[m.key], f"metrics[{i}]", m.kind is MetricKind.BINARY)
        if m.covariate is not None:
            check_column(m.covariate, f"metrics[{i}].covariate")
    return WarehouseOptions(
        source,
        found,
        columns,
        daily,
        covariates={m.key: m.covariate for m in metrics if m.covariate},
        caps={m.key: m.cap_absolute for m in metrics if m.cap_absolute is not None},
        percentile_caps={m.key: m.cap_percentile for m in metrics if m.cap_percentile is not None},
        ratios={
            m.key: (m.numerator or "", m.denominator or "")
            for m in metrics
            if m.kind is MetricKind.RATIO
        },
    )


def _keys(metrics: Sequence[Metric]) -> set[str]:
    return {m.key for m in metrics}


def _metric_spec(raw: Any, where: str, binary: bool) -> MetricSpec:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where} must be an object", field=where)
    unknown = sorted(set(raw) - set(METRIC_FIELDS))
    if unknown:
        raise ValidationError(f"unknown field {where}.{unknown[0]}", field=f"{where}.{unknown[0]}")
    fact_source = raw.get("fact_source")
    if not isinstance(fact_source, str):
        raise ValidationError(
            f"{where}.fact_source must name a fact source", field=f"{where}.fact_source"
        )
    validate_key(fact_source, field_name=f"{where}.fact_source")
    default = Aggregation.ANY if binary else Aggregation.SUM
    try:
        aggregation = Aggregation(raw.get("aggregation") or default)
    except ValueError:
        allowed = ", ".join(a.value for a in Aggregation)
        raise ValidationError(
            f"{where}.aggregation must be one of {allowed} (got {raw.get('aggregation')!r:.60})",
            field=f"{where}.aggregation",
        ) from None
    if binary and aggregation is not Aggregation.ANY:
        raise ValidationError(
            f"{where} is binary: its aggregation is 'any' (a unit converts when it has a row); "
            f"use kind 'value' for {aggregation.value}",
            field=f"{where}.aggregation",
        )
    column = raw.get("column")
    if column is not None:
        if not isinstance(column, str):
            raise ValidationError(f"{where}.column must be a column name", field=f"{where}.column")
        check_column(column, f"{where}.column")
    elif aggregation in (Aggregation.SUM, Aggregation.COUNT_DISTINCT, Aggregation.MAX):
        raise ValidationError(
            f"{where} aggregates by {aggregation.value}: name its column", field=f"{where}.column"
        )
    hours = raw.get("window_hours")
    if hours is not None and (
        isinstance(hours, bool)
        or not isinstance(hours, int | float)
        or not math.isfinite(hours)
        or not 0 < hours <= MAX_WINDOW_HOURS
    ):
        raise ValidationError(
            f"{where}.window_hours must be a number of hours in (0, {MAX_WINDOW_HOURS}] "
            f"(got {hours!r:.60})",
            field=f"{where}.window_hours",
        )
    return MetricSpec(fact_source, aggregation, column, None if hours is None else float(hours))
