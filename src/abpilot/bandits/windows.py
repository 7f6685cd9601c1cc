"""Time windows over daily aggregates, for a world that changes (docs/architecture.md §3).

Each arm uses the last ``window_days`` days (ending at the reference day, inclusive). An arm with
fewer than ``min_impressions`` there widens to ``max_window_days``; still short, it uses the prior
alone. The result says which window and which fallback each arm used.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from abpilot.domain.records import DailyRow


class Fallback(enum.StrEnum):
    NONE = "none"
    WIDENED = "widened"
    PRIOR = "prior"


@dataclass(frozen=True, slots=True)
class WindowedArm:
    key: str
    impressions: int
    clicks: int
    window_days: int | None
    fallback: Fallback


def _totals(rows: Iterable[DailyRow], variant: str, first: date, last: date) -> tuple[int, int]:
    impressions = clicks = 0
    for row in rows:
        if row.variant == variant and first <= row.day <= last:
            impressions += row.impressions
            clicks += row.clicks
    return impressions, clicks


def windowed_counts(
    rows: Sequence[DailyRow],
    variants: Sequence[str],
    *,
    today: date,
    window_days: int,
    max_window_days: int,
    min_impressions: int,
) -> list[WindowedArm]:
    arms = []
    for variant in variants:
        for days, fallback in ((window_days, Fallback.NONE), (max_window_days, Fallback.WIDENED)):
            impressions, clicks = _totals(rows, variant, today - timedelta(days=days - 1), today)
            if impressions >= min_impressions:
                arms.append(WindowedArm(variant, impressions, clicks, days, fallback))
                break
        else:
            arms.append(WindowedArm(variant, 0, 0, None, Fallback.PRIOR))
    return arms
