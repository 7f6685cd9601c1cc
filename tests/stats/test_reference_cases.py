"""abpilot's statistics against reference values from SciPy, statsmodels and closed forms
(tests/cases/analysis.json, written by tests/cases/make_cases.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abpilot.stats.analysis import Arm, MetricInput, analyse
from abpilot.stats.corrections import Correction, adjust
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.power import proportion_sample_size
from abpilot.stats.srm import sample_ratio_check
from abpilot.stats.summary import summarise
from abpilot.store.base import MetricTotals, VariantCounters

CASES = json.loads((Path(__file__).parents[1] / "cases" / "analysis.json").read_text())
EXACT = 1e-6


def binary_analysis(arms: list[list[int]], prior: list[float]) -> Any:
    weight = 1 / len(arms)
    metric = MetricInput(
        "conversion",
        True,
        tuple(Arm(f"v{i}", i == 0, weight, n, s, s / n, None) for i, (s, n) in enumerate(arms)),
    )
    options = AnalysisOptions(correction=Correction.NONE, prior=(prior[0], prior[1]))
    return analyse([metric], metric="conversion", options=options)


def close(actual: Any, expected: Any, tolerance: float = EXACT) -> None:
    assert actual is not None
    assert np.allclose(actual, expected, rtol=0, atol=tolerance), (actual, expected)


@pytest.mark.parametrize(
    "case",
    [*CASES["binary"].values(), CASES["binary_ad_prior"]],
    ids=[*CASES["binary"], "ad_team_prior"],
)
def test_binary_metrics_match_the_references(case: dict[str, Any]) -> None:
    result = binary_analysis(case["arms"], case["prior"])
    for actual, expected in zip(result.variants, case["variants"], strict=True):
        close(actual.conversion_rate, expected["rate"])
        close(actual.ci, expected["ci"])
        close(actual.probability_best, expected["probability_best"])
        close(actual.expected_loss, expected["expected_loss"])
        close(actual.credible_interval, expected["credible_interval"])
        if actual.is_control:
            continue
        close(actual.p_value, expected["p_value"])
        close(actual.difference, expected["difference"])
        close(actual.difference_ci, expected["difference_ci"])
        close(actual.chance_to_beat_control, expected["chance_to_beat_control"])
        if "p_value_z" in expected:
            close(actual.p_value_z, expected["p_value_z"])
        else:
            assert actual.p_value_z is None
        if "lift" in expected:
            close(actual.lift, expected["lift"])
            close(actual.lift_ci, expected["lift_ci"])
        else:
            assert actual.lift is None


def test_ad_team_seed_example_probabilities() -> None:
    # The ad team's prior Beta(1, 99) (docs/architecture.md §3); 4480, 5880, 5320 clicks on
    # 140,000 impressions each.
    case = CASES["binary_ad_prior"]
    result = binary_analysis(case["arms"], case["prior"])
    shares = [v.probability_best for v in result.variants]
    assert shares[1] == pytest.approx(case["variants"][1]["probability_best"], abs=EXACT)
    assert sum(shares) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", list(CASES["value"]))
def test_welch_from_moments_matches_scipy_on_raw_values(name: str) -> None:
    case = CASES["value"][name]
    arms = []
    for i, units in enumerate(case["units"]):
        values = np.array(units)
        # The store's route: n units, converting units, sum and sum of squares of unit totals.
        totals = MetricTotals(
            count=int((values != 0).sum()),
            units=int((values != 0).sum()),
            sum=float(values.sum()),
            sum_squares=float((values**2).sum()),
        )
        summary = summarise(totals, VariantCounters(unique_units=len(values)))
        close(summary.mean, case["mean"][i], 1e-9)
        close(summary.variance, case["variance"][i], 1e-7)
        arms.append(
            Arm(f"v{i}", i == 0, 0.5, summary.n, summary.units, summary.mean, summary.variance)
        )
    result = analyse(
        [MetricInput("revenue", False, tuple(arms))],
        metric="revenue",
        options=AnalysisOptions(correction=Correction.NONE),
    )
    variant = result.variants[1]
    close(variant.p_value, case["p_value"])
    close(variant.difference_ci, case["difference_ci"])
    assert result.method == "welch_t"


@pytest.mark.parametrize("case", CASES["srm"])
def test_srm_matches_chi_square(case: dict[str, Any]) -> None:
    check = sample_ratio_check(case["observed"], case["weights"])
    close(check.p_value, case["p_value"])
    assert check.flagged == (case["p_value"] < 0.001)


def test_srm_needs_eight_units_per_variant() -> None:
    check = sample_ratio_check([7, 300], [0.5, 0.5])
    assert (check.p_value, check.flagged, check.reason) == (None, False, "insufficient_data")


@pytest.mark.parametrize(
    ("method", "correction"), [("holm", Correction.HOLM), ("bh", Correction.BENJAMINI_HOCHBERG)]
)
def test_corrections_match_statsmodels(method: str, correction: Correction) -> None:
    raw = CASES["corrections"]["p_values"]
    close(adjust(raw, correction), CASES["corrections"][method], 1e-12)
    assert adjust(raw, Correction.NONE) == raw


def test_untestable_comparisons_stay_out_of_the_family() -> None:
    assert adjust([0.01, None, 0.04], Correction.HOLM) == pytest.approx([0.02, None, 0.04])


@pytest.mark.parametrize("case", CASES["sample_size"])
def test_sample_size_matches_the_closed_form(case: dict[str, Any]) -> None:
    plan = proportion_sample_size(
        baseline_rate=case["baseline"],
        mde=case["target"] - case["baseline"],
        alpha=case["alpha"],
        power=case["power"],
        variants=case["variants"],
    )
    # statsmodels solves the two-sided power exactly; the closed form drops the far tail.
    assert abs(plan.required_per_variant - case["required"]) <= 1
    assert plan.total == plan.required_per_variant * case["variants"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_holm_matches_statsmodels_on_any_p_values(p_values: list[float]) -> None:
    from statsmodels.stats.multitest import multipletests

    # multipletests runs gc.collect() on every call, which takes ~0.1 s in a test process with a
    # large heap; the collection has no part in the arithmetic.
    with mock.patch("gc.collect"):
        expected = multipletests(p_values, method="holm")[1]
    assert adjust(p_values, Correction.HOLM) == pytest.approx(list(expected), abs=1e-12)
