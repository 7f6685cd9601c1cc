"""The analysis per segment of a dimension (issue 18): the full analysis of each segment's
counters, each variant's p-values corrected by Benjamini-Hochberg across the segments, and per
metric and variant Cochran's Q of the segments' differences (is the effect different across
segments?). Pure; the overall analysis is computed apart and never changed by it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from abpilot.stats.analysis import Analysis, analyse
from abpilot.stats.comparisons import compare_metric
from abpilot.stats.heterogeneity import SegmentEffect, cochran_q, segment_p_values
from abpilot.stats.inputs import MetricInput
from abpilot.stats.options import AnalysisOptions


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment's analysis, and each variant's p-value (in ``analysis.variants`` order; None
    for the control) corrected by Benjamini-Hochberg across the segments."""

    value: str
    analysis: Analysis
    p_values_across_segments: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class VariantHeterogeneity:
    """Cochran's Q of one variant's difference with the control on one metric across the
    segments with an estimate; ``heterogeneous`` when its p-value is below alpha."""

    metric: str
    variant: str
    q: float | None
    df: int
    p_value: float | None
    i_squared: float | None
    heterogeneous: bool


@dataclass(frozen=True, slots=True)
class SegmentBreakdown:
    dimension: str
    segments: tuple[Segment, ...]
    heterogeneity: tuple[VariantHeterogeneity, ...]


def breakdown(
    dimension: str,
    segments: Mapping[str, Sequence[MetricInput]],
    *,
    metric: str,
    options: AnalysisOptions,
    primary: str | None = None,
) -> SegmentBreakdown:
    """``metric`` analysed in every segment (``segments``: value -> every metric's input), BH
    across segments per variant, and the heterogeneity of every metric's effects."""
    analyses = {
        value: analyse(inputs, metric=metric, options=options, primary=primary)
        for value, inputs in segments.items()
    }
    corrected: dict[str, list[float | None]] = {value: [] for value in analyses}
    for i in range(_width(analyses)):
        raw = [a.variants[i].p_value if i < len(a.variants) else None for a in analyses.values()]
        for value, p in zip(analyses, segment_p_values(raw), strict=True):
            corrected[value].append(p)
    found = tuple(Segment(value, a, tuple(corrected[value])) for value, a in analyses.items())
    return SegmentBreakdown(dimension, found, _heterogeneity(segments, options))


def _width(analyses: Mapping[str, Analysis]) -> int:
    return max((len(a.variants) for a in analyses.values()), default=0)


def _heterogeneity(
    segments: Mapping[str, Sequence[MetricInput]], options: AnalysisOptions
) -> tuple[VariantHeterogeneity, ...]:
    effects: dict[tuple[str, str], list[SegmentEffect]] = {}
    for value, inputs in segments.items():
        for m in inputs:
            comparisons = compare_metric(m, options)[0]
            for arm, comparison in zip(m.arms, comparisons, strict=True):
                if comparison is None:
                    continue
                effects.setdefault((m.key, arm.key), []).append(
                    SegmentEffect(value, comparison.difference, comparison.variance)
                )
    found = []
    for (metric, variant), by_segment in effects.items():
        q = cochran_q(by_segment)
        found.append(
            VariantHeterogeneity(
                metric,
                variant,
                q.q,
                q.df,
                q.p_value,
                q.i_squared,
                q.p_value is not None and q.p_value < options.alpha,
            )
        )
    return tuple(found)
