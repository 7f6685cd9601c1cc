"""Sample ratio mismatch: do the units split as the weights say they should?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SRM_THRESHOLD = 0.001
MIN_UNITS_PER_VARIANT = 8


@dataclass(frozen=True, slots=True)
class SrmCheck:
    p_value: float | None
    flagged: bool
    expected: tuple[float, ...]
    observed: tuple[int, ...]
    reason: str | None = None


def sample_ratio_check(
    observed: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SrmCheck:
    """Chi-square goodness of fit of ``observed`` units against ``weights``; flagged at
    p < ``threshold`` (0.001, the industry's convention), tested only once every variant has
    at least 8 units."""
    total = sum(observed)
    weight_sum = sum(weights)
    expected = tuple(total * w / weight_sum for w in weights)
    counts = tuple(int(n) for n in observed)
    if min(counts, default=0) < MIN_UNITS_PER_VARIANT:
        return SrmCheck(None, False, expected, counts, "insufficient_data")
    from scipy import stats  # here: the monitoring thresholds import this module's constants

    p_value = float(stats.chisquare(counts, expected).pvalue)
    return SrmCheck(p_value, p_value < threshold, expected, counts)
