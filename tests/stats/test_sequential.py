"""The always-valid test: its formula against the mixture integral, and its error rate under
continuous monitoring against a fixed-horizon test that peeks."""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, stats

from abpilot.stats.sequential import msprt


def test_likelihood_ratio_equals_the_normal_mixture_integral() -> None:
    for difference, variance, tau in [(0.01, 1e-4, 0.02), (-0.3, 0.05, 0.1), (0.0, 2.0, 1.0)]:
        sd = math.sqrt(variance)

        def ratio(theta: float, d: float = difference, s: float = sd, t: float = tau) -> float:
            likelihood = stats.norm.pdf(d, theta, s) / stats.norm.pdf(d, 0, s)
            return float(likelihood * stats.norm.pdf(theta, 0, t))

        mixture = integrate.quad(ratio, -12 * tau, 12 * tau, epsabs=1e-13, limit=200)[0]
        result = msprt(difference, variance, tau)
        assert result is not None
        assert math.isclose(result.p_value, min(1.0, 1 / mixture), rel_tol=1e-7)


def test_confidence_interval_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    for difference in np.linspace(-0.05, 0.05, 41):
        result = msprt(float(difference), 1e-4, 0.01, alpha=0.05)
        assert result is not None
        excludes = result.ci[0] > 0 or result.ci[1] < 0
        assert excludes == (result.p_value < 0.05)


def test_peeking_every_day_keeps_the_false_positive_rate() -> None:
    """A/A test looked at 50 times: the fixed-horizon z-test 'finds' a winner far more often than
    5%; the always-valid test stays under 5%."""
    rng = np.random.default_rng(20261123)
    runs, looks, per_look, rate = 400, 50, 200, 0.1
    peeking_z = always_valid = 0
    for _ in range(runs):
        a = rng.binomial(per_look, rate, looks).cumsum()
        b = rng.binomial(per_look, rate, looks).cumsum()
        n = per_look * np.arange(1, looks + 1)
        p_a, p_b = a / n, b / n
        variance = p_a * (1 - p_a) / n + p_b * (1 - p_b) / n
        z = np.abs(p_b - p_a) / np.sqrt(np.where(variance > 0, variance, np.inf))
        peeking_z += bool((2 * stats.norm.sf(z) < 0.05).any())
        results = [msprt(float(p_b[i] - p_a[i]), float(variance[i]), 0.01) for i in range(looks)]
        always_valid += any(r is not None and r.p_value < 0.05 for r in results)
    assert peeking_z / runs > 0.15
    assert always_valid / runs <= 0.05
