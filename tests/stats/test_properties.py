"""Properties that hold for any data (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from abpilot.stats.analysis import Arm, MetricInput, analyse
from abpilot.stats.bayes import best_arm, beta_posterior
from abpilot.stats.corrections import Correction, adjust
from abpilot.stats.frequentist import compare_proportions, wilson_interval
from abpilot.stats.options import AnalysisOptions

counts = st.integers(min_value=1, max_value=20_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)


@settings(max_examples=60, deadline=None)
@given(st.lists(counts, min_size=2, max_size=8))
def test_probabilities_of_being_best_sum_to_one(arms: list[tuple[int, int]]) -> None:
    result = best_arm([beta_posterior(s, n) for s, n in arms])
    assert math.isclose(sum(result.probability_best), 1.0, abs_tol=1e-9)
    assert all(0 <= p <= 1 for p in result.probability_best)
    assert all(loss >= 0 for loss in result.expected_loss)


@settings(max_examples=200)
@given(
    st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30),
    st.sampled_from(list(Correction)),
)
def test_adjusted_p_values_are_never_below_raw(raw: list[float], correction: Correction) -> None:
    for p, q in zip(raw, adjust(raw, correction), strict=True):
        assert q is not None
        assert p <= q + 1e-15 <= 1 + 1e-15


@settings(max_examples=200)
@given(counts)
def test_wilson_interval_contains_the_rate(arm: tuple[int, int]) -> None:
    s, n = arm
    ci = wilson_interval(s, n)
    assert ci is not None
    assert ci[0] - 1e-12 <= s / n <= ci[1] + 1e-12


@settings(max_examples=200, deadline=None)
@given(counts, counts)
def test_difference_and_lift_intervals_contain_their_estimates(
    t: tuple[int, int], c: tuple[int, int]
) -> None:
    comparison = compare_proportions(t[0], t[1], c[0], c[1])
    assert comparison.difference_ci is not None
    assert comparison.difference is not None
    assert comparison.difference_ci[0] - 1e-12 <= comparison.difference
    assert comparison.difference <= comparison.difference_ci[1] + 1e-12
    if comparison.lift is not None and comparison.lift_ci is not None:
        assert comparison.lift_ci[0] <= comparison.lift <= comparison.lift_ci[1]
    assert comparison.p_value is not None
    assert 0 <= comparison.p_value <= 1


@settings(max_examples=80, deadline=None)
@given(st.lists(counts, min_size=2, max_size=5), st.booleans())
def test_analysis_never_returns_nan(arms: list[tuple[int, int]], sequential: bool) -> None:
    metric = MetricInput(
        "m",
        True,
        tuple(
            Arm(f"v{i}", i == 0, 1 / len(arms), n, s, s / n, s / n * (1 - s / n))
            for i, (s, n) in enumerate(arms)
        ),
    )
    result = analyse([metric], metric="m", options=AnalysisOptions(sequential=sequential))
    for variant in result.variants:
        for value in (
            variant.p_value,
            variant.p_value_adjusted,
            variant.lift,
            variant.probability_best,
            variant.expected_loss,
            variant.difference,
        ):
            assert value is None or math.isfinite(value)
