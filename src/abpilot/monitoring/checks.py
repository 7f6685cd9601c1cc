"""The health checks of a running experiment, pure: each takes plain values (counts, p-values,
weights, times) and returns a ``Check`` whose message is a full sentence for a person on call.

Thresholds are strict: a figure exactly at its threshold passes (p = srm_p is no mismatch, a
weight of exactly max_arm_dominance is not dominance, a rate of exactly min_rate is not low, an
age of exactly stale_after_hours is not stale).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from abpilot.stats.guardrails import GuardrailCheck
from abpilot.stats.segments import SegmentBreakdown
from abpilot.stats.srm import MIN_UNITS_PER_VARIANT, SrmCheck

STRONG_EVIDENCE = 0.95  # a dominant arm is fine once its probability of being best reaches this


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    ALERT = "alert"


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.ALERT: 2}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status (OK when there is none)."""
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.OK)


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``figures`` are the plain JSON values it judged; ``ran`` is False
    when it judged nothing (too few units, weights never recalculated, not running): an OK that
    says nothing was checked, which a face shows as "not checked", never as passed."""

    name: str
    status: Status
    message: str
    figures: Mapping[str, Any] = field(default_factory=dict)
    ran: bool = True


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _p(value: float) -> str:
    return f"{value:.3g}"


def _hours(value: float) -> str:
    return f"{value:.1f} hours" if value != 1 else "1 hour"


def _split(counts: Sequence[float], integer: bool) -> str:
    return "/".join(f"{c:.0f}" if integer else f"{c:.1f}" for c in counts)


def srm_check(
    srm: SrmCheck, *, threshold: float, variants: Sequence[str], periods: int = 1
) -> Check:
    """Sample ratio mismatch, from the analysis' SRM result (per period of constant weights for
    a bandit whose weights changed): an alert at p < ``threshold``."""
    figures: dict[str, Any] = {
        "p_value": srm.p_value,
        "threshold": threshold,
        "observed": dict(zip(variants, srm.observed, strict=True)),
        "expected": dict(zip(variants, (round(e, 2) for e in srm.expected), strict=True)),
        "method": "chi_square_per_period" if periods > 1 else "chi_square",
        "periods": periods,
    }
    if srm.p_value is None:
        fewest = min(srm.observed, default=0)
        return Check(
            "srm",
            Status.OK,
            f"Too few units to test the sample ratio yet (fewest in a variant: {fewest}; every "
            f"variant needs {MIN_UNITS_PER_VARIANT}).",
            figures,
            ran=False,
        )
    within = f", compared within {periods} periods of constant weights" if periods > 1 else ""
    observed, expected = _split(srm.observed, True), _split(srm.expected, False)
    if srm.p_value < threshold:
        return Check(
            "srm",
            Status.ALERT,
            f"Sample ratio mismatch: units split {observed} where the weights expect {expected} "
            f"(p = {_p(srm.p_value)} < {threshold:g}{within}); assignment or tracking is "
            "broken, so no result of this experiment can be trusted.",
            figures,
        )
    return Check(
        "srm",
        Status.OK,
        f"Units split {observed} against {expected} expected from the weights, consistent "
        f"with them (p = {_p(srm.p_value)}{within}).",
        figures,
    )


def arm_dominance_check(
    arms: Sequence[str],
    weights: Sequence[float],
    probability_best: Sequence[float | None],
    *,
    period: int,
    max_dominance: float,
    strong_evidence: float = STRONG_EVIDENCE,
) -> Check:
    """A bandit arm holding more than ``max_dominance`` of the traffic while its probability of
    being best is below ``strong_evidence``: a warning. Weights still as configured (period 0)
    were chosen by a person, not the bandit, and are not judged."""
    top = max(range(len(arms)), key=lambda i: weights[i])
    arm, weight, best = arms[top], weights[top], probability_best[top]
    figures: dict[str, Any] = {
        "arm": arm,
        "weight": weight,
        "probability_best": best,
        "max_arm_dominance": max_dominance,
        "strong_evidence": strong_evidence,
        "period": period,
        "weights": dict(zip(arms, weights, strict=True)),
    }
    if period == 0:
        return Check(
            "arm_dominance",
            Status.OK,
            "The weights are still as configured (no recalculation has changed them yet).",
            figures,
            ran=False,
        )
    evidence = "unknown" if best is None else _pct(best)
    if weight > max_dominance and (best is None or best < strong_evidence):
        return Check(
            "arm_dominance",
            Status.WARNING,
            f"Arm '{arm}' holds {_pct(weight)} of the traffic (above {_pct(max_dominance)}) while "
            f"its probability of being best is {evidence} (below {_pct(strong_evidence)}); the "
            "bandit may be locking in on weak evidence.",
            figures,
        )
    return Check(
        "arm_dominance",
        Status.OK,
        f"The largest weight, {_pct(weight)} on '{arm}', is within {_pct(max_dominance)} or "
        f"backed by strong evidence (probability of being best {evidence}).",
        figures,
    )


@dataclass(frozen=True, slots=True)
class ArmRate:
    variant: str
    units: int
    conversions: int

    @property
    def rate(self) -> float | None:
        return self.conversions / self.units if self.units > 0 else None


def min_rate_check(
    arms: Sequence[ArmRate], *, metric: str, min_rate: float, min_units: int, source: str
) -> Check:
    """Every arm converting below ``min_rate`` on the primary metric, each with at least
    ``min_units`` units: a warning (conversions are probably not being tracked)."""
    figures: dict[str, Any] = {
        "metric": metric,
        "min_rate": min_rate,
        "min_units": min_units,
        "source": source,
        "rates": {a.variant: a.rate for a in arms},
        "units": {a.variant: a.units for a in arms},
    }
    fewest = min(arms, key=lambda a: a.units)
    if fewest.units < min_units:
        return Check(
            "min_rate",
            Status.OK,
            f"Too few units to judge the rate of '{metric}' yet ({fewest.units} in "
            f"'{fewest.variant}'; {min_units} needed in every arm).",
            figures,
            ran=False,
        )
    highest = max(arms, key=lambda a: a.rate or 0.0)
    top = highest.rate or 0.0
    if top < min_rate:
        return Check(
            "min_rate",
            Status.WARNING,
            f"Every arm converts below {_pct(min_rate)} on '{metric}' (highest: {_pct(top)} in "
            f"'{highest.variant}', with at least {min_units} units each); check that "
            "conversions are being tracked.",
            figures,
        )
    return Check(
        "min_rate",
        Status.OK,
        f"At least one arm converts at {_pct(min_rate)} or more on '{metric}' (highest: "
        f"{_pct(top)} in '{highest.variant}').",
        figures,
    )


def stale_check(
    *,
    last_event_at: datetime | None,
    running_since: datetime | None,
    now: datetime,
    stale_after_hours: float,
    source: str | None,
) -> Check:
    """No event for more than ``stale_after_hours``: an alert. The clock starts at the last
    event, or at ``running_since`` (when the experiment last started or resumed) when no event
    has arrived since then, so an experiment resumed after a pause is not stale at once."""
    figures: dict[str, Any] = {
        "last_event_at": None if last_event_at is None else last_event_at.isoformat(),
        "running_since": None if running_since is None else running_since.isoformat(),
        "stale_after_hours": stale_after_hours,
        "source": source,
    }
    limit = f"alert after {stale_after_hours:g} hours"
    if last_event_at is not None and (running_since is None or last_event_at >= running_since):
        hours = (now - last_event_at).total_seconds() / 3600
        figures["hours_since"] = round(hours, 3)
        at = last_event_at.strftime("%Y-%m-%d %H:%M UTC")
        if hours > stale_after_hours:
            return Check(
                "stale",
                Status.ALERT,
                f"No event for {_hours(hours)} (the last arrived at {at}; {limit}); traffic or "
                "tracking has stopped.",
                figures,
            )
        return Check("stale", Status.OK, f"The last event arrived {_hours(hours)} ago.", figures)
    if running_since is None:
        figures["hours_since"] = None
        return Check("stale", Status.OK, "The experiment is not running yet.", figures, ran=False)
    hours = (now - running_since).total_seconds() / 3600
    figures["hours_since"] = round(hours, 3)
    if hours > stale_after_hours:
        return Check(
            "stale",
            Status.ALERT,
            f"No event has arrived since the experiment started running {_hours(hours)} ago "
            f"({limit}); check that the application sends its events.",
            figures,
        )
    return Check(
        "stale",
        Status.OK,
        f"No event yet since the experiment started running {_hours(hours)} ago ({limit}).",
        figures,
    )


@dataclass(frozen=True, slots=True)
class ConversionCount:
    variant: str
    metric: str
    conversions: int
    population: int
    basis: str  # "exposures" in event-level mode, else the units counted


def conversions_check(counts: Sequence[ConversionCount]) -> Check:
    """More conversions than exposures (event-level mode; more converting units than units
    otherwise): an alert, since conversions are double-counted or exposures lost."""
    over = [c for c in counts if c.conversions > c.population]
    figures: dict[str, Any] = {
        "exceeded": [
            {
                "variant": c.variant,
                "metric": c.metric,
                "conversions": c.conversions,
                "population": c.population,
                "basis": c.basis,
            }
            for c in over
        ]
    }
    if over:
        details = "; ".join(
            f"'{c.variant}' has {c.conversions} conversions of '{c.metric}' for "
            f"{c.population} {c.basis.replace('_', ' ')}"
            for c in over
        )
        return Check(
            "conversions_exceed_exposures",
            Status.ALERT,
            f"Conversions exceed exposures: {details}; conversions are counted twice or "
            "exposures are lost.",
            figures,
        )
    return Check(
        "conversions_exceed_exposures",
        Status.OK,
        "No variant counts more conversions than exposures.",
        figures,
    )


def guardrail_harm_check(checks: Sequence[GuardrailCheck], *, alpha: float) -> Check:
    """The guardrail metrics (``"role": "guardrail"``) by the analysis' always-valid test of
    harm, so a daily read keeps false alarms under ``alpha``: an alert when a variant harms one
    and harm beyond its margin is not ruled out, a warning when the harm is within the margin."""
    figures: dict[str, Any] = {
        "alpha": alpha,
        "method": "msprt",
        "comparisons": [
            {
                "metric": c.metric,
                "variant": c.variant,
                "higher_is_better": c.higher_is_better,
                "margin": c.margin,
                "margin_relative": c.margin_relative,
                "estimate": c.estimate,
                "harm_p_value": c.harm_p_value,
                "harm_detected": c.harm_detected,
                "harm_ruled_out": c.harm_ruled_out,
                "decides": c.decides,
            }
            for c in checks
        ],
    }

    def said(c: GuardrailCheck) -> str:
        scale = "lift" if c.margin_relative else "difference"
        return (
            f"'{c.variant}' harms '{c.metric}' ({scale} {c.estimate:+.4g}, margin {c.margin:g}, "
            f"always-valid p = {_p(c.harm_p_value or 0)})"
        )

    harmful = [c for c in checks if c.harmful]
    if harmful:
        details = "; ".join(said(c) for c in harmful)
        return Check(
            "guardrail_harm",
            Status.ALERT,
            f"Guardrail harmed: {details}, and harm beyond the margin is not ruled out "
            f"(alpha = {alpha:g}).",
            figures,
        )
    tolerated = [c for c in checks if c.harm_detected]
    if tolerated:
        details = "; ".join(said(c) for c in tolerated)
        return Check(
            "guardrail_harm",
            Status.WARNING,
            f"Guardrail harmed within its margin: {details} (alpha = {alpha:g}).",
            figures,
        )
    metrics = ", ".join(dict.fromkeys(c.metric for c in checks))
    return Check(
        "guardrail_harm",
        Status.OK,
        f"No variant harms {metrics} by the always-valid test (alpha = {alpha:g}).",
        figures,
        ran=any(c.harm_p_value is not None for c in checks),
    )


def heterogeneity_check(breakdowns: Sequence[SegmentBreakdown], *, alpha: float) -> Check:
    """The experiment's declared dimensions: a warning when a variant's effect on a metric
    differs across the segments of one (Cochran's Q, p below ``alpha``). A fixed-horizon test
    read at every check, so a warning, never an alert: a reason to look at the segments."""
    found = [(b.dimension, h) for b in breakdowns for h in b.heterogeneity]
    figures: dict[str, Any] = {
        "alpha": alpha,
        "method": "cochran_q",
        "comparisons": [
            {
                "dimension": dimension,
                "metric": h.metric,
                "variant": h.variant,
                "q": h.q,
                "df": h.df,
                "p_value": h.p_value,
                "i_squared": h.i_squared,
                "heterogeneous": h.heterogeneous,
            }
            for dimension, h in found
        ],
    }
    differing = [(d, h) for d, h in found if h.heterogeneous]
    if differing:
        details = "; ".join(
            f"'{h.variant}' on '{h.metric}' across '{d}' (Q = {h.q:.4g}, p = {_p(h.p_value or 0)})"
            for d, h in differing
        )
        return Check(
            "heterogeneity",
            Status.WARNING,
            f"The effect differs across segments: {details} (alpha = {alpha:g}); read the "
            "analysis per segment before generalising the overall result.",
            figures,
        )
    dimensions = ", ".join(b.dimension for b in breakdowns)
    return Check(
        "heterogeneity",
        Status.OK,
        f"No effect differs across the segments of {dimensions} (alpha = {alpha:g}).",
        figures,
        ran=any(h.p_value is not None for _, h in found),
    )


# contextual bandits ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectionShare:
    """How often the bandit chose each arm in one context (``None``: every context pooled),
    and each arm's probability of being best there under the posteriors now."""

    context: str | None
    selections: Mapping[str, int]
    probability_best: Mapping[str, float]

    @property
    def decisions(self) -> int:
        return sum(self.selections.values())

    @property
    def top(self) -> str:
        return max(self.selections, key=lambda arm: self.selections[arm])

    @property
    def share(self) -> float:
        return self.selections[self.top] / self.decisions if self.decisions else 0.0


def selection_dominance_check(
    overall: SelectionShare,
    contexts: Sequence[SelectionShare],
    *,
    max_dominance: float,
    min_decisions: int,
    days: int,
    strong_evidence: float = STRONG_EVIDENCE,
) -> Check:
    """A contextual bandit choosing one arm for more than ``max_dominance`` of its decisions,
    overall or in one context (each judged once it has ``min_decisions`` decisions), while
    that arm's probability of being best there is below ``strong_evidence``: a warning."""

    def judged(s: SelectionShare) -> bool:
        return s.decisions >= min_decisions and s.decisions > 0

    def dominant(s: SelectionShare) -> bool:
        best = s.probability_best.get(s.top)
        return judged(s) and s.share > max_dominance and (best is None or best < strong_evidence)

    def plain(s: SelectionShare) -> dict[str, Any]:
        n = s.decisions
        return {
            "decisions": n,
            "arm": s.top if n else None,
            "share": s.share if n else None,
            "probability_best": s.probability_best.get(s.top) if n else None,
            "selection_rates": {a: (c / n if n else None) for a, c in s.selections.items()},
            "judged": judged(s),
            "dominant": dominant(s),
        }

    figures: dict[str, Any] = {
        "max_arm_dominance": max_dominance,
        "strong_evidence": strong_evidence,
        "min_decisions": min_decisions,
        "days": days,
        "overall": plain(overall),
        "contexts": [{"context_key": s.context, **plain(s)} for s in contexts],
    }
    period = f"in the last {days} day{'s' if days != 1 else ''}"

    def said(s: SelectionShare) -> str:
        best = s.probability_best.get(s.top)
        evidence = "unknown" if best is None else _pct(best)
        return (
            f"'{s.top}' got {_pct(s.share)} of {s.decisions} decisions (probability of being "
            f"best {evidence})"
        )

    found = [s for s in (overall, *contexts) if dominant(s)]
    if found:
        parts = [
            f"{'overall' if s.context is None else f'in context {s.context}'} {said(s)}"
            for s in found
        ]
        return Check(
            "arm_dominance",
            Status.WARNING,
            f"One arm takes more than {_pct(max_dominance)} of the bandit's decisions {period} "
            f"without strong evidence (below {_pct(strong_evidence)} of being best): "
            f"{'; '.join(parts)}; the bandit may be locking in on weak evidence.",
            figures,
        )
    if not judged(overall):
        return Check(
            "arm_dominance",
            Status.OK,
            f"Too few bandit decisions to judge arm dominance yet ({overall.decisions} {period}; "
            f"{min_decisions} needed).",
            figures,
            ran=False,
        )
    checked = sum(judged(s) for s in contexts)
    return Check(
        "arm_dominance",
        Status.OK,
        f"No arm takes more than {_pct(max_dominance)} of the bandit's decisions {period} "
        f"without strong evidence, overall (largest: {said(overall)}) or in the {checked} "
        f"context{'s' if checked != 1 else ''} with {min_decisions} decisions or more.",
        figures,
    )


def success_rate_check(
    decisions: int, successes: int, *, min_rate: float, min_decisions: int, days: int
) -> Check:
    """A contextual bandit whose decisions succeed (click, thumbs up, good rating) less often
    than ``min_rate``, once it has ``min_decisions`` decisions: a warning."""
    rate = successes / decisions if decisions else None
    figures: dict[str, Any] = {
        "decisions": decisions,
        "successes": successes,
        "success_rate": rate,
        "min_rate": min_rate,
        "min_units": min_decisions,
        "source": f"decisions_last_{days}_days",
    }
    period = f"in the last {days} day{'s' if days != 1 else ''}"
    if rate is None or decisions < min_decisions:
        return Check(
            "min_rate",
            Status.OK,
            f"Too few decisions to judge the success rate yet ({decisions} {period}; "
            f"{min_decisions} needed).",
            figures,
            ran=False,
        )
    if rate < min_rate:
        return Check(
            "min_rate",
            Status.WARNING,
            f"Only {_pct(rate)} of the {decisions} decisions {period} got a success (click, "
            f"thumbs up or a good rating), below {_pct(min_rate)}; check the recommendations, "
            "and that feedback is being sent.",
            figures,
        )
    return Check(
        "min_rate",
        Status.OK,
        f"{_pct(rate)} of the {decisions} decisions {period} got a success (at least "
        f"{_pct(min_rate)}).",
        figures,
    )


def average_rating_check(
    ratings: Sequence[float], *, min_avg_rating: float, min_ratings: int, days: int
) -> Check:
    """The mean of the ratings given to a contextual bandit's decisions below
    ``min_avg_rating``, once there are ``min_ratings`` of them: a warning."""
    mean = math.fsum(ratings) / len(ratings) if ratings else None
    figures: dict[str, Any] = {
        "ratings": len(ratings),
        "avg_rating": mean,
        "min_avg_rating": min_avg_rating,
        "min_units": min_ratings,
        "source": f"decisions_last_{days}_days",
    }
    period = f"in the last {days} day{'s' if days != 1 else ''}"
    if mean is None or len(ratings) < min_ratings:
        return Check(
            "min_avg_rating",
            Status.OK,
            f"Too few ratings to judge the average yet ({len(ratings)} {period}; {min_ratings} "
            "needed).",
            figures,
            ran=False,
        )
    if mean < min_avg_rating:
        return Check(
            "min_avg_rating",
            Status.WARNING,
            f"The {len(ratings)} ratings {period} average {mean:.3g}, below {min_avg_rating:g}; "
            "users rate what they are shown poorly.",
            figures,
        )
    return Check(
        "min_avg_rating",
        Status.OK,
        f"The {len(ratings)} ratings {period} average {mean:.3g} (at least {min_avg_rating:g}).",
        figures,
    )
