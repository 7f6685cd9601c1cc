"""A percentile cap's capped sums per variant and per period of constant weights
(``abpilot.service.capping``), against NumPy on the unit-level totals."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    MetricKind,
    Variant,
)
from abpilot.domain.records import MetricTotals, StoredAssignment, UnitMetricTotals, VariantCounters
from abpilot.service.capping import capped
from abpilot.stats.summary import Basis

NOW = datetime(2026, 12, 6, tzinfo=UTC)
QUANTILE = 0.9


class Totals:
    """A UnitTotalsSource holding fixed per-unit totals."""

    def __init__(self, units: UnitMetricTotals) -> None:
        self.units = units

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        return self.units


def test_percentile_capped_sums_per_variant_and_period_match_numpy() -> None:
    rng = np.random.default_rng(7)
    size = 600
    variant = rng.integers(0, 2, size=size)
    period = rng.integers(0, 3, size=size)
    totals = np.round(rng.lognormal(2.0, 1.0, size=size), 2)
    keys = ("control", "b")
    units = UnitMetricTotals()
    for i in range(size):
        units.add(f"u{i}", StoredAssignment(keys[variant[i]], int(period[i])), 1, totals[i], 0.0)
    zero_units = {"control": 40, "b": 60}  # exposed units without a total
    exposed = {k: int(np.sum(variant == v)) + zero_units[k] for v, k in enumerate(keys)}
    counters = {k: VariantCounters(unique_units=exposed[k], exposures=exposed[k]) for k in keys}
    exp = Experiment(
        id="e1",
        key="e1",
        name="e1",
        type=ExperimentType.AB_TEST,
        status=ExperimentStatus.RUNNING,
        traffic_allocation=1.0,
        salt="s",
        variants=(Variant("control", "control", 0.5, is_control=True), Variant("b", "b", 0.5)),
        metrics=(Metric("spend", MetricKind.VALUE, cap_percentile=QUANTILE),),
        created_at=NOW,
        updated_at=NOW,
    )
    periods = [(p, (0.5, 0.5), counters) for p in range(3)]
    found = capped(Totals(units), exp, exp.metrics[0], Basis.EXPOSED_UNITS, counters, periods)
    assert found is not None
    everyone = np.concatenate([totals, np.zeros(sum(zero_units.values()))])
    cap = float(np.quantile(everyone, QUANTILE))
    assert found.cap is not None
    assert abs(found.cap - cap) <= 1e-12 * cap
    values = np.minimum(totals, cap)
    for v, key in enumerate(keys):
        chosen = values[variant == v]
        got = found.counters[key].metrics["spend"]
        assert abs(got.sum - chosen.sum()) <= 1e-9 * chosen.sum()
        assert abs(got.sum_squares - np.dot(chosen, chosen)) <= 1e-9 * np.dot(chosen, chosen)
        for p, (number, _, by_variant) in enumerate(found.periods):
            assert number == p
            chosen = values[(variant == v) & (period == p)]
            got = by_variant[key].metrics["spend"]
            assert abs(got.sum - chosen.sum()) <= 1e-9 * chosen.sum()
            assert got.count == 0  # a cap changes values, not who converted
    assert found.counters["b"].metrics["spend"] != MetricTotals()
