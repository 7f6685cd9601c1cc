"""The winner rule and the plan, by seeded simulation of the test statistics (NumPy, vectorised),
with the analysis itself run on a subset to show that the simulated rule is the one it applies.

- Families: the primary metric is corrected over its variants, the secondary metrics as their
  own family, and the plan uses the primary family's size; with secondary metrics present the
  power at the planned size is the nominal one.
- Repeated reads: read again and again after the plan, the default winner rule keeps false
  winners under alpha (the fixed-horizon rule alone does not).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from abpilot.stats import anchored
from abpilot.stats.analysis import Arm, MetricInput, Reason, analyse
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.power import proportion_sample_size

ALPHA, POWER, BASELINE, MDE = 0.05, 0.8, 0.10, 0.2  # detect 10% -> 12%
Counts = npt.NDArray[np.int64]


def binary(key: str, successes: list[int], n: int) -> MetricInput:
    arms = tuple(
        Arm(f"v{i}", i == 0, 1 / len(successes), n, s, s / n, None) for i, s in enumerate(successes)
    )
    return MetricInput(key, True, arms)


def confirmed(s_t: Counts, s_c: Counts, n: int, progress: float, level: float) -> np.ndarray:
    """The anchored rule of the analysis, on arrays (unpooled variance of the difference)."""
    p_t, p_c = s_t / n, s_c / n
    variance = p_t * (1 - p_t) / n + p_c * (1 - p_c) / n
    return anchored.confirms(p_t - p_c, variance, np.full(p_t.shape, progress), level)


def z_statistic(s_t: Counts, s_c: Counts, n: int) -> np.ndarray:
    pooled = (s_t + s_c) / (2 * n)
    return np.asarray((s_t - s_c) / n / np.sqrt(pooled * (1 - pooled) * 2 / n))


def fisher(s_t: int, s_c: int, n: int) -> float:
    return float(stats.fisher_exact([[s_t, n - s_t], [s_c, n - s_c]]).pvalue)


def test_secondary_metrics_form_their_own_family() -> None:
    primary = binary("conversion", [100, 140, 100], 1000)
    nulls = [binary(f"m{j}", [300, 300, 300], 1000) for j in range(3)]
    options = AnalysisOptions(sample_size_per_variant=1000)
    alone = analyse([primary], metric="conversion", options=options)
    with_nulls = analyse([primary, *nulls], metric="conversion", options=options)
    assert alone.family_size == with_nulls.family_size == 2
    assert [v.p_value_adjusted for v in with_nulls.variants] == [
        v.p_value_adjusted for v in alone.variants
    ]
    raw = [v.p_value for v in alone.variants[1:]]
    expected = multipletests(raw, method="holm")[1]
    assert [v.p_value_adjusted for v in alone.variants[1:]] == list(expected)
    secondary = analyse([primary, *nulls], metric="m1", options=options)
    assert secondary.family_size == 6  # two variants on three secondary metrics


def test_power_at_the_planned_size_is_nominal_with_secondary_metrics() -> None:
    """Three arms (one with the planned effect), two null secondary metrics, the decision read
    once at the planned size: it finds the winner with the planned power (within 2 points)."""
    plan = proportion_sample_size(
        baseline_rate=BASELINE,
        mde=MDE,
        relative=True,
        alpha=ALPHA,
        power=POWER,
        variants=3,
        repeated_reads=True,
    )
    n = plan.required_per_variant
    rng = np.random.default_rng(20261205)
    runs = 4000
    control = rng.binomial(n, BASELINE, runs)
    better = rng.binomial(n, BASELINE * (1 + MDE), runs)
    same = rng.binomial(n, BASELINE, runs)
    secondary = rng.binomial(n, 0.3, (2, 3, runs))
    # Holm over the primary family (z-tests; the analysis uses Fisher's test, which agrees here,
    # as the check through the analysis below shows) and the anchored rule at alpha / 2.
    z_tests = [stats.norm.sf(np.abs(z_statistic(x, control, n))) * 2 for x in (better, same)]
    holm_first = np.where(
        z_tests[0] <= z_tests[1],
        2 * z_tests[0],
        np.maximum(z_tests[0], 2 * z_tests[1]),
    )
    wins = (holm_first < ALPHA) & confirmed(better, control, n, 1.0, ALPHA / 2) & (better > control)
    power = wins.mean()
    assert abs(power - POWER) <= 0.02, power

    # The analysis, with the secondary metrics, decides as simulated (first 40 runs).
    options = AnalysisOptions(sample_size_per_variant=n)
    assert 0 < wins[:40].sum() < 40
    for r in range(40):
        metrics = [
            binary("conversion", [control[r], better[r], same[r]], n),
            *(binary(f"m{j}", list(secondary[j, :, r]), n) for j in range(2)),
        ]
        result = analyse(metrics, metric="conversion", options=options)
        assert (result.winner is not None and result.winner.key == "v1") == wins[r], r


def test_repeated_reads_after_the_plan_keep_false_winners_under_alpha() -> None:
    """500 A/A experiments read 20 times, from the plan to three times the plan: the default
    rule declares a false winner in at most alpha of them; the fixed-horizon rule alone (p below
    alpha and a positive difference, at any read) in more than it does at a single read."""
    plan = proportion_sample_size(
        baseline_rate=BASELINE,
        mde=MDE,
        relative=True,
        alpha=ALPHA,
        power=POWER,
        repeated_reads=True,
    ).required_per_variant
    rng = np.random.default_rng(7)
    runs, looks = 500, 20
    sizes = np.round(plan * (1 + 0.1 * np.arange(looks))).astype(np.int64)
    steps = np.diff(np.concatenate([[0], sizes]))
    a = rng.binomial(steps[:, None], BASELINE, (looks, runs)).cumsum(axis=0)
    b = rng.binomial(steps[:, None], BASELINE, (looks, runs)).cumsum(axis=0)
    n = sizes[:, None]
    p_a, p_b = a / n, b / n
    variance = p_a * (1 - p_a) / n + p_b * (1 - p_b) / n
    progress = np.broadcast_to(n / plan, (looks, runs))
    anchored_wins = anchored.confirms(p_b - p_a, variance, progress, ALPHA) & (b > a)
    for look, run in zip(*np.nonzero(anchored_wins), strict=True):  # also significant?
        anchored_wins[look, run] = fisher(b[look, run], a[look, run], sizes[look]) < ALPHA
    default_rate = anchored_wins.any(axis=0).mean()
    z = z_statistic(b, a, n)  # type: ignore[arg-type]
    fixed = (2 * stats.norm.sf(np.abs(z)) < ALPHA) & (z > 0)
    fixed_once, fixed_rate = fixed[0].mean(), fixed.any(axis=0).mean()
    assert default_rate <= ALPHA, default_rate
    assert fixed_rate > 1.5 * fixed_once, (fixed_rate, fixed_once)

    # The analysis decides as simulated at the last read (first 60 runs).
    options = AnalysisOptions(sample_size_per_variant=plan)
    for r in range(60):
        result = analyse(
            [binary("conversion", [a[-1, r], b[-1, r]], sizes[-1])],
            metric="conversion",
            options=options,
        )
        assert (result.winner is not None) == anchored_wins[-1, r]
        assert result.reason in {Reason.WINNER, Reason.NOT_SIGNIFICANT, Reason.NOT_CONFIRMED}


def test_significant_but_not_confirmed_is_its_own_reason() -> None:
    # z about 2.2 at the plan: below alpha (Fisher), below the anchored threshold 2.59.
    n = 5000
    result = analyse(
        [binary("conversion", [500, 562], n)],
        metric="conversion",
        options=AnalysisOptions(sample_size_per_variant=n),
    )
    assert result.variants[1].significant
    assert (result.winner, result.reason) == (None, Reason.NOT_CONFIRMED)
    assert "however often" in result.message


def test_the_anchored_threshold_is_calibrated_to_its_level() -> None:
    """E[min(1, a Lambda)] at the plan, written out with SciPy: it equals the level, at every
    level the settings allow (alpha from 1e-6 to 0.5, divided among comparisons)."""
    from scipy import integrate

    r = anchored.MIXING_RATIO
    for level in (0.5, 0.05, 0.025, 1e-6, 1e-6 / 20):
        a = np.exp(anchored.log_threshold(level))

        def bound(z: float, a: float = a) -> float:
            ratio = 2 / np.sqrt(1 + r) * np.exp(r * z * z / (2 * (1 + r)))
            ratio *= stats.norm.cdf(np.sqrt(r / (1 + r)) * z)
            return float(min(1.0, a * ratio) * stats.norm.pdf(z))

        expected = integrate.quad(
            bound, -30, 30, points=[0, 3, 6], limit=500, epsabs=0, epsrel=1e-10
        )[0]
        assert expected == pytest.approx(level, rel=1e-6)
        c = anchored.boundary(level)
        assert bound(c + 1e-6) / stats.norm.pdf(c + 1e-6) == pytest.approx(1.0)
    assert anchored.boundary(0.05) == pytest.approx(2.5858, abs=1e-4)
