"""Cochran's Q and I^2 (abpilot.stats.heterogeneity) against statsmodels' combine_effects and
test_homogeneity, Benjamini-Hochberg across segments against statsmodels' multipletests (the
fixed vectors of tests/cases/heterogeneity.json), and the Q test's false-positive rate and power
by seeded simulation on unit-level segment data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from abpilot.stats.heterogeneity import SegmentEffect, cochran_q, segment_p_values

CASES = json.loads((Path(__file__).parents[1] / "cases" / "heterogeneity.json").read_text())[
    "cases"
]
EXACT = 1e-10


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_cochran_q_matches_statsmodels_combine_effects(case: dict[str, Any]) -> None:
    effects = [
        SegmentEffect(f"s{i}", e, v)
        for i, (e, v) in enumerate(zip(case["effects"], case["variances"], strict=True))
    ]
    found = cochran_q(effects)
    assert found.q == pytest.approx(case["q"], rel=EXACT)
    assert found.df == case["df"]
    assert found.p_value == pytest.approx(case["p_value"], rel=1e-9)
    assert found.i_squared == pytest.approx(case["i_squared"], rel=EXACT, abs=EXACT)
    assert found.pooled_effect == pytest.approx(case["pooled_effect"], rel=EXACT)
    assert found.pooled_variance == pytest.approx(case["pooled_variance"], rel=EXACT)
    assert segment_p_values(case["p_values"]) == pytest.approx(case["bh"], rel=EXACT)


def test_segments_without_an_estimate_are_left_out() -> None:
    effects = [
        SegmentEffect("nl", 0.1, 0.01),
        SegmentEffect("de", None, None),
        SegmentEffect("fr", 0.3, 0.0),  # no spread: it would weigh infinitely
        SegmentEffect("be", 0.2, 0.02),
    ]
    found = cochran_q(effects)
    reference = cochran_q([effects[0], effects[3]])
    assert found.segments == ("nl", "be")
    assert (found.q, found.df, found.p_value) == (reference.q, 1, reference.p_value)
    single = cochran_q(effects[:2])
    assert (single.q, single.p_value, single.pooled_effect) == (None, None, 0.1)
    assert cochran_q([]).pooled_effect is None
    assert segment_p_values([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])


def simulated_q(rng: np.random.Generator, effects: np.ndarray, units: int) -> float | None:
    """One experiment: per segment, ``units`` units per arm with normal values; the segment's
    difference of means and its Welch variance."""
    segments = []
    for k, effect in enumerate(effects):
        control = rng.normal(10.0, 3.0, units)
        treatment = rng.normal(10.0 + effect, 3.0, units)
        variance = control.var(ddof=1) / units + treatment.var(ddof=1) / units
        segments.append(SegmentEffect(str(k), treatment.mean() - control.mean(), variance))
    return cochran_q(segments).p_value


def test_the_q_test_keeps_alpha_when_every_segment_has_the_same_effect() -> None:
    """1,000 seeded experiments with 6 segments of 300 units per arm and the same effect in each:
    Q rejects at 0.05 a number of times within the central 99.9% range of Binomial(1000, 0.05),
    and in at least 80% of them when one segment's effect differs by 1.5 (half a standard
    deviation of the values)."""
    rng = np.random.default_rng(1954)
    same = np.full(6, 0.4)
    rejections = sum((simulated_q(rng, same, 300) or 1.0) < 0.05 for _ in range(1000))
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 1000, 0.05)
    assert lo <= rejections <= hi, rejections
    different = np.array([0.4, 0.4, 0.4, 0.4, 0.4, 1.9])
    power = sum((simulated_q(rng, different, 300) or 1.0) < 0.05 for _ in range(200)) / 200
    assert power >= 0.8, power
