"""Capping extreme values (winsorization) of a value metric: per-unit totals above the cap count
as the cap. One threshold for every variant: a threshold per variant would cap a variant that
raises spending less than one that does not, and bias the comparison.

A percentile cap is the ``quantile`` of the per-unit totals of the units of ALL the variants
pooled, as GrowthBook does ("after we calculate the unit-level aggregate values for all units
... we find the specified percentile of these unit-level aggregates"):

- quantile definition: linear interpolation between order statistics, the definition of
  PostgreSQL's ``PERCENTILE_CONT`` (which GrowthBook uses there), NumPy's default ``"linear"``
  and Hyndman and Fan's type 7: with the n totals sorted x_(0) <= ... <= x_(n-1) and
  h = (n - 1) q, the threshold is x_(floor h) + (h - floor h) (x_(floor h + 1) - x_(floor h));
- zeros: units of the population without any value (total 0) are included, as GrowthBook does
  by default; ``ignore_zeros`` leaves every total of 0 out (GrowthBook's "ignore zeros"). The
  stores keep totals only for units with a value, so the zeros are given as a count
  (``zero_units``), never materialised.

Exact: the two order statistics are found by ``numpy.partition`` (linear time, the totals'
memory), for any number of units up to ``MAX_EXACT_UNITS`` (10,000,000). Above that, the
threshold is the same quantile of a uniform sample of ``MAX_EXACT_UNITS`` totals drawn with
replacement by the ``numpy.random.Generator`` passed in, and the result says so
(``method="sample"``) with its bound on the rank error: by the Dvoretzky-Kiefer-Wolfowitz
inequality (Massart's constant), the sample's empirical distribution is within
eps = sqrt(log(2 / delta) / (2 m)) of the population's everywhere with probability 1 - delta;
with m = 10^7 and delta = 10^-6 the threshold's rank is within 0.00086 of ``quantile``
(a 0.99 cap falls between the 0.98914 and 0.99086 quantiles of all the totals).

An absolute cap is a number the metric names; the stores keep its capped sums incrementally.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

MAX_EXACT_UNITS = 10_000_000
RANK_ERROR_DELTA = 1e-6  # the probability that the sampled threshold's rank error exceeds its bound


@dataclass(frozen=True, slots=True)
class CapThreshold:
    """The cap and how it was found: ``units`` the totals it is the quantile of (zeros included
    unless ``ignore_zeros``), ``method`` "exact" or "sample", and ``rank_error`` the bound on
    |F(threshold) - quantile| (0 when exact; holds with probability 1 - RANK_ERROR_DELTA)."""

    value: float | None
    quantile: float
    units: int
    ignore_zeros: bool
    method: str
    rank_error: float


def _order_statistic(values: NDArray[np.float64], k: int, zeros: int, below: int) -> float:
    """The k-th smallest of ``values`` together with ``zeros`` more zeros, ``below`` the count
    of ``values`` under 0 (the zeros sit right after them in sorted order)."""
    if k < below:
        return float(np.partition(values, k)[k])
    if k < below + zeros:
        return 0.0
    j = k - zeros
    return float(np.partition(values, j)[j])


def percentile_threshold(
    totals: ArrayLike,
    *,
    quantile: float,
    zero_units: int = 0,
    ignore_zeros: bool = False,
    rng: np.random.Generator | None = None,
    max_exact: int = MAX_EXACT_UNITS,
) -> CapThreshold:
    """The ``quantile`` (in (0, 1)) of the per-unit ``totals`` of every variant pooled, and of
    ``zero_units`` more units whose total is 0 (left out with every other 0 when
    ``ignore_zeros``). Above ``max_exact`` units it takes the quantile of ``max_exact`` totals
    sampled with ``rng`` (required there). None when there is no unit."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1) (got {quantile!r})")
    values = np.asarray(totals, dtype=np.float64).ravel()
    zeros = max(0, int(zero_units))
    if ignore_zeros:
        values, zeros = values[values != 0], 0
    total = values.size + zeros
    if total == 0:
        return CapThreshold(None, quantile, 0, ignore_zeros, "exact", 0.0)
    method, rank_error = "exact", 0.0
    if total > max_exact:
        if rng is None:
            raise ValueError(f"above {max_exact} units the threshold needs an rng")
        picks = rng.integers(0, total, size=max_exact)
        # Indices past the stored totals stand for the zero units.
        sampled = picks[picks < values.size]
        values = values[sampled]
        zeros = max_exact - sampled.size
        total = max_exact
        method = "sample"
        rank_error = math.sqrt(math.log(2 / RANK_ERROR_DELTA) / (2 * max_exact))
    h = (total - 1) * quantile
    low = math.floor(h)
    below = int(np.count_nonzero(values < 0))
    x_low = _order_statistic(values, low, zeros, below)
    x_high = x_low if low + 1 >= total else _order_statistic(values, low + 1, zeros, below)
    value = x_low + (h - low) * (x_high - x_low)
    return CapThreshold(value, quantile, total, ignore_zeros, method, rank_error)


@dataclass(frozen=True, slots=True)
class CappedSums:
    """One variant's sums of min(total, cap) and of its square over the units with a total,
    and how many totals the cap lowered; ``sum_products`` is sum of min(total, cap) x with the
    units' covariates, when given (for ``abpilot.stats.cuped``)."""

    sum: float
    sum_squares: float
    capped: int
    sum_products: float | None = None


def capped_sums(
    totals: ArrayLike, *, cap: float, covariates: ArrayLike | None = None
) -> CappedSums:
    """The capped sums of one variant from its per-unit ``totals`` (units without a total add
    0 to every sum, capped or not, so they need not be given)."""
    values = np.asarray(totals, dtype=np.float64).ravel()
    capped = np.minimum(values, cap)
    products = None
    if covariates is not None:
        x = np.asarray(covariates, dtype=np.float64).ravel()
        if x.shape != values.shape:
            raise ValueError("covariates must give one value per total")
        products = float(np.dot(capped, x))
    return CappedSums(
        float(capped.sum()),
        float(np.dot(capped, capped)),
        int(np.count_nonzero(values > cap)),
        products,
    )


def capped_variants(
    totals: Sequence[ArrayLike],
    *,
    quantile: float,
    population: Sequence[int],
    ignore_zeros: bool = False,
    rng: np.random.Generator | None = None,
    max_exact: int = MAX_EXACT_UNITS,
) -> tuple[CapThreshold, tuple[CappedSums, ...]]:
    """One threshold from every variant's per-unit ``totals`` pooled (each variant's
    ``population`` counts its units, those without a total being zeros), and each variant's
    capped sums under it."""
    arrays = [np.asarray(t, dtype=np.float64).ravel() for t in totals]
    if len(arrays) != len(population):
        raise ValueError("population must give one count per variant")
    if any(n < a.size for a, n in zip(arrays, population, strict=True)):
        raise ValueError("a variant's population cannot be smaller than its units with a total")
    zero_units = sum(n - a.size for a, n in zip(arrays, population, strict=True))
    pooled = np.concatenate(arrays) if arrays else np.zeros(0)
    threshold = percentile_threshold(
        pooled,
        quantile=quantile,
        zero_units=zero_units,
        ignore_zeros=ignore_zeros,
        rng=rng,
        max_exact=max_exact,
    )
    if threshold.value is None:
        return threshold, tuple(CappedSums(0.0, 0.0, 0) for _ in arrays)
    return threshold, tuple(capped_sums(a, cap=threshold.value) for a in arrays)
