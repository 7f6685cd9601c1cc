"""A percentile cap's analysis-time work (``abpilot.service.capping``): the threshold over every
unit and each variant's capped sums and Σ min(y, c)·x, per period, and per segment of a
dimension at the overall threshold, at up to 1,000,000 units, next to the same computation done
by NumPy on the unit-level arrays in the same run.

The per-unit read is not timed here (``benchmarks.unit_totals`` does): a source hands over
prepared columns, so only the capping code is measured. The reference: ``np.quantile`` of every
total with the zero units appended, then masked sums per (variant, period) and per
(segment, variant). Each figure is the best of the rounds; the results are checked equal.

Run ``python -m benchmarks.capping [--units N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from abpilot.domain import derived
from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    MetricKind,
    Variant,
)
from abpilot.domain.records import MetricTotals, UnitMetricTotals, VariantCounters
from abpilot.service import capping
from abpilot.stats.summary import Basis

VARIANTS = ("control", "a", "b")
PERIODS = 2
SEGMENTS = 10
QUANTILE = 0.99


class Source:
    """The per-unit read, from columns made once."""

    def __init__(self, metric: UnitMetricTotals, facts: UnitMetricTotals) -> None:
        self.metric, self.facts = metric, facts

    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        return self.facts if metric.startswith("~d:") else self.metric


def columns(units: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "variant": rng.integers(0, len(VARIANTS), units),
        "period": rng.integers(0, PERIODS, units),
        "segment": rng.integers(0, SEGMENTS, units),
        "total": rng.lognormal(2.0, 1.0, units),
        "x": rng.normal(10.0, 3.0, units),
    }


def source(data: dict[str, np.ndarray]) -> Source:
    units = [f"u{i}" for i in range(data["total"].size)]
    variants = [VARIANTS[v] for v in data["variant"]]
    metric = UnitMetricTotals(
        units,
        variants,
        data["period"].tolist(),
        [1] * len(units),
        data["total"].tolist(),
        data["x"].tolist(),
    )
    facts = UnitMetricTotals(
        units,
        variants,
        data["period"].tolist(),
        [1] * len(units),
        data["segment"].astype(float).tolist(),
        [0.0] * len(units),
    )
    return Source(metric, facts)


def experiment() -> tuple[Experiment, Metric]:
    metric = Metric("revenue", MetricKind.VALUE, covariate="pre", cap_percentile=QUANTILE)
    now = datetime.now(UTC)
    exp = Experiment(
        id=str(uuid.uuid4()),
        key="capping-bench",
        name="capping-bench",
        type=ExperimentType.AB_TEST,
        status=ExperimentStatus.RUNNING,
        traffic_allocation=1.0,
        salt="capping-bench",
        variants=tuple(Variant(v, v, 1 / 3, is_control=v == "control") for v in VARIANTS),
        metrics=(metric,),
        created_at=now,
        updated_at=now,
        dimensions=("country",),
    )
    return exp, metric


def counters(data: dict[str, np.ndarray], zero_units: int) -> dict[str, VariantCounters]:
    """Each variant's counters: its exposed units (those with a total and its share of the
    zero units) and the segment names."""
    names = {
        derived.value_name_cell("country", s, f"c{s}"): MetricTotals(count=1)
        for s in range(SEGMENTS)
    }
    return {
        v: VariantCounters(
            unique_units=int(np.count_nonzero(data["variant"] == i)) + zero_units // 3,
            derived=names if i == 0 else {},
        )
        for i, v in enumerate(VARIANTS)
    }


def with_capping(
    src: Source, exp: Experiment, metric: Metric, by: Mapping[str, VariantCounters]
) -> tuple[float, list[float]]:
    periods = [(p, (1 / 3,) * 3, by) for p in range(PERIODS)]
    found = capping.capped(src, exp, metric, Basis.EXPOSED_UNITS, by, periods)
    assert found is not None
    assert found.cap is not None
    segments = {f"c{s}": by for s in range(SEGMENTS)}
    overall = (Basis.EXPOSED_UNITS, by)
    per_segment = capping.segments(src, exp, metric, "country", segments, overall)
    sums = [found.periods[p][2][v].metrics["revenue"].sum for p in range(PERIODS) for v in VARIANTS]
    sums += [
        derived.cross_sum(per_segment[f"c{s}"].counters[v], "revenue")
        for s in range(SEGMENTS)
        for v in VARIANTS
    ]
    return found.cap, sums


def with_numpy(data: dict[str, np.ndarray], zero_units: int) -> tuple[float, list[float]]:
    totals = data["total"]
    cap = float(np.quantile(np.concatenate([totals, np.zeros(zero_units)]), QUANTILE))
    capped = np.minimum(totals, cap)
    sums = [
        float(capped[(data["variant"] == i) & (data["period"] == p)].sum())
        for p in range(PERIODS)
        for i in range(len(VARIANTS))
    ]
    sums += [
        float(np.dot(capped[m], data["x"][m]))
        for s in range(SEGMENTS)
        for i in range(len(VARIANTS))
        for m in [(data["segment"] == s) & (data["variant"] == i)]
    ]
    return cap, sums


def best(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    data = columns(args.units)
    zero_units = args.units // 2
    src, (exp, metric) = source(data), experiment()
    by = counters(data, zero_units)
    got, want = with_capping(src, exp, metric, by), with_numpy(data, zero_units)
    assert np.isclose(got[0], want[0]), "thresholds differ"
    assert np.allclose(got[1], want[1]), "capped sums differ"
    ours = best(lambda: with_capping(src, exp, metric, by), args.rounds)
    numpy = best(lambda: with_numpy(data, zero_units), args.rounds)
    print("| units (with a total) | service.capping | NumPy on the unit arrays | vs reference |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {args.units:,} | {ours:.2f} s | {numpy:.2f} s | {ours / numpy:.1f}x |")


if __name__ == "__main__":
    main()
