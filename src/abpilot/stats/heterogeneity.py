"""Is the effect different across segments? Cochran's Q on the per-segment effects, and
Benjamini-Hochberg across the segments' p-values.

With k segments, each with an effect estimate e_i (a difference or a lift) and its variance v_i,
the inverse-variance weights w_i = 1 / v_i give the fixed-effect pooled effect
e = sum w_i e_i / sum w_i and

    Q = sum w_i (e_i - e)^2,

chi-square with k - 1 degrees of freedom when the effect is the same in every segment
(W. G. Cochran, "The combination of estimates from different experiments", Biometrics 10, 1954);
p = P(chi2_{k-1} > Q). I^2 = max(0, (Q - (k - 1)) / Q) is the share of the variation between
segments beyond chance (Higgins, Thompson, "Quantifying heterogeneity in a meta-analysis",
Statistics in Medicine 21, 2002). Segments without an estimate or with a variance of 0 are left
out (a zero variance would weigh infinitely), and their p-values stay None.

The segments' own p-values are corrected together by Benjamini-Hochberg
(``abpilot.stats.corrections``): a segment breakdown is a search, so its false discovery rate is
what is controlled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abpilot.stats.corrections import Correction, adjust


@dataclass(frozen=True, slots=True)
class SegmentEffect:
    """One segment's effect estimate and its variance (None when the segment has none)."""

    segment: str
    effect: float | None
    variance: float | None


@dataclass(frozen=True, slots=True)
class Heterogeneity:
    """Cochran's Q over the ``segments`` that carry an estimate, with its degrees of freedom
    and p-value, I^2, and the pooled (fixed-effect) effect; None below 2 such segments."""

    q: float | None
    df: int
    p_value: float | None
    i_squared: float | None
    pooled_effect: float | None
    pooled_variance: float | None
    segments: tuple[str, ...]


def cochran_q(effects: Sequence[SegmentEffect]) -> Heterogeneity:
    used = [
        s for s in effects if s.effect is not None and s.variance is not None and s.variance > 0
    ]
    keys = tuple(s.segment for s in used)
    if not used:
        return Heterogeneity(None, 0, None, None, None, None, keys)
    e = np.array([s.effect for s in used], dtype=np.float64)
    w = 1 / np.array([s.variance for s in used], dtype=np.float64)
    pooled = float(np.dot(w, e) / w.sum())
    pooled_variance = float(1 / w.sum())
    df = len(used) - 1
    if df == 0:
        return Heterogeneity(None, 0, None, None, pooled, pooled_variance, keys)
    q = float(np.dot(w, (e - pooled) ** 2))
    from scipy import stats  # loaded on first use: a worker that only ingests never does

    p_value = float(stats.chi2.sf(q, df))
    i_squared = max(0.0, (q - df) / q) if q > 0 else 0.0
    return Heterogeneity(q, df, p_value, i_squared, pooled, pooled_variance, keys)


def segment_p_values(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values across segments, in the same order; None stays None
    and does not count toward the family."""
    return adjust(p_values, Correction.BENJAMINI_HOCHBERG)
