"""The analysis of an experiment: every variant against the control on every metric, corrected for
multiple comparisons within families (the primary metric; the secondary metrics), checked for
sample ratio mismatch, and a winner rule that stays valid however often it is read
(``abpilot.stats.anchored``) and says why there is no winner yet; the guardrails' tests
(``abpilot.stats.guardrails``) and the decision they lead to with the primary metric
(``abpilot.stats.decision``). Every interval is at level 1 - alpha. Pure: it takes counts and
returns frozen results."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from abpilot import notebook
from abpilot.domain.errors import ValidationError
from abpilot.stats import anchored, guardrails, stratified
from abpilot.stats.bayes import BestArm, Posterior, best_arm, beta_posterior, normal_posterior
from abpilot.stats.corrections import adjust
from abpilot.stats.decision import Decision, decide
from abpilot.stats.frequentist import (
    Comparison,
    Interval,
    compare_means,
    compare_proportions,
    wilson_interval,
)
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.power import mean_sample_size, proportion_sample_size
from abpilot.stats.sequential import msprt
from abpilot.stats.srm import MIN_UNITS_PER_VARIANT, SrmCheck, sample_ratio_check
from abpilot.stats.stratified import Stratum

if TYPE_CHECKING:
    from pandas import DataFrame


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
class Arm:
    """One variant's data on one metric. ``successes`` are converting units (or conversion events
    in event-level mode); ``mean``/``variance`` are per unit of the population ``n``."""

    key: str
    is_control: bool
    weight: float
    n: int
    successes: int
    mean: float | None
    variance: float | None
    name: str | None = None  # the variant's display name (the key when None)


@dataclass(frozen=True, slots=True)
class MetricInput:
    """A metric's data per arm; ``strata`` (periods of constant weights) when weights changed.
    ``basis`` names the population every arm's ``n`` counts (``abpilot.stats.summary``), and
    ``mixed_populations`` says why the arms' data do not measure the same population.
    ``higher_is_better`` is the metric's direction; a guardrail has a ``margin`` (the harm it
    tolerates, ``margin_relative`` a fraction of the control's)."""

    key: str
    binary: bool
    arms: tuple[Arm, ...]
    strata: tuple[Stratum, ...] = ()
    basis: str | None = None
    mixed_populations: tuple[str, ...] = ()
    higher_is_better: bool = True
    margin: float | None = None
    margin_relative: bool = False

    @property
    def stratified(self) -> bool:
        return len(self.strata) > 1


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


@dataclass(frozen=True, slots=True)
class Analysis:
    metric: str
    kind: str
    method: str
    control: str
    variants: tuple[VariantResult, ...]
    srm: SrmCheck
    winner: Winner | None
    reason: Reason
    message: str
    sample_size: SampleSizeProgress
    alpha: float
    correction: str
    sequential: bool
    family_size: int
    bayesian_method: str | None
    stratified: bool = False
    periods: int = 1
    basis: str | None = None
    higher_is_better: bool = True
    # Variants worse than the control on this metric by the winner rule's standard.
    losers: tuple[str, ...] = ()
    # Every variant on every guardrail metric, and what the primary metric and they decide.
    guardrails: tuple[guardrails.GuardrailCheck, ...] = ()
    decision: Decision | None = None

    def _repr_html_(self) -> str:
        """The variants as a table under the verdict, in a notebook (``abpilot.notebook``)."""
        return notebook.table(
            f"Analysis of {self.metric}",
            [notebook.record(v, rename={"key": "variant"}) for v in self.variants],
            note=f"{self.reason.value}: {self.message}",
            details=notebook.record(self),
        )

    def to_frame(self) -> DataFrame:
        """One row per variant, indexed by its key (``variant``), a column per field of
        ``VariantResult`` (an interval as ``<name>_low`` and ``<name>_high``). Needs pandas."""
        rows = [notebook.record(v, rename={"key": "variant"}) for v in self.variants]
        return notebook.frame(rows, index="variant")


def _rate(arm: Arm) -> float | None:
    return arm.successes / arm.n if arm.n > 0 else None


