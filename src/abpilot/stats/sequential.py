"""Always-valid inference for the difference of two means: the mixture sequential probability
ratio test (mSPRT) with a normal mixing distribution.

Reference: R. Johari, P. Koomen, L. Pekelis, D. Walsh, "Always Valid Inference: Continuous
Monitoring of A/B Tests", Operations Research 70(3), 2022 (arXiv:1512.04922), section 4, in the
normal approximation. With the estimate d of the difference, its variance
s^2 = var_t/n_t + var_c/n_c and the mixing variance tau^2 of the effect under the alternative:

    Lambda = sqrt(s^2 / (s^2 + tau^2)) * exp(tau^2 d^2 / (2 s^2 (s^2 + tau^2)))

and p = min(1, 1 / Lambda) stays valid however often it is looked at (P(ever <= alpha) <= alpha
under the null). The matching always-valid confidence interval is
    d +/- sqrt(s^2 (s^2 + tau^2) / tau^2 * log((s^2 + tau^2) / (s^2 alpha^2))).
The p-value here is the current one, not the running minimum over past looks: it is valid on its
own and only slightly conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SequentialResult:
    p_value: float
    ci: tuple[float, float]
    tau: float


def msprt(
    difference: float, variance: float, tau: float, alpha: float = 0.05
) -> SequentialResult | None:
    """Always-valid p-value and interval; None when the variance of the estimate is zero."""
    if not variance > 0 or not tau > 0:
        return None
    tau2 = tau * tau
    total = variance + tau2
    log_lambda = 0.5 * math.log(variance / total) + tau2 * difference**2 / (2 * variance * total)
    p_value = 1.0 if log_lambda <= 0 else math.exp(-log_lambda)
    half = math.sqrt(variance * total / tau2 * math.log(total / (variance * alpha**2)))
    return SequentialResult(min(1.0, p_value), (difference - half, difference + half), tau)
