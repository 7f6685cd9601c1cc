"""A winner rule that stays valid however often it is read once the planned sample size is
reached: a one-sided always-valid test anchored at the plan.

A fixed-horizon test read once at the plan declares a false winner with probability alpha / 2
(one side of a two-sided test); read again and again after the plan, its false winners add up
(5.8% over 11 reads). Here a variant wins only when, besides its fixed-horizon test, the
one-sided normal-mixture likelihood ratio of its difference with the control is large enough:

    Lambda = 2 sqrt(v / (v + tau^2)) exp(tau^2 d^2 / (2 v (v + tau^2)))
             * Phi(tau d / sqrt(v (v + tau^2)))

(d the difference, v its variance, the mixture over effects theta > 0 half-normal with scale
tau). Lambda is a non-negative martingale under no effect, so by Ville's inequality, given the
data at the plan, P(Lambda ever reaches 1 / a after the plan) <= min(1, a Lambda_plan). The
threshold a is calibrated so that the expectation of that bound over the data at the plan,
E[min(1, a Lambda_plan)], equals ``level``: the probability of a false winner at any read after
the plan, however many, is at most ``level`` (one-sided; Bonferroni over the variants).

The mixing scale is tied to the plan: tau^2 = MIXING_RATIO * v_plan, with v_plan the variance of
the difference at the planned size (v * progress, as the variance falls as 1 / n). With
MIXING_RATIO = 10, tau is about the effect the plan is powered for, and the threshold on the
z-statistic at the plan is 2.59 for level 0.05 (1.96 for a fixed-horizon test read once), so
the plan is made for that threshold (``boundary``): at the planned size the rule has the planned
power. Reference for the mixture martingale and Ville's inequality: Johari, Koomen, Pekelis,
Walsh, *Always Valid Inference*, Operations Research 70(3), 2022; Howard, Ramdas, McAuliffe,
Sekhon, *Time-uniform, nonparametric, nonasymptotic confidence sequences*, Ann. Statist. 2021.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

MIXING_RATIO = 10.0
Array = npt.NDArray[np.float64]


def log_likelihood_ratio(difference: Array, variance: Array, tau2: Array) -> Array:
    """log Lambda of the one-sided (half-normal) mixture; element-wise on arrays."""
    from scipy import special

    total = variance + tau2
    return np.asarray(
        math.log(2.0)
        + 0.5 * np.log(variance / total)
        + tau2 * difference**2 / (2 * variance * total)
        + special.log_ndtr(np.sqrt(tau2) * difference / np.sqrt(variance * total)),
        dtype=np.float64,
    )


def _at_plan(z: float, log_a: float) -> float:
    """min(1, a Lambda) at the plan for the standardised difference z."""
    one = np.array([1.0])
    log_bound = log_a + log_likelihood_ratio(np.array([z]), one, one * MIXING_RATIO)[0]
    return math.exp(min(0.0, float(log_bound)))


def _false_winners(log_a: float) -> float:
    """E[min(1, a Lambda_plan)] for Z ~ N(0, 1): false winners over every read after the plan."""
    from scipy import integrate

    value, _ = integrate.quad(
        lambda z: _at_plan(z, log_a) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
        -40.0,
        40.0,
        points=[0.0, 2.0, 4.0],
        limit=400,
        epsabs=0.0,
        epsrel=1e-10,
    )
    return float(value)


@functools.lru_cache(maxsize=64)
def log_threshold(level: float) -> float:
    """log a: the rule confirms a variant when log Lambda >= -log a."""
    from scipy import optimize

    return float(optimize.brentq(lambda log_a: _false_winners(log_a) - level, -60.0, 20.0))


@functools.lru_cache(maxsize=64)
def boundary(level: float) -> float:
    """The z-statistic at the plan above which the rule confirms (2.59 for level 0.05)."""
    from scipy import optimize

    log_a = log_threshold(level)
    one = np.array([1.0])

    def excess(z: float) -> float:
        return float(log_a + log_likelihood_ratio(np.array([z]), one, one * MIXING_RATIO)[0])

    return float(optimize.brentq(excess, -40.0, 40.0))


def confirms(difference: Array, variance: Array, progress: Array, level: float) -> Array:
    """Whether the difference confirms a winner at ``level``, with ``progress`` >= 1 the share of
    the plan reached (element-wise on arrays; False where the variance is not positive)."""
    valid = (variance > 0) & (progress > 0)
    safe_variance = np.where(valid, variance, 1.0)
    tau2 = MIXING_RATIO * safe_variance * np.where(valid, progress, 1.0)
    log_lambda = log_likelihood_ratio(difference, safe_variance, tau2)
    return np.asarray(valid & (log_lambda + log_threshold(level) >= 0), dtype=np.bool_)