def _compare(metric: MetricInput, i: int, c: int, options: AnalysisOptions) -> Comparison:
    arm, control = metric.arms[i], metric.arms[c]
    if metric.stratified:
        compare = stratified.compare_binary if metric.binary else stratified.compare_means
        comparison = compare(metric.strata, i, c, options.alpha)
    elif metric.binary:
        if arm.successes > arm.n or control.successes > control.n:
            return Comparison(None, None, None, None, None, "fisher_exact")
        comparison = compare_proportions(
            arm.successes, arm.n, control.successes, control.n, options.alpha
        )
    else:
        comparison = compare_means(
            arm.mean or 0.0,
            arm.variance or 0.0,
            arm.n,
            control.mean or 0.0,
            control.variance or 0.0,
            control.n,
            options.alpha,
        )
    if not options.sequential or comparison.difference is None:
        return comparison
    return _sequential(comparison, metric, arm, control, options)


def _difference_variance(metric: MetricInput, arm: Arm, control: Arm) -> float:
    if metric.binary:
        p_t, p_c = arm.successes / arm.n, control.successes / control.n
        return p_t * (1 - p_t) / arm.n + p_c * (1 - p_c) / control.n
    return (arm.variance or 0.0) / arm.n + (control.variance or 0.0) / control.n


def _tau(metric: MetricInput, control: Arm, options: AnalysisOptions) -> float | None:
    """The mixing scale: ``tau``, else the absolute ``mde``, else the relative ``mde`` of the
    planned ``baseline`` (of the control's observed rate or mean without one). None when that is
    0 (a control rate of 0 and a relative mde): the test then needs ``tau`` to be set."""
    if options.tau is not None:
        return options.tau
    if not options.mde_relative:
        return options.mde
    effect = options.mde * abs(_baseline(metric, control, options))
    return effect if effect > 0 else None


def _baseline(metric: MetricInput, control: Arm, options: AnalysisOptions) -> float:
    if options.baseline is not None:
        return options.baseline
    if metric.binary:
        return control.successes / control.n if control.n > 0 else 0.0
    return control.mean if control.mean is not None else 0.0


def _sequential(
    comparison: Comparison, metric: MetricInput, arm: Arm, control: Arm, options: AnalysisOptions
) -> Comparison:
    """The always-valid p-value, difference interval and lift interval (the mSPRT of the lift
    with its delta-method variance and the mixing scale relative to the control)."""
    tau = _tau(metric, control, options)
    variance = _difference_variance(metric, arm, control)
    result = (
        None if tau is None else msprt(comparison.difference or 0.0, variance, tau, options.alpha)
    )
    lift_ci = None
    base = _rate(control) if metric.binary else control.mean
    if tau is not None and comparison.lift is not None and base:
        lift = msprt(
            comparison.lift, _lift_variance(metric, arm, control), tau / abs(base), options.alpha
        )
        lift_ci = None if lift is None else lift.ci
    return Comparison(
        difference=comparison.difference,
        difference_ci=None if result is None else result.ci,
        lift=comparison.lift,
        lift_ci=lift_ci,
        p_value=None if result is None else result.p_value,
        method="msprt",
        p_value_z=comparison.p_value_z,
    )


def _lift_variance(metric: MetricInput, arm: Arm, control: Arm) -> float:
    """Delta-method variance of mean_t / mean_c - 1 (as ``frequentist.relative_lift``)."""
    if metric.binary:
        m_t, m_c = arm.successes / arm.n, control.successes / control.n
        v_t, v_c = m_t * (1 - m_t) / arm.n, m_c * (1 - m_c) / control.n
    else:
        m_t, m_c = arm.mean or 0.0, control.mean or 0.0
        v_t, v_c = (arm.variance or 0.0) / arm.n, (control.variance or 0.0) / control.n
    return v_t / m_c**2 + m_t**2 * v_c / m_c**4


def _posteriors(metric: MetricInput, options: AnalysisOptions) -> list[Posterior] | None:
    if metric.stratified:
        return stratified.standardised_posteriors(metric.strata, metric.binary, options.prior)
    if metric.binary:
        if any(a.successes > a.n for a in metric.arms):
            return None
        return [beta_posterior(a.successes, a.n, options.prior) for a in metric.arms]
    found = [normal_posterior(a.mean or 0.0, a.variance or 0.0, a.n) for a in metric.arms]
    return None if any(p is None for p in found) else [p for p in found if p is not None]


