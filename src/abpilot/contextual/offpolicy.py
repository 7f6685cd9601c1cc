"""Off-policy evaluation: what would another policy have achieved on the logged decisions? (pure)

From logged (context, arm, propensity, reward) and the target policy's probabilities of every arm
in each logged context:

- IPS (inverse propensity scoring): mean of w_i r_i with w_i = pi(a_i | x_i) / p_i. Unbiased when
  every arm the target may choose had a positive logging propensity; high variance when weights
  are large.
- SNIPS (self-normalised IPS): sum w_i r_i / sum w_i. Slightly biased, much lower variance.
- DR (doubly robust): mean of sum_a pi(a|x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)), where q is a
  reward model: the mean reward of each (context, arm) in the logs, else of the arm, else overall,
  fitted by 2-fold cross-fitting (each half is scored with the model of the other half). Unbiased
  if either the propensities or the model are right.

Intervals are normal (CLT) intervals from the per-decision terms (delta method for SNIPS). Also
reported: the effective sample size (sum w)^2 / sum w^2, which says how many logged decisions the
estimate is really worth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_Array = np.ndarray


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    standard_error: float
    ci: tuple[float, float]


@dataclass(frozen=True, slots=True)
class OffPolicyEstimates:
    n: int
    ips: Estimate
    snips: Estimate
    dr: Estimate
    effective_sample_size: float
    logged: Estimate  # the logging policy's own mean reward, for comparison


def _estimate(value: float, se: float, z: float) -> Estimate:
    return Estimate(float(value), float(se), (float(value - z * se), float(value + z * se)))


def _mean_and_se(terms: _Array, z: float) -> Estimate:
    n = len(terms)
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return _estimate(float(terms.mean()), se, z)


def reward_model(
    contexts: _Array, arms: _Array, rewards: _Array, k: int
) -> tuple[dict[tuple[str, int], float], _Array, float]:
    """Mean reward per (context, arm), per arm, and overall."""
    overall = float(rewards.mean()) if len(rewards) else 0.0
    per_arm = np.full(k, overall)
    for a in range(k):
        mask = arms == a
        if mask.any():
            per_arm[a] = rewards[mask].mean()
    cells: dict[tuple[str, int], list[float]] = {}
    for x, a, r in zip(contexts.tolist(), arms.tolist(), rewards.tolist(), strict=True):
        cells.setdefault((x, a), []).append(r)
    return {key: float(np.mean(v)) for key, v in cells.items()}, per_arm, overall


def _predict(
    model: tuple[dict[tuple[str, int], float], _Array, float], contexts: _Array, k: int
) -> _Array:
    cells, per_arm, _ = model
    out = np.empty((len(contexts), k))
    for i, x in enumerate(contexts.tolist()):
        for a in range(k):
            out[i, a] = cells.get((x, a), per_arm[a])
    return out


def evaluate(
    contexts: Sequence[str],
    arms: Sequence[int],
    propensities: Sequence[float],
    rewards: Sequence[float],
    target: _Array,
    *,
    alpha: float = 0.05,
) -> OffPolicyEstimates:
    """Estimates of the target policy's mean reward. ``target[i, a]`` is the probability that the
    target policy picks arm ``a`` in the context of logged decision ``i``."""
    from scipy import stats

    x = np.asarray(contexts, dtype=object)
    a = np.asarray(arms, dtype=int)
    p = np.asarray(propensities, dtype=float)
    r = np.asarray(rewards, dtype=float)
    pi = np.asarray(target, dtype=float)
    n, k = pi.shape
    if not (len(x) == len(a) == len(p) == len(r) == n) or n == 0:
        raise ValueError("every logged decision needs a context, arm, propensity and reward")
    if np.any(p <= 0) or np.any(p > 1):
        raise ValueError("logged propensities must be in (0, 1]")
    z = float(stats.norm.ppf(1 - alpha / 2))
    w = pi[np.arange(n), a] / p

    ips = _mean_and_se(w * r, z)

    total = w.sum()
    if total > 0:
        snips_value = float((w * r).sum() / total)
        snips_se = float(np.sqrt(np.sum(w**2 * (r - snips_value) ** 2)) / total)
    else:
        snips_value, snips_se = 0.0, float("inf")
    snips = _estimate(snips_value, snips_se, z)

    folds = np.arange(n) % 2
    q = np.empty((n, k))
    for fold in (0, 1):
        train, score = folds != fold, folds == fold
        if not train.any():
            train = score
        model = reward_model(x[train], a[train], r[train], k)
        q[score] = _predict(model, x[score], k)
    direct = (pi * q).sum(axis=1)
    dr = _mean_and_se(direct + w * (r - q[np.arange(n), a]), z)

    ess = float(total**2 / np.sum(w**2)) if np.any(w > 0) else 0.0
    return OffPolicyEstimates(
        n=n, ips=ips, snips=snips, dr=dr, effective_sample_size=ess, logged=_mean_and_se(r, z)
    )
