"""Per-variant summaries of a metric from the stored counters (n, sum, sum of squares).

The population is the variant's units: the exposed units when exposures carry unit ids, else
the assigned units, else (event-level mode, no unit ids at all) the exposures. Units that never
converted contribute a total of zero, so mean and variance are per unit of that population.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from abpilot.store.base import MetricTotals, VariantCounters


class Basis(enum.StrEnum):
    EXPOSED_UNITS = "exposed_units"
    ASSIGNED_UNITS = "assigned_units"
    EXPOSURES = "exposures"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class MetricSummary:
    count: int
    units: int
    sum: float
    sum_squares: float
    n: int
    basis: Basis
    mean: float | None
    variance: float | None
    conversion_rate: float | None
    conversions_exceed_population: bool


def population(counters: VariantCounters) -> tuple[int, Basis]:
    if counters.unique_units > 0:
        return counters.unique_units, Basis.EXPOSED_UNITS
    if counters.assigned_units > 0:
        return counters.assigned_units, Basis.ASSIGNED_UNITS
    if counters.exposures > 0:
        return counters.exposures, Basis.EXPOSURES
    return 0, Basis.NONE


def summarise(totals: MetricTotals, counters: VariantCounters) -> MetricSummary:
    n, basis = population(counters)
    converters = totals.count if basis is Basis.EXPOSURES else totals.units
    mean = totals.sum / n if n > 0 else None
    variance = None
    if n >= 2:
        # Sample variance of per-unit totals; clipped at 0 against rounding in sum_squares.
        variance = max(0.0, (totals.sum_squares - totals.sum * totals.sum / n) / (n - 1))
    return MetricSummary(
        count=totals.count,
        units=totals.units,
        sum=totals.sum,
        sum_squares=totals.sum_squares,
        n=n,
        basis=basis,
        mean=mean,
        variance=variance,
        conversion_rate=converters / n if n > 0 else None,
        conversions_exceed_population=converters > n,
    )