def _plan(
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
            baseline = options.baseline if options.baseline is not None else _rate(control)
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


def _estimate(metric: MetricInput, i: int, c: int) -> guardrails.Estimate | None:
    """The fixed-horizon estimate a guardrail is tested on: the difference (of rates with the
    unpooled variance, of means with Welch's degrees of freedom), or with a relative margin the
    lift with its delta-method variance. Across periods of constant weights, the stratified
    difference (over the control's pooled rate or mean, taken as known, for a lift)."""
    arm, control = metric.arms[i], metric.arms[c]
    base = _rate(control) if metric.binary else control.mean
    if metric.stratified:
        compare = stratified.compare_binary if metric.binary else stratified.compare_means
        found = compare(metric.strata, i, c, 0.05)
        if found.difference is None or found.variance is None:
            return None
        if not metric.margin_relative:
            return guardrails.Estimate(found.difference, found.variance)
        return (
            guardrails.Estimate(found.difference / base, found.variance / base**2) if base else None
        )
    if arm.n < 2 or control.n < 2:
        return None
    if metric.binary and (arm.successes > arm.n or control.successes > control.n):
        return None
    if metric.margin_relative:
        mean = _rate(arm) if metric.binary else arm.mean
        if not base:
            return None
        return guardrails.Estimate((mean or 0.0) / base - 1, _lift_variance(metric, arm, control))
    if metric.binary:
        variance = _difference_variance(metric, arm, control)
        return guardrails.Estimate((_rate(arm) or 0.0) - (base or 0.0), variance)
    se2_t, se2_c = (arm.variance or 0.0) / arm.n, (control.variance or 0.0) / control.n
    se2 = se2_t + se2_c
    df = se2**2 / (se2_t**2 / (arm.n - 1) + se2_c**2 / (control.n - 1)) if se2 > 0 else None
    return guardrails.Estimate((arm.mean or 0.0) - (base or 0.0), se2, df)


def _guardrails(metric: MetricInput, options: AnalysisOptions) -> list[guardrails.GuardrailCheck]:
    """Every variant on the guardrail ``metric``. The mixing scale of the always-valid tests is
    the margin (the harm worth detecting), or the sequential test's scale when the margin is 0
    (over the control's rate or mean for a relative margin)."""
    c = next(i for i, a in enumerate(metric.arms) if a.is_control)
    control = metric.arms[c]
    margin = metric.margin or 0.0
    tau = margin or _tau(metric, control, options)
    if tau is not None and metric.margin_relative and not margin:
        base = _rate(control) if metric.binary else control.mean
        tau = tau / abs(base) if base else None
    return [
        guardrails.check(
            _estimate(metric, i, c),
            metric=metric.key,
            variant=arm.key,
            higher_is_better=metric.higher_is_better,
            margin=margin,
            margin_relative=metric.margin_relative,
            alpha=options.alpha,
            tau=tau,
            sequential=options.sequential,
        )
        for i, arm in enumerate(metric.arms)
        if not arm.is_control
    ]


def compare_metric(
    metric: MetricInput, options: AnalysisOptions
) -> tuple[list[Comparison | None], BestArm | None, list[Posterior] | None]:
    c = next(i for i, a in enumerate(metric.arms) if a.is_control)
    comparisons: list[Comparison | None] = [
        None if arm.is_control else _compare(metric, i, c, options)
        for i, arm in enumerate(metric.arms)
    ]
    posteriors = _posteriors(metric, options)
    best = best_arm(posteriors) if posteriors else None
    return comparisons, best, posteriors


def analyse(
    metrics: Sequence[MetricInput],
    *,
    metric: str,
    options: AnalysisOptions,
    primary: str | None = None,
) -> Analysis:
    """Analyse ``metric``. Multiple comparisons are corrected within two families: the primary
    metric (``primary``, by default the first of ``metrics``) over its variants, and the other
    metrics together over every variant on each. The sample size is planned at alpha divided by
    the size of the analysed metric's family, so the plan and the correction agree, and adding a
    secondary metric changes neither the primary metric's correction nor its plan."""
    primary = primary or metrics[0].key
    compared = {m.key: compare_metric(m, options) for m in metrics}
    checks = tuple(
        check for m in metrics if m.margin is not None for check in _guardrails(m, options)
    )
    result = _analyse(metrics, compared, metric, primary, options)
    head = result if metric == primary else _analyse(metrics, compared, primary, primary, options)
    decision = decide(
        reason=head.reason.value,
        message=head.message,
        winner=head.winner.key if head.winner else None,
        losers=head.losers,
        srm=head.srm,
        progress=head.sample_size.progress,
        guardrails=checks,
    )
    own = {c.variant: c for c in checks if c.metric == metric}
    variants = tuple(replace(v, guardrail=own.get(v.key)) for v in result.variants)
    return replace(result, variants=variants, guardrails=checks, decision=decision)


Compared = tuple[list[Comparison | None], BestArm | None, list[Posterior] | None]


def _analyse(
    metrics: Sequence[MetricInput],
    compared: dict[str, Compared],
    metric: str,
    primary: str,
    options: AnalysisOptions,
) -> Analysis:
    members = [m for m in metrics if (m.key == primary) == (metric == primary)]
    family = [(m.key, i) for m in members for i, c in enumerate(compared[m.key][0]) if c]
    raw = [compared[k][0][i].p_value for k, i in family]  # type: ignore[union-attr]
    adjusted = dict(zip(family, adjust(raw, options.correction), strict=True))
    target = next(m for m in metrics if m.key == metric)
    comparisons, best, posteriors = compared[metric]
    control_index = next(i for i, a in enumerate(target.arms) if a.is_control)
    level = 1 - options.alpha
    results = []
    for i, arm in enumerate(target.arms):
        comparison = comparisons[i]
        p_adjusted = adjusted.get((metric, i))
        chance = None
        if posteriors is not None and not arm.is_control:
            chance = best_arm([posteriors[i], posteriors[control_index]]).probability_best[0]
        results.append(
            VariantResult(
                key=arm.key,
                is_control=arm.is_control,
                units=arm.n,
                conversions=arm.successes,
                conversion_rate=_rate(arm),
                ci=wilson_interval(arm.successes, arm.n, options.alpha),
                mean=arm.mean,
                variance=arm.variance,
                difference=comparison.difference if comparison else None,
                difference_ci=comparison.difference_ci if comparison else None,
                lift=comparison.lift if comparison else None,
                lift_ci=comparison.lift_ci if comparison else None,
                p_value=comparison.p_value if comparison else None,
                p_value_z=comparison.p_value_z if comparison else None,
                p_value_adjusted=p_adjusted,
                chance_to_beat_control=chance,
                probability_best=best.probability_best[i] if best else None,
                expected_loss=best.expected_loss[i] if best else None,
                credible_interval=posteriors[i].credible_interval(level) if posteriors else None,
                significant=p_adjusted is not None and p_adjusted < options.alpha,
            )
        )
    control = target.arms[control_index]
    if target.stratified:
        srm = stratified.stratified_srm(target.strata)
    else:
        srm = sample_ratio_check([a.n for a in target.arms], [a.weight for a in target.arms])
    declared = (len(target.arms) - 1) * len(members)
    plan = _plan(target, control, options, declared)
    method = next(
        (c.method for c in comparisons if c is not None),
        "fisher_exact" if target.binary else "welch_t",
    )
    sign = 1.0 if target.higher_is_better else -1.0
    rule_level = options.alpha / declared
    evidence = Evidence(
        confirmed=_confirmed(comparisons, target, plan, rule_level, sign),
        tau_missing=options.sequential and _tau(target, control, options) is None,
    )
    losers = [r.key for r in results if r.significant and sign * (r.difference or 0.0) < 0]
    if not options.sequential:
        confirmed_worse = _confirmed(comparisons, target, plan, rule_level, -sign)
        losers = [key for key in losers if key in confirmed_worse]
    winner, reason, message = _verdict(target, results, srm, plan, options, evidence)
    return Analysis(
        metric=metric,
        kind="binary" if target.binary else "value",
        method=method,
        control=control.key,
        variants=tuple(results),
        srm=srm,
        winner=winner,
        reason=reason,
        message=message,
        sample_size=plan,
        alpha=options.alpha,
        correction=options.correction.value,
        sequential=options.sequential,
        family_size=len(family),
        bayesian_method=best.method if best else None,
        stratified=target.stratified,
        periods=max(1, len(target.strata)),
        basis=target.basis,
        higher_is_better=target.higher_is_better,
        losers=tuple(losers) if reason is not Reason.SRM else (),
    )


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the winner rule needs besides the results: the variants the rule for repeated reads
    confirms, and whether the sequential test lacks a mixing scale."""

    confirmed: frozenset[str]
    tau_missing: bool


def _confirmed(
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


def _verdict(
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
    if sum(r.conversions for r in results) == 0:
        what = "conversions" if metric.binary else "values"
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
