"""Bayesian view of K variants: probability of being best, chance to beat control, expected loss.

All are one-dimensional integrals over the arms' posterior densities f_i and CDFs F_i:
  P(i is best)   = integral f_i(x) prod_{j != i} F_j(x) dx
  E[max_j X_j]   = sum_i integral x f_i(x) prod_{j != i} F_j(x) dx
  expected loss of choosing i = E[max_j X_j] - E[X_i]
The integral for arm i runs over arm i's own support (all but 1e-14 of its mass in each tail),
cut into panels at the bulk of every arm, so that a narrow arm's steep CDF falls on panel edges;
each panel takes a fixed Gauss-Legendre rule. Everything is one vectorised NumPy evaluation.
Binary metrics use Beta posteriors, value metrics a normal approximation N(mean, variance / n).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import integrate, special, stats

Array = npt.NDArray[np.float64]
TAIL = 1e-14
NODES, WEIGHTS = np.polynomial.legendre.leggauss(24)
OWN_PANELS = 6


@dataclass(frozen=True, slots=True)
class Posterior:
    """A Beta(a, b) (``family="beta"``) or normal N(a, b^2) (``family="normal"``) posterior."""

    family: str
    a: float
    b: float

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b) if self.family == "beta" else self.a

    @property
    def distribution(self) -> stats.rv_continuous:
        return stats.beta(self.a, self.b) if self.family == "beta" else stats.norm(self.a, self.b)

    def credible_interval(self, level: float = 0.95) -> tuple[float, float]:
        lo, hi = self.distribution.ppf([(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)


def beta_posterior(
    successes: float, trials: float, prior: tuple[float, float] = (1.0, 1.0)
) -> Posterior:
    return Posterior("beta", prior[0] + successes, prior[1] + trials - successes)


def normal_posterior(mean: float, variance: float, n: int) -> Posterior | None:
    """N(mean, variance / n), or None when it has no spread (n < 2 or zero variance)."""
    if n < 2 or not variance > 0:
        return None
    return Posterior("normal", mean, float(np.sqrt(variance / n)))


@dataclass(frozen=True, slots=True)
class BestArm:
    probability_best: tuple[float, ...]
    expected_loss: tuple[float, ...]
    method: str = "exact_quadrature"


def _spectral_integration(nodes: Array) -> Array:
    """S[i, m] = integral from -1 to nodes[i] of the Lagrange basis polynomial of node m."""
    size = nodes.size
    vander = np.polynomial.legendre.legvander(nodes, size - 1)
    basis = np.linalg.inv(vander)  # column m: Legendre coefficients of Lagrange polynomial m
    integrals = np.polynomial.legendre.legint(basis, lbnd=-1, axis=0)
    return np.asarray(np.polynomial.legendre.legval(nodes, integrals).T, dtype=np.float64)


CUMULATIVE = _spectral_integration(NODES)


def _log_pdf(p: Posterior, x: Array) -> Array:
    if p.family == "beta":
        inside = (x > 0) & (x < 1)
        safe = np.where(inside, x, 0.5)
        log = (p.a - 1) * np.log(safe) + (p.b - 1) * np.log1p(-safe) - special.betaln(p.a, p.b)
        return np.where(inside, log, -np.inf)
    return np.asarray(-0.5 * ((x - p.a) / p.b) ** 2 - np.log(p.b * np.sqrt(2 * np.pi)))


def _landmarks(p: Posterior) -> list[float]:
    """Panel edges that resolve this arm: its tails, mean, and mean +/- 1 and 3 sd."""
    if p.family == "beta":
        lo = float(special.betaincinv(p.a, p.b, TAIL))
        hi = float(special.betaincinv(p.a, p.b, 1 - TAIL))
        total = p.a + p.b
        sd = float(np.sqrt(p.a * p.b / (total * total * (total + 1))))
    else:
        z = float(-special.ndtri(TAIL))
        lo, hi, sd = p.a - z * p.b, p.a + z * p.b, p.b
    marks = [p.mean + c * sd for c in (-3.0, -1.0, 0.0, 1.0, 3.0)]
    return [lo, hi, *(m for m in marks if lo < m < hi)]


def _singular(p: Posterior) -> bool:
    return p.family == "beta" and (p.a < 1 or p.b < 1)


def best_arm(posteriors: Sequence[Posterior]) -> BestArm:
    """P(best) and expected loss of every arm.

    Densities are evaluated on one grid of Gauss-Legendre panels whose edges are every arm's
    landmarks; each CDF at the nodes is the running integral of its density (spectral integration
    within a panel), so no incomplete beta function is evaluated in the loop. A Beta posterior
    with a parameter below 1 has a density singular at 0 or 1, which no fixed rule integrates
    well: then SciPy's adaptive quadrature does the work.
    """
    if any(_singular(p) for p in posteriors):
        return _best_arm_adaptive(posteriors)
    k = len(posteriors)
    edges = np.unique(np.concatenate([_landmarks(p) for p in posteriors]))
    half = np.diff(edges) / 2
    x = (edges[:-1] + half)[:, None] + half[:, None] * NODES  # (panel, node)
    density = np.exp(np.stack([_log_pdf(p, x) for p in posteriors]))  # (arm, panel, node)
    weighted = density * (half[:, None] * WEIGHTS)
    panel_mass = weighted.sum(axis=2)
    before = np.cumsum(panel_mass, axis=1) - panel_mass
    cdf = before[:, :, None] + half[None, :, None] * (density @ CUMULATIVE.T)
    cdf /= panel_mass.sum(axis=1)[:, None, None]
    cdf = np.clip(cdf, 0.0, 1.0).reshape(k, -1)
    # prod_{j != i} F_j by prefix and suffix products (no division by a CDF that may be 0).
    ones = np.ones((1, cdf.shape[1]))
    prefix = np.cumprod(np.vstack([ones, cdf[:-1]]), axis=0)
    suffix = np.vstack([np.cumprod(cdf[::-1], axis=0)[::-1][1:], ones])
    integrand = weighted.reshape(k, -1) * prefix * suffix
    return _result(integrand, x.reshape(-1), posteriors)


def _result(integrand: Array, points: Array, posteriors: Sequence[Posterior]) -> BestArm:
    probability = np.clip(integrand.sum(axis=1), 0.0, None)
    probability = probability / probability.sum()
    expected_max = float((integrand * points).sum())
    means = np.array([p.mean for p in posteriors])
    loss = np.maximum(0.0, expected_max - means)
    return BestArm(tuple(probability.tolist()), tuple(loss.tolist()))


def _best_arm_adaptive(posteriors: Sequence[Posterior]) -> BestArm:
    distributions = [p.distribution for p in posteriors]
    k = len(distributions)
    lo = min(float(d.ppf(TAIL)) for d in distributions)
    hi = max(float(d.isf(TAIL)) for d in distributions)

    def integrand(x: float) -> Array:
        pdf = np.array([d.pdf(x) for d in distributions])
        cdf = np.array([d.cdf(x) for d in distributions])
        others = np.array([np.prod(np.delete(cdf, i)) for i in range(k)])
        return np.concatenate([pdf * others, x * pdf * others])

    values, _ = integrate.quad_vec(integrand, lo, hi, epsabs=1e-13, epsrel=1e-11)
    probability = np.clip(values[:k], 0.0, None)
    probability = probability / probability.sum()
    means = np.array([p.mean for p in posteriors])
    loss = np.maximum(0.0, float(values[k:].sum()) - means)
    return BestArm(tuple(probability.tolist()), tuple(loss.tolist()), "adaptive_quadrature")


def chance_to_beat(variant: Posterior, control: Posterior) -> float:
    """P(variant > control), the two-arm case of ``best_arm``."""
    return best_arm([variant, control]).probability_best[0]
