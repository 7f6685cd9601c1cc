"""The verdict on one metric: the variants' results, progress toward the planned sample size,
the variants the winner rule (anchored at the plan, valid however often it is read) confirms,
and the winner, or the reason there is none yet with a sentence that says why. Pure."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abpilot.domain.errors import ValidationError
from abpilot.stats import anchored, guardrails
from abpilot.stats.frequentist import Comparison, Interval
from abpilot.stats.inputs import Arm, MetricInput, rate
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.power import mean_sample_size, proportion_sample_size
from abpilot.stats.srm import MIN_UNITS_PER_VARIANT, SrmCheck


class Reason(enum.StrEnum):
    WINNER = "winner_found"
    INSUFFICIENT_DATA = "insufficient_data"
    SRM = "srm_detected"
    NOT_SIGNIFICANT = "not_significant"
    SAMPLE_SIZE = "sample_size_not_reached"
    MIXED_POPULATIONS = "mixed_populations"
    CONVERSIONS_EXCEED_UNITS = "conversions_exceed_units"
    TAU_REQUIRED = "tau_required"
    NOT_CONFIRMED = "not_confirmed"


@dataclass(frozen=True, slots=True)
class VariantResult:
    key: str
    is_control: bool
    units: int
    conversions: int
    conversion_rate: float | None
    ci: Interval | None
    mean: float | None
    variance: float | None
    difference: float | None
    difference_ci: Interval | None
    lift: float | None
    lift_ci: Interval | None
    p_value: float | None
    p_value_z: float | None
    p_value_adjusted: float | None
    chance_to_beat_control: float | None
    probability_best: float | None
    expected_loss: float | None
    credible_interval: Interval | None
    significant: bool
    guardrail: guardrails.GuardrailCheck | None = None  # on a guardrail metric
    # A metric with a covariate: difference, lift, their intervals and p-value above are the
    # CUPED-adjusted ones (what the winner rule reads); the unadjusted ones, the theta used and
    # the variance reduction achieved (1 - adjusted / unadjusted variance) are beside them.
    unadjusted_difference: float | None = None
    unadjusted_difference_ci: Interval | None = None
    unadjusted_lift: float | None = None
    unadjusted_lift_ci: Interval | None = None
    unadjusted_p_value: float | None = None
    theta: float | None = None
    variance_reduction: float | None = None


@dataclass(frozen=True, slots=True)
class Winner:
    key: str
    conversion_rate: float | None
    mean: float | None
    p_value: float
    relative_improvement: float  # the lift, a fraction (0.25 is 25% better than the control)
    name: str = ""  # the variant's display name


@dataclass(frozen=True, slots=True)
class SampleSizeProgress:
    required_per_variant: int | None
    progress: float | None
    basis: str


def plan_progress(
    metric: MetricInput, control: Arm, options: AnalysisOptions, comparisons: int
) -> SampleSizeProgress:
    """Progress toward the planned size; planned for the winner rule in use (the one that stays
    valid under repeated reads unless the test is sequential) at alpha / ``comparisons``."""
    smallest = min(a.n for a in metric.arms)
    k = len(metric.arms)
    if options.sample_size_per_variant is not None:
        required = options.sample_size_per_variant
        return SampleSizeProgress(required, smallest / required, "planned")
    repeated_reads = not options.sequential
    try:
        if metric.binary:
            baseline = options.baseline if options.baseline is not None else rate(control)
            plan = proportion_sample_size(
                baseline_rate=baseline or 0.0,
                mde=options.mde,
                relative=options.mde_relative,
                alpha=options.alpha,
                power=options.power,
                variants=k,
                comparisons=comparisons,
                repeated_reads=repeated_reads,
            )
        else:
            baseline = options.baseline if options.baseline is not None else control.mean
            plan = mean_sample_size(
                baseline_mean=baseline or 0.0,
                standard_deviation=math.sqrt(control.variance or 0),
                mde=options.mde,
                relative=options.mde_relative,
                alpha=options.alpha,
                power=options.power,
                variants=k,
                comparisons=comparisons,
                repeated_reads=repeated_reads,
            )
    except ValidationError:
        return SampleSizeProgress(None, None, "unplannable")
    basis = "settings" if options.baseline is not None else "observed_control"
    return SampleSizeProgress(
        plan.required_per_variant, smallest / plan.required_per_variant, basis
    )


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the winner rule needs besides the results: the variants the rule for repeated reads
    confirms, and whether the sequential test lacks a mixing scale."""

    confirmed: frozenset[str]
    tau_missing: bool


def confirmed(
    comparisons: Sequence[Comparison | None],
    metric: MetricInput,
    plan: SampleSizeProgress,
    level: float,
    sign: float = 1.0,
) -> frozenset[str]:
    """Variants whose difference (times ``sign``: -1 when lower is better) the always-valid test
    anchored at the plan confirms."""
    if plan.progress is None or plan.progress < 1:
        return frozenset()
    found = set()
    for arm, comparison in zip(metric.arms, comparisons, strict=True):
        if comparison is None or comparison.difference is None or comparison.variance is None:
            continue
        if anchored.confirms(
            np.array([sign * comparison.difference]),
            np.array([comparison.variance]),
            np.array([plan.progress]),
            level,
        )[0]:
            found.add(arm.key)
    return frozenset(found)


