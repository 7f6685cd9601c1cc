"""Guardrails: does a variant harm a metric that must not get worse, beyond the harm tolerated?

For a guardrail with inferiority margin M (a difference of rates or means, or with a relative
margin a fraction of the control's, tested on the lift) and direction s (+1 when higher is
better, -1 when lower is), the improvement of a variant is u = s * estimate. Two tests:

- **Harm beyond the margin ruled out** (non-inferiority, one-sided): H0 u <= -M against
  u > -M, with T = (u + M) / se and p = P(T' >= T): Welch's t with its Welch-Satterthwaite
  degrees of freedom for a difference of means, the normal distribution for a difference of
  rates (the unpooled Wald variance) and for a lift (the delta-method variance, as
  ``frequentist.relative_lift``). Under the sequential test, the always-valid mSPRT of u + M
  (``stats.sequential``) in place of T. No correction across guardrails: a variant ships only
  when every one of its guardrails rules harm out, an intersection-union test, which is level
  alpha without one (Berger 1982, *Technometrics* 24(4)).
- **Harm detected** (always valid, so it may be read daily): the mSPRT of u against 0, with the
  margin as its mixing scale (the harm worth detecting quickly); harm when u < 0 and p < alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abpilot.stats.sequential import msprt


@dataclass(frozen=True, slots=True)
class Estimate:
    """A variant against the control on one scale: the estimate, its variance and, for Welch's
    t, its degrees of freedom (None: normal)."""

    value: float
    variance: float
    df: float | None = None


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One variant on one guardrail. ``estimate`` is the difference (or, with a relative margin,
    the lift) against the control; ``bound`` its one-sided 1 - alpha bound on the harmful side
    (the worst change the data leave plausible); ``p_value`` the non-inferiority test's;
    ``decides`` whether the decision reads it."""

    metric: str
    variant: str
    higher_is_better: bool
    margin: float
    margin_relative: bool
    estimate: float | None
    bound: float | None
    p_value: float | None
    harm_ruled_out: bool
    harm_p_value: float | None
    harm_detected: bool
    method: str
    # False for a metric watched for harm only (``settings.monitoring.guardrails``, the older
    # setting): monitoring reads its harm test, the decision does not.
    decides: bool = True

    @property
    def harmful(self) -> bool:
        """Harm is detected and harm beyond the margin is not ruled out."""
        return self.harm_detected and not self.harm_ruled_out


def non_inferiority(
    estimate: Estimate,
    *,
    margin: float,
    higher_is_better: bool,
    alpha: float,
    tau: float | None = None,
) -> tuple[float | None, float | None, str]:
    """(p-value, bound, method) of H0 "harm of at least ``margin``"; always valid (the mSPRT
    with mixing scale ``tau``) when ``tau`` is given. None where the variance is not positive."""
    from scipy import stats

    if not estimate.variance > 0 or not math.isfinite(estimate.value):
        return None, None, "none"
    sign = 1.0 if higher_is_better else -1.0
    shifted = sign * estimate.value + margin
    se = math.sqrt(estimate.variance)
    if tau is not None:
        result = msprt(shifted, estimate.variance, tau, alpha)
        if result is None:
            return None, None, "msprt"
        half = (result.ci[1] - result.ci[0]) / 2
        p_value = result.p_value if shifted > 0 else 1.0
        return p_value, estimate.value - sign * half, "msprt"
    if estimate.df is None:
        p_value = float(stats.norm.sf(shifted / se))
        quantile = float(stats.norm.ppf(1 - alpha))
        method = "z"
    else:
        p_value = float(stats.t.sf(shifted / se, estimate.df))
        quantile = float(stats.t.ppf(1 - alpha, estimate.df))
        method = "welch_t"
    return p_value, estimate.value - sign * quantile * se, method


def harm(
    estimate: Estimate, *, higher_is_better: bool, tau: float | None, alpha: float
) -> float | None:
    """The always-valid p-value of a change in the harmful direction (1 when the estimate points
    the other way; None without a variance or a mixing scale)."""
    if tau is None or not estimate.variance > 0:
        return None
    result = msprt(estimate.value, estimate.variance, tau, alpha)
    if result is None:
        return None
    improvement = estimate.value if higher_is_better else -estimate.value
    return result.p_value if improvement < 0 else 1.0


def check(
    estimate: Estimate | None,
    *,
    metric: str,
    variant: str,
    higher_is_better: bool,
    margin: float,
    margin_relative: bool,
    alpha: float,
    tau: float | None,
    sequential: bool,
) -> GuardrailCheck:
    """Both tests of one variant on one guardrail; ``tau`` is the mixing scale on the estimate's
    scale (the margin, or another scale when the margin is 0)."""
    if estimate is None:
        return GuardrailCheck(
            metric, variant, higher_is_better, margin, margin_relative,
            None, None, None, False, None, False, "none",
        )  # fmt: skip
    p_value, bound, method = non_inferiority(
        estimate,
        margin=margin,
        higher_is_better=higher_is_better,
        alpha=alpha,
        tau=tau if sequential else None,
    )
    if sequential and tau is None:
        p_value, bound, method = None, None, "msprt"
    harm_p = harm(estimate, higher_is_better=higher_is_better, tau=tau, alpha=alpha)
    return GuardrailCheck(
        metric=metric,
        variant=variant,
        higher_is_better=higher_is_better,
        margin=margin,
        margin_relative=margin_relative,
        estimate=estimate.value,
        bound=bound,
        p_value=p_value,
        harm_ruled_out=p_value is not None and p_value < alpha,
        harm_p_value=harm_p,
        harm_detected=harm_p is not None and harm_p < alpha,
        method=method,
    )
