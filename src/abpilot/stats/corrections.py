"""Multiple-comparison corrections across variants and metrics (statsmodels' multipletests)."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from statsmodels.stats.multitest import multipletests


class Correction(enum.StrEnum):
    HOLM = "holm"
    BENJAMINI_HOCHBERG = "bh"
    NONE = "none"


_METHODS = {Correction.HOLM: "holm", Correction.BENJAMINI_HOCHBERG: "fdr_bh"}


def adjust(p_values: Sequence[float | None], correction: Correction) -> list[float | None]:
    """Adjusted p-values in the same order; None (untestable) entries stay None and do not
    count toward the family."""
    present = [(i, p) for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    if not present:
        return adjusted
    if correction is Correction.NONE:
        values = [p for _, p in present]
    else:
        values = list(multipletests([p for _, p in present], method=_METHODS[correction])[1])
    for (i, _), value in zip(present, values, strict=True):
        adjusted[i] = float(min(1.0, value))
    return adjusted
