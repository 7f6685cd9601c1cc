"""The experiment of the analysis benchmark (``benchmarks.analysis``) as unit-level arrays, how it
is loaded into a store, and the NumPy reference that computes the analysis from those arrays.

The experiment: 3 variants (``control``, ``b``, ``c``), a 10-value dimension ``country`` and four
metrics: ``revenue`` (a value metric adjusted by the covariate ``pre_revenue``, CUPED), ``orders``
(a plain value metric), ``revenue_per_order`` (the ratio of the two) and ``basket`` (a value
metric capped at the 0.99 quantile of every unit's total). Every unit is exposed once (with its
covariate and country); 40% of the units convert, with one conversion of each value metric.

The reference works from the arrays alone, with NumPy, not from abpilot's counters: per-variant
means and sample variances of the per-unit totals (0 for a unit that did not convert), CUPED
with theta = cov(y, x) / var(x) over the units of every variant pooled, the delta-method
variance of the ratio of per-unit sums, the cap as ``numpy.quantile`` (linear) of every unit's
total, and the same per segment (within a segment, theta is pooled over the segment's units and
the cap is not applied, as abpilot documents).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from abpilot.domain.inputs import EventInput, EventKind

VARIANTS = ("control", "b", "c")
COUNTRIES = ("nl", "de", "fr", "be", "es", "it", "pl", "se", "dk", "at")
DIMENSION = "country"
COVARIATE = "pre_revenue"
ADJUSTED, PLAIN, RATIO, CAPPED = "revenue", "orders", "revenue_per_order", "basket"
METRICS = (ADJUSTED, PLAIN, RATIO, CAPPED)
QUANTILE = 0.99
CONVERTING = 0.4

Numbers = dict[tuple[str, ...], float]
"""Named figures of an analysis: (scope, metric, variant, field) -> value."""


@dataclass(frozen=True, slots=True)
class Population:
    """Unit i is ``u<i>``: its variant and country (indices), covariate and metric totals."""

    variant: NDArray[np.int64]
    country: NDArray[np.int64]
    pre_revenue: NDArray[np.float64]
    revenue: NDArray[np.float64]
    orders: NDArray[np.float64]
    basket: NDArray[np.float64]

    @property
    def size(self) -> int:
        return int(self.variant.size)


def population(units: int, seed: int = 18) -> Population:
    rng = np.random.default_rng(seed)
    variant = rng.integers(0, len(VARIANTS), size=units)
    country = rng.choice(len(COUNTRIES), size=units, p=np.linspace(2, 1, len(COUNTRIES)) / 15)
    x = np.round(rng.gamma(2.0, 10.0, size=units), 2)
    converts = rng.random(units) < CONVERTING
    effect = np.array([0.0, 1.0, 2.5])[variant]
    orders = np.where(converts, rng.integers(1, 4, size=units), 0).astype(np.float64)
    noise = rng.normal(0.0, 8.0, size=units)
    revenue = np.where(converts, np.round(np.maximum(0.5 * x + effect + noise, 1.0), 2), 0.0)
    basket = np.where(converts, np.round(rng.lognormal(3.0, 1.2, size=units), 2), 0.0)
    return Population(variant, country, x, revenue, orders, basket)


def definition() -> dict[str, Any]:
    """``create_experiment``'s keyword arguments for the benchmark's experiment."""
    return {
        "name": "analysis benchmark",
        "variants": [{"key": v, "name": v} for v in VARIANTS],
        "metrics": [
            {"key": ADJUSTED, "kind": "value", "covariate": COVARIATE},
            {"key": PLAIN, "kind": "value"},
            {"key": RATIO, "kind": "ratio", "numerator": ADJUSTED, "denominator": PLAIN},
            {"key": CAPPED, "kind": "value", "cap": {"percentile": QUANTILE}},
        ],
        "dimensions": [DIMENSION],
    }


def event_batches(pop: Population, experiment: str, batch: int) -> Iterator[list[EventInput]]:
    """Every unit's exposure (naming its variant, with its covariate and country), then its
    conversions, in batches of about ``batch`` events; a unit's events share a batch."""
    events: list[EventInput] = []
    for i in range(pop.size):
        unit = f"u{i}"
        events.append(
            EventInput(
                kind=EventKind.EXPOSURE,
                experiment=experiment,
                unit_id=unit,
                variant=VARIANTS[pop.variant[i]],
                covariates={COVARIATE: float(pop.pre_revenue[i])},
                dimensions={DIMENSION: COUNTRIES[pop.country[i]]},
            )
        )
        if pop.orders[i] > 0:
            for metric, values in ((ADJUSTED, pop.revenue), (PLAIN, pop.orders)):
                events.append(_conversion(experiment, unit, metric, float(values[i])))
            events.append(_conversion(experiment, unit, CAPPED, float(pop.basket[i])))
        if len(events) >= batch:
            yield events
            events = []
    if events:
        yield events


