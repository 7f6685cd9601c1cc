"""Fisher's exact test at every size: SciPy up to a million units, the exact sum over the
support above it (checked against exact rational arithmetic in tests/cases/analysis.json), and
the z-test once the support itself exceeds a million tables (checked against the closed form)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from abpilot.stats.analysis import Arm, MetricInput, analyse
from abpilot.stats.frequentist import (
    EXACT_SUPPORT_MAX,
    SCIPY_FISHER_MAX_UNITS,
    compare_proportions,
    fisher_p_value,
)
from abpilot.stats.options import AnalysisOptions

CASES = json.loads((Path(__file__).parents[1] / "cases" / "analysis.json").read_text())


@pytest.mark.parametrize("case", CASES["fisher_large"], ids=lambda c: str(c["table"]))
def test_fisher_above_the_scipy_size_is_exact(case: dict[str, Any]) -> None:
    s_t, n_t, s_c, n_c = case["table"]
    assert n_t + n_c > SCIPY_FISHER_MAX_UNITS
    p_value, method = fisher_p_value(s_t, n_t, s_c, n_c)
    assert method == "fisher_exact"
    assert p_value == pytest.approx(case["p_value"], rel=1e-9)


def test_fisher_at_the_scipy_size_is_scipys() -> None:
    half = SCIPY_FISHER_MAX_UNITS // 2
    table = [[40, half - 40], [65, half - 65]]
    p_value, method = fisher_p_value(40, half, 65, half)
    assert method == "fisher_exact"
    assert p_value == stats.fisher_exact(table).pvalue


def test_the_z_test_takes_over_when_the_support_is_too_large() -> None:
    n, s_t, s_c = 10_000_000, 2_000_000, 2_003_000
    assert min(s_t + s_c, 2 * n - s_t - s_c) > EXACT_SUPPORT_MAX
    comparison = compare_proportions(s_t, n, s_c, n)
    pooled = (s_t + s_c) / (2 * n)
    z = (s_t / n - s_c / n) / math.sqrt(pooled * (1 - pooled) * 2 / n)
    assert comparison.method == "z_test"
    assert comparison.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    analysis = analyse(
        [
            MetricInput(
                "conversion",
                True,
                (Arm("a", True, 0.5, n, s_t, None, None), Arm("b", False, 0.5, n, s_c, None, None)),
            )
        ],
        metric="conversion",
        options=AnalysisOptions(),
    )
    assert analysis.method == "z_test"