def verdict(
    metric: MetricInput,
    results: list[VariantResult],
    srm: SrmCheck,
    plan: SampleSizeProgress,
    options: AnalysisOptions,
    evidence: Evidence,
) -> tuple[Winner | None, Reason, str]:
    if metric.mixed_populations:
        basis = (metric.basis or "units").replace("_", " ")
        return (
            None,
            Reason.MIXED_POPULATIONS,
            (
                f"the variants are not measured on the same population ({basis}): "
                f"{'; '.join(metric.mixed_populations)}; send exposures and conversions the same "
                "way (with unit ids, or all by variant) for every variant"
            ),
        )
    small = [r.key for r in results if r.units < MIN_UNITS_PER_VARIANT]
    if small:
        return (
            None,
            Reason.INSUFFICIENT_DATA,
            (f"too few units to compare ({', '.join(small)} under {MIN_UNITS_PER_VARIANT})"),
        )
    over = [a for a in metric.arms if metric.binary and a.successes > a.n]
    if over:
        counts = ", ".join(f"{a.key} {a.successes} > {a.n}" for a in over)
        return (
            None,
            Reason.CONVERSIONS_EXCEED_UNITS,
            (
                f"more conversions than units ({counts}): a rate above 1 cannot be tested; send "
                "conversions with unit ids (each unit converts once), or check the tracking"
            ),
        )
    if metric.ratio_moments:  # a ratio's data are its parts' totals, not conversions of its own
        empty = all(m.sum_denominator == 0 for m in metric.ratio_moments)
    else:
        empty = sum(r.conversions for r in results) == 0
    if empty:
        what = (
            "conversions" if metric.binary else "denominators" if metric.ratio_moments else "values"
        )
        return None, Reason.INSUFFICIENT_DATA, f"no {what} yet in any variant"
    if srm.flagged:
        return (
            None,
            Reason.SRM,
            (
                f"sample ratio mismatch (p = {srm.p_value:.2g} < 0.001): units "
                f"{list(srm.observed)} do not match the weights; the assignment or the tracking "
                "is broken, so no result can be trusted"
            ),
        )
    if evidence.tau_missing:
        return (
            None,
            Reason.TAU_REQUIRED,
            (
                "the sequential test has no mixing scale: the control's "
                f"{'rate' if metric.binary else 'mean'} is 0, so the relative mde gives none; "
                "set settings.analysis.tau (the absolute effect you expect), an absolute mde "
                "(mde_relative false) or a baseline"
            ),
        )
    sign = 1.0 if metric.higher_is_better else -1.0
    candidates = [
        r for r in results if r.significant and r.difference is not None and sign * r.difference > 0
    ]
    if not candidates:
        worse = [r.key for r in results if r.significant and sign * (r.difference or 0) < 0]
        detail = f"; significantly worse than control: {', '.join(worse)}" if worse else ""
        return (
            None,
            Reason.NOT_SIGNIFICANT,
            (
                f"no variant beats the control at alpha = {options.alpha} after the "
                f"{options.correction.value} correction{detail}"
            ),
        )
    if not options.sequential and (plan.progress is None or plan.progress < 1):
        needed = plan.required_per_variant
        return (
            None,
            Reason.SAMPLE_SIZE,
            (
                f"significant, but the planned sample size ({needed} units per variant) is not "
                f"reached ({min(r.units for r in results)} in the smallest variant); looking early"
                " inflates false positives: wait, or use the sequential test"
                if needed
                else "significant, but no sample size could be planned; set "
                "settings.analysis.sample_size_per_variant or use the sequential test"
            ),
        )
    if not options.sequential:
        significant = candidates
        candidates = [r for r in candidates if r.key in evidence.confirmed]
        if not candidates:
            keys = ", ".join(r.key for r in significant)
            return (
                None,
                Reason.NOT_CONFIRMED,
                (
                    f"{keys} significant at this read, but not yet by the rule that keeps false "
                    f"winners under alpha = {options.alpha} however often the analysis is read "
                    "after the plan (the always-valid test anchored at the planned size); keep "
                    "collecting"
                ),
            )
    best = max(candidates, key=lambda r: sign * (r.difference or 0.0))
    winner = Winner(
        key=best.key,
        conversion_rate=best.conversion_rate,
        mean=best.mean,
        p_value=best.p_value_adjusted or 0.0,
        relative_improvement=best.lift or 0.0,
        name=next((a.name for a in metric.arms if a.key == best.key and a.name), best.key),
    )
    return (
        winner,
        Reason.WINNER,
        (
            f"{best.key} beats the control (adjusted p = {winner.p_value:.3g}, "
            f"lift {winner.relative_improvement:+.1%})"
        ),
    )