def _conversion(experiment: str, unit: str, metric: str, value: float) -> EventInput:
    return EventInput(
        kind=EventKind.CONVERSION,
        experiment=experiment,
        unit_id=unit,
        metric=metric,
        value=value,
    )


# the NumPy reference ---------------------------------------------------------------------------


def _arm(numbers: Numbers, scope: tuple[str, ...], y: NDArray[np.float64]) -> float:
    numbers[(*scope, "units")] = float(y.size)
    numbers[(*scope, "mean")] = float(y.mean())
    numbers[(*scope, "variance")] = float(y.var(ddof=1))
    return float(y.mean())


def _metrics(
    numbers: Numbers, scope: str, pop: Population, rows: NDArray[np.bool_], threshold: float
) -> None:
    """Every metric of the units ``rows`` (all, or a segment's) under ``scope``, the capped
    metric at ``threshold`` (the experiment's one, within segments too)."""
    arms = [rows & (pop.variant == v) for v in range(len(VARIANTS))]
    x, y = pop.pre_revenue[rows], pop.revenue[rows]
    theta = float(np.cov(y, x)[0, 1] / x.var(ddof=1))
    means = {}
    for v, arm in zip(VARIANTS, arms, strict=True):
        means[(PLAIN, v)] = _arm(numbers, (scope, PLAIN, v), pop.orders[arm])
        means[(ADJUSTED, v)] = _arm(numbers, (scope, ADJUSTED, v), pop.revenue[arm])
        means[(COVARIATE, v)] = float(pop.pre_revenue[arm].mean())
        numerator, denominator = pop.revenue[arm], pop.orders[arm]
        mean_n, mean_d = numerator.mean(), denominator.mean()
        covariance = np.cov(numerator, denominator)
        per_unit = (
            covariance[0, 0] / mean_d**2
            + mean_n**2 * covariance[1, 1] / mean_d**4
            - 2 * mean_n * covariance[0, 1] / mean_d**3
        )
        numbers[(scope, RATIO, v, "units")] = float(numerator.size)
        numbers[(scope, RATIO, v, "mean")] = means[(RATIO, v)] = float(mean_n / mean_d)
        numbers[(scope, RATIO, v, "variance")] = float(per_unit)
    numbers[(scope, CAPPED, "", "cap")] = threshold
    capped = np.minimum(pop.basket, threshold)
    for v, arm in zip(VARIANTS, arms, strict=True):
        means[(CAPPED, v)] = _arm(numbers, (scope, CAPPED, v), capped[arm])
    for v in VARIANTS[1:]:
        for metric in (PLAIN, RATIO, CAPPED):
            numbers[(scope, metric, v, "difference")] = (
                means[(metric, v)] - means[(metric, "control")]
            )
        raw = means[(ADJUSTED, v)] - means[(ADJUSTED, "control")]
        shift = means[(COVARIATE, v)] - means[(COVARIATE, "control")]
        numbers[(scope, ADJUSTED, v, "unadjusted_difference")] = raw
        numbers[(scope, ADJUSTED, v, "theta")] = theta
        numbers[(scope, ADJUSTED, v, "difference")] = raw - theta * shift


def reference_analysis(pop: Population) -> Numbers:
    """The analysis over every unit: every metric of every variant."""
    numbers: Numbers = {}
    _metrics(numbers, "all", pop, np.ones(pop.size, dtype=bool), overall_threshold(pop))
    return numbers


def overall_threshold(pop: Population) -> float:
    """The percentile cap of the capped metric over every unit of every variant."""
    return float(np.quantile(pop.basket, QUANTILE))


def reference_segments(pop: Population) -> Numbers:
    """The same per country, the capped metric at the experiment's threshold."""
    numbers: Numbers = {}
    threshold = overall_threshold(pop)
    for c, country in enumerate(COUNTRIES):
        _metrics(numbers, country, pop, pop.country == c, threshold)
    return numbers
