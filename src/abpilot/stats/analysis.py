"""The analysis of an experiment: every variant against the control on every metric, corrected for
multiple comparisons within families (the primary metric; the secondary metrics), checked for
sample ratio mismatch, and a winner rule that stays valid however often it is read
(``abpilot.stats.anchored``) and says why there is no winner yet; the guardrails' tests
(``abpilot.stats.guardrails``) and the decision they lead to with the primary metric
(``abpilot.stats.decision``). Every interval is at level 1 - alpha. Pure: it takes counts and
returns frozen results.

The work is split by step: ``inputs`` (what it takes), ``comparisons`` (each variant against the
control), ``verdict`` (the plan, the winner rule and the reason); this module puts them together
and re-exports their public names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from abpilot import notebook
from abpilot.stats import guardrails, stratified
from abpilot.stats.bayes import probability_best
from abpilot.stats.comparisons import Adjustment, Compared, compare_metric, guardrail_checks
from abpilot.stats.corrections import adjust
from abpilot.stats.decision import Decision, decide
from abpilot.stats.frequentist import wilson_interval
from abpilot.stats.inputs import Arm, MetricInput, control_index, mixing_scale, rate
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.srm import SrmCheck, sample_ratio_check
from abpilot.stats.verdict import (
    Evidence,
    Reason,
    SampleSizeProgress,
    VariantResult,
    Winner,
    confirmed,
    plan_progress,
    verdict,
)

if TYPE_CHECKING:
    from pandas import DataFrame

__all__ = [
    "Analysis",
    "Arm",
    "Compared",
    "MetricInput",
    "Reason",
    "SampleSizeProgress",
    "VariantResult",
    "Winner",
    "analyse",
    "compare_metric",
]


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
    covariate: str | None = None  # the covariate the metric is adjusted by (CUPED)
    # A capped metric: every unit's total counted at most ``cap`` (the ``cap_percentile``
    # quantile of all units' totals for a percentile cap).
    cap: float | None = None
    cap_percentile: float | None = None

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


def analyse(
    metrics: Sequence[MetricInput],
    *,
    metric: str,
    options: AnalysisOptions,
    primary: str | None = None,
    watched: Sequence[MetricInput] = (),
) -> Analysis:
    """Analyse ``metric``. Multiple comparisons are corrected within two families: the primary
    metric (``primary``, by default the first of ``metrics``) over its variants, and the other
    metrics together over every variant on each. The sample size is planned at alpha divided by
    the size of the analysed metric's family, so the plan and the correction agree, and adding a
    secondary metric changes neither the primary metric's correction nor its plan. ``watched``
    are metrics (with a margin and a direction) watched for harm only: their guardrail checks
    join ``guardrails`` with ``decides`` False, and the decision does not read them."""
    primary = primary or metrics[0].key
    compared = {m.key: compare_metric(m, options) for m in metrics}
    checks = tuple(
        check for m in metrics if m.margin is not None for check in guardrail_checks(m, options)
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
    checks += tuple(
        replace(check, decides=False) for m in watched for check in guardrail_checks(m, options)
    )
    own: dict[str, guardrails.GuardrailCheck] = {}
    for check in checks:
        if check.metric == metric:
            own.setdefault(check.variant, check)
    variants = tuple(replace(v, guardrail=own.get(v.key)) for v in result.variants)
    return replace(result, variants=variants, guardrails=checks, decision=decision)


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
    comparisons, best, posteriors, adjustments = compared[metric]
    control_at = control_index(target)
    level = 1 - options.alpha
    results = []
    for i, arm in enumerate(target.arms):
        comparison, adjustment = comparisons[i], adjustments[i]
        p_adjusted = adjusted.get((metric, i))
        chance = None
        if posteriors is not None and not arm.is_control:
            chance = probability_best([posteriors[i], posteriors[control_at]])[0]
        results.append(
            VariantResult(
                key=arm.key,
                is_control=arm.is_control,
                units=arm.n,
                conversions=arm.successes,
                conversion_rate=rate(arm),
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
        if adjustment is not None:
            results[-1] = _adjusted(results[-1], adjustment)
    control = target.arms[control_at]
    if target.stratified:
        srm = stratified.stratified_srm(target.strata)
    else:
        srm = sample_ratio_check([a.n for a in target.arms], [a.weight for a in target.arms])
    declared = (len(target.arms) - 1) * len(members)
    plan = plan_progress(target, control, options, declared)
    method = next(
        (c.method for c in comparisons if c is not None),
        "fisher_exact" if target.binary else "welch_t",
    )
    sign = 1.0 if target.higher_is_better else -1.0
    rule_level = options.alpha / declared
    evidence = Evidence(
        confirmed=confirmed(comparisons, target, plan, rule_level, sign),
        tau_missing=options.sequential and mixing_scale(target, control, options) is None,
    )
    losers = [r.key for r in results if r.significant and sign * (r.difference or 0.0) < 0]
    if not options.sequential:
        confirmed_worse = confirmed(comparisons, target, plan, rule_level, -sign)
        losers = [key for key in losers if key in confirmed_worse]
    winner, reason, message = verdict(target, results, srm, plan, options, evidence)
    return Analysis(
        metric=metric,
        kind="ratio" if target.ratio_moments else "binary" if target.binary else "value",
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
        covariate=target.covariate if target.covariate_moments else None,
        cap=target.cap,
        cap_percentile=target.cap_percentile,
    )


def _adjusted(result: VariantResult, adjustment: Adjustment) -> VariantResult:
    """``result`` with the unadjusted comparison, theta and variance reduction beside it."""
    plain = adjustment.unadjusted
    return replace(
        result,
        unadjusted_difference=plain.difference,
        unadjusted_difference_ci=plain.difference_ci,
        unadjusted_lift=plain.lift,
        unadjusted_lift_ci=plain.lift_ci,
        unadjusted_p_value=plain.p_value,
        theta=adjustment.theta,
        variance_reduction=adjustment.variance_reduction,
    )
