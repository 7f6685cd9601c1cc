"""Off-policy estimators against a simulated world whose true policy values are known."""

from __future__ import annotations

import numpy as np
import pytest

from abpilot.contextual.offpolicy import evaluate

CONTEXTS = ("morning", "evening", "night")
# True success rates mu[context, arm]; the best arm differs by context.
MU = np.array([[0.10, 0.30, 0.05], [0.25, 0.10, 0.15], [0.05, 0.10, 0.40]])
# The logging policy: context-dependent, every arm possible.
LOGGING = np.array([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.4, 0.4, 0.2]])


def simulate(
    n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = rng.integers(0, len(CONTEXTS), n)
    a = np.array([rng.choice(3, p=LOGGING[c]) for c in x])
    r = (rng.random(n) < MU[x, a]).astype(float)
    return x, a, LOGGING[x, a], r


def truth(policy: np.ndarray) -> float:
    """Exact value: contexts are uniform."""
    return float(np.mean((policy * MU).sum(axis=1)))


BEST = np.eye(3)[MU.argmax(axis=1)]  # always the best arm of the context
UNIFORM = np.full((3, 3), 1 / 3)
ALWAYS_0 = np.tile(np.eye(3)[0], (3, 1))


@pytest.mark.parametrize("policy", [BEST, UNIFORM, ALWAYS_0], ids=["best", "uniform", "arm0"])
def test_estimates_cover_the_true_value(policy: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    x, a, p, r = simulate(20_000, rng)
    # 99.9% intervals: nine checks at one seed should all hold (coverage itself is tested below).
    result = evaluate([CONTEXTS[i] for i in x], a, p, r, policy[x], alpha=0.001)
    value = truth(policy)
    for estimate in (result.ips, result.snips, result.dr):
        assert estimate.ci[0] <= value <= estimate.ci[1]
        assert abs(estimate.value - value) < 4 * estimate.standard_error
    # The logging policy's own value is estimated by the plain mean.
    assert result.logged.ci[0] <= truth(LOGGING) <= result.logged.ci[1]
    assert 0 < result.effective_sample_size <= 20_000


def test_interval_coverage_is_near_nominal() -> None:
    """Over 300 independent logs, the 95% intervals cover the truth about 95% of the time."""
    rng = np.random.default_rng(11)
    value = truth(BEST)
    covered = {"ips": 0, "snips": 0, "dr": 0}
    runs = 300
    for _ in range(runs):
        x, a, p, r = simulate(1_500, rng)
        result = evaluate([CONTEXTS[i] for i in x], a, p, r, BEST[x])
        for name in covered:
            ci = getattr(result, name).ci
            covered[name] += ci[0] <= value <= ci[1]
    for name, hits in covered.items():
        # Binomial(300, 0.95) lies within [0.91, 0.985] with probability > 0.999.
        assert 0.91 <= hits / runs <= 0.985, name


def test_doubly_robust_has_lower_variance_than_ips_here() -> None:
    rng = np.random.default_rng(3)
    ips, dr = [], []
    for _ in range(200):
        x, a, p, r = simulate(1_000, rng)
        result = evaluate([CONTEXTS[i] for i in x], a, p, r, BEST[x])
        ips.append(result.ips.value)
        dr.append(result.dr.value)
    assert np.std(dr) < np.std(ips)
    assert np.mean(dr) == pytest.approx(truth(BEST), abs=0.01)


def test_refuses_bad_propensities() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        evaluate(["a"], [0], [0.0], [1.0], np.array([[1.0]]))
