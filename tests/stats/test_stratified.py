"""Bandit-safe analysis: comparisons within periods of constant weights (Simpson's paradox)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

import abpilot
from abpilot.stats.stratified import Stratum, StratumArm, compare_binary, stratified_srm
from abpilot.store.base import AllocationRecord, EventKind


def arm(n: int, s: int) -> StratumArm:
    return StratumArm(n, s, s / n if n else None, None)


def cmh_closed_form(tables: list[tuple[int, int, int, int]]) -> float:
    """Cochran-Mantel-Haenszel chi-square (no continuity correction) from its formula."""
    deviation = variance = 0.0
    for a, b, c, d in tables:
        n = a + b + c + d
        row1, row2, col1, col2 = a + b, c + d, a + c, b + d
        deviation += a - row1 * col1 / n
        variance += row1 * row2 * col1 * col2 / (n * n * (n - 1))
    return float(stats.chi2.sf(deviation**2 / variance, 1))


def test_cmh_p_value_matches_the_closed_form() -> None:
    strata = [
        Stratum(0, (0.5, 0.5), (arm(1000, 100), arm(1000, 120))),
        Stratum(1, (0.2, 0.8), (arm(300, 40), arm(1200, 150))),
        Stratum(2, (0.1, 0.9), (arm(90, 5), arm(810, 60))),
    ]
    comparison = compare_binary(strata, 1, 0)
    tables = [
        (t.successes, t.n - t.successes, k.successes, k.n - k.successes)
        for t, k in ((s.arms[1], s.arms[0]) for s in strata)
    ]
    assert comparison.p_value == pytest.approx(cmh_closed_form(tables), abs=1e-9)
    # Mantel-Haenszel risk ratio from its formula.
    numerator = sum(a * (c + d) / (a + b + c + d) for a, b, c, d in tables)
    denominator = sum(c * (a + b) / (a + b + c + d) for a, b, c, d in tables)
    assert comparison.lift == pytest.approx(numerator / denominator - 1, abs=1e-12)
    assert comparison.difference_ci is not None
    assert comparison.difference_ci[0] < comparison.difference < comparison.difference_ci[1]


def test_srm_uses_the_weights_in_force_in_each_period() -> None:
    strata = [
        Stratum(0, (0.5, 0.5), (arm(1000, 0), arm(1000, 0))),
        Stratum(1, (0.1, 0.9), (arm(200, 0), arm(1800, 0))),
    ]
    check = stratified_srm(strata)
    assert check.p_value == pytest.approx(1.0)
    assert not check.flagged
    broken = stratified_srm([replace(strata[1], arms=(arm(400, 0), arm(1600, 0)))])
    assert broken.flagged
    observed, expected = np.array([400, 1600]), np.array([200, 1800])
    assert broken.p_value == pytest.approx(stats.chisquare(observed, expected).pvalue)


def test_a_bandit_that_moved_traffic_as_the_world_changed_does_not_fool_the_analysis() -> None:
    """Both arms convert 10% in period 0 (50/50) and 2% in period 1 (10/90). Pooled counts make
    the treatment look far worse and the split look broken; within periods nothing differs."""
    service = abpilot.open("memory://")
    variants = [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]
    exp = service.create_experiment(
        key="b",
        type="bandit",
        variants=variants,
        metrics=[],
        settings={"analysis": {"sample_size_per_variant": 100}},
    )
    service.start_experiment("b")

    def send(prefix: str, units: dict[str, tuple[int, int]]) -> None:
        events = []
        for variant, (n, converting) in units.items():
            for i in range(n):
                unit = f"{prefix}-{variant}-{i}"
                events.append(abpilot.EventInput(EventKind.EXPOSURE, "b", unit, variant))
                if i < converting:
                    events.append(abpilot.EventInput(EventKind.CONVERSION, "b", unit))
        service.record_events(events)

    send("p0", {"control": (1000, 100), "treatment": (1000, 100)})
    service.store.add_allocation(
        AllocationRecord(
            exp.id,
            0,
            datetime.now(UTC),
            {"control": 0.1, "treatment": 0.9},
            "exact",
            None,
            "events",
        )
    )
    service.lookup.clear()  # this process's view of the weights in force
    send("p1", {"control": (200, 4), "treatment": (1800, 36)})

    result = service.analyze_experiment("b")
    assert (result.stratified, result.periods, result.method) == (True, 2, "cmh_stratified")
    treatment = result.variants[1]
    assert treatment.p_value is not None
    assert treatment.p_value > 0.5
    assert treatment.difference == pytest.approx(0.0, abs=1e-9)
    assert not result.srm.flagged
    assert result.reason == "not_significant"
    # The naive pooled view, for contrast: 104/1200 vs 136/2800 and a 1200/2800 split.
    pooled = stats.fisher_exact([[136, 2800 - 136], [104, 1200 - 104]]).pvalue
    assert pooled < 1e-4
    assert stats.chisquare([1200, 2800]).pvalue < 1e-100


def test_the_sequential_test_within_periods_uses_the_periods_combined_variance() -> None:
    """Under ``sequential=true`` a value metric compared within periods is the mSPRT (closed
    form) of the inverse-variance weighted difference with ITS variance, computed here in NumPy
    from the units of each period, not of the pooled arms."""
    from abpilot.stats.analysis import Arm, MetricInput, analyse
    from abpilot.stats.options import AnalysisOptions

    rng = np.random.default_rng(12)
    sizes = [(200, 200), (300, 60)]  # the weights moved; the world shifted by +5
    periods, strata = [], []
    for p, (n_c, n_t) in enumerate(sizes):
        c, t = rng.normal(10 + 5 * p, 3, n_c), rng.normal(10.6 + 5 * p, 3, n_t)
        periods.append((c, t))
        strata.append(
            Stratum(
                p,
                (0.5, 0.5),
                tuple(
                    StratumArm(a.size, 0, float(a.mean()), float(np.var(a, ddof=1))) for a in (c, t)
                ),
            )
        )
    pooled = [np.concatenate([c for c, _ in periods]), np.concatenate([t for _, t in periods])]
    arms = tuple(
        Arm(key, i == 0, 0.5, a.size, 0, float(a.mean()), float(np.var(a, ddof=1)))
        for i, (key, a) in enumerate(zip(("control", "green"), pooled, strict=True))
    )
    metric = MetricInput("revenue", False, arms, strata=tuple(strata))
    tau = 0.5
    result = analyse([metric], metric="revenue", options=AnalysisOptions(sequential=True, tau=tau))
    weights = np.array(
        [1 / (np.var(c, ddof=1) / c.size + np.var(t, ddof=1) / t.size) for c, t in periods]
    )
    differences = np.array([t.mean() - c.mean() for c, t in periods])
    d, v = float(np.dot(weights, differences) / weights.sum()), float(1 / weights.sum())
    log_lambda = 0.5 * np.log(v / (v + tau**2)) + tau**2 * d**2 / (2 * v * (v + tau**2))
    half = np.sqrt(v * (v + tau**2) / tau**2 * np.log((v + tau**2) / (v * 0.05**2)))
    green = result.variants[1]
    assert result.method == "msprt"
    assert green.difference == pytest.approx(d, rel=1e-9)
    assert green.p_value == pytest.approx(min(1.0, float(np.exp(-log_lambda))), rel=1e-9)
    assert green.difference_ci == pytest.approx((d - half, d + half), rel=1e-9)
