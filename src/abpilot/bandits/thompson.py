"""Thompson-sampling allocation: the weight of each arm is the probability that it is the best.

Beta-Bernoulli posteriors Beta(alpha0 + successes, beta0 + trials - successes). The probability of
being best is computed exactly (one vectorised quadrature, see ``abpilot.stats.bayes``) or by
seeded Monte Carlo with S draws per arm. Until every arm has ``min_trials`` the configured weights
stay (burn-in). A floor keeps every arm explored; weights are rounded to basis points (1/10000,
the assignment's bucket size) so that they sum to exactly 1. Unless configured, the floor is 1% per
arm, split from a 2% total once there are more than two arms
(``abpilot.bandits.config.default_min_weight``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abpilot.bandits.config import Method as Method
from abpilot.bandits.config import ThompsonConfig as ThompsonConfig
from abpilot.domain.errors import ValidationError
from abpilot.stats.bayes import Posterior, beta_posterior, probability_best

BASIS_POINTS = 10_000


@dataclass(frozen=True, slots=True)
class ArmData:
    key: str
    trials: int
    successes: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """Weights (summing to exactly 1) and how they were found."""

    weights: tuple[float, ...]
    probability_best: tuple[float, ...] | None
    method: str
    seed: int | None
    burn_in: bool


def probability_best_exact(posteriors: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    return probability_best([Posterior("beta", a, b) for a, b in posteriors])


def probability_best_monte_carlo(
    posteriors: Sequence[tuple[float, float]], samples: int, rng: np.random.Generator
) -> tuple[float, ...]:
    """Share of ``samples`` joint draws in which each arm is the largest (ties: lowest index)."""
    a = np.array([p[0] for p in posteriors])
    b = np.array([p[1] for p in posteriors])
    draws = rng.beta(a, b, size=(samples, len(posteriors)))
    wins = np.bincount(draws.argmax(axis=1), minlength=len(posteriors))
    return tuple((wins / samples).tolist())


def floor_weights(probabilities: Sequence[float], min_weight: float) -> list[float]:
    """Raise every weight to ``min_weight`` and take the difference from the others in
    proportion to their weight (water-filling, repeated until no weight falls under the floor)."""
    k = len(probabilities)
    if min_weight * k > 1 + 1e-12:
        raise ValidationError(
            f"min_weight {min_weight} is too large for {k} arms (at most {1 / k:.4g})",
            field="min_weight",
        )
    weights = np.asarray(probabilities, dtype=float)
    weights = weights / weights.sum()
    floored = np.zeros(k, dtype=bool)
    while True:
        below = (weights < min_weight) & ~floored
        if not below.any():
            return [float(w) for w in weights]
        floored |= below
        free = 1.0 - min_weight * floored.sum()
        rest = np.where(floored, 0.0, weights)
        total = rest.sum()
        share = (
            rest / total * free if total > 0 else np.where(floored, 0.0, free / (~floored).sum())
        )
        weights = np.where(floored, min_weight, share)


def round_weights(weights: Sequence[float], min_weight: float = 0.0) -> tuple[float, ...]:
    """Round to basis points by largest remainder, so the weights sum to exactly 1 and none
    falls below ``min_weight`` (itself rounded up to a basis point)."""
    raw = np.asarray(weights, dtype=float) * BASIS_POINTS
    floor_bp = int(np.ceil(min_weight * BASIS_POINTS - 1e-9))
    points = np.maximum(np.floor(raw).astype(int), floor_bp)
    remainder = raw - np.floor(raw)
    shortfall = BASIS_POINTS - int(points.sum())
    order = np.argsort(-remainder, kind="stable")
    if shortfall > 0:
        for i in order[:shortfall]:
            points[i] += 1
    elif shortfall < 0:
        for i in np.argsort(remainder, kind="stable"):
            if shortfall == 0:
                break
            if points[i] > floor_bp:
                points[i] -= 1
                shortfall += 1
    return tuple(int(p) / BASIS_POINTS for p in points)


def allocate(
    arms: Sequence[ArmData],
    config: ThompsonConfig,
    *,
    configured: Sequence[float],
    seed: int | None = None,
) -> Allocation:
    """Thompson weights for ``arms``; the configured weights while any arm is in burn-in."""
    if any(a.trials < a.successes or a.successes < 0 for a in arms):
        raise ValidationError("successes must be between 0 and the number of trials", field="arms")
    posteriors = [
        (config.prior_alpha + a.successes, config.prior_beta + a.trials - a.successes) for a in arms
    ]
    if config.method is Method.MONTE_CARLO:
        seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        probabilities = probability_best_monte_carlo(
            posteriors, config.samples, np.random.default_rng(seed)
        )
    else:
        seed = None
        probabilities = probability_best_exact(posteriors)
    if min(a.trials for a in arms) < config.min_trials:
        return Allocation(tuple(configured), probabilities, config.method.value, seed, True)
    weights = round_weights(floor_weights(probabilities, config.min_weight), config.min_weight)
    return Allocation(weights, probabilities, config.method.value, seed, False)


def posterior_of(arm: ArmData, config: ThompsonConfig) -> tuple[float, float]:
    """(alpha, beta) of the arm's Beta posterior, e.g. Beta(321, 9779) for 320 clicks on
    10,000 impressions under the Beta(1, 99) prior."""
    posterior = beta_posterior(arm.successes, arm.trials, (config.prior_alpha, config.prior_beta))
    return posterior.a, posterior.b
