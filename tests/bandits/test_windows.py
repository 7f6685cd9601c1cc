"""Windows over daily data: the last 14 days, widened to 30, else the prior alone."""

from __future__ import annotations

from datetime import date, timedelta

from abpilot.bandits.windows import Fallback, windowed_counts
from abpilot.store.base import DailyRow

TODAY = date(2025, 3, 31)


def rows(variant: str, days_ago: range, impressions: int, clicks: int) -> list[DailyRow]:
    return [DailyRow(TODAY - timedelta(days=d), variant, impressions, clicks) for d in days_ago]


def test_recent_window_widened_window_and_prior() -> None:
    data = [
        *rows("rich", range(0, 40), 100, 3),  # 14 days: 1,400 impressions
        *rows("thin", range(0, 30), 10, 1),  # 14 days: 140 (< 200); 30 days: 300
        *rows("old", range(20, 40), 100, 5),  # nothing in 14 days; days 20..29 in 30: 1,000
        *rows("starved", range(0, 40), 1, 0),  # 30 days: 30
    ]
    arms = windowed_counts(
        data,
        ["rich", "thin", "old", "starved", "absent"],
        today=TODAY,
        window_days=14,
        max_window_days=30,
        min_impressions=200,
    )
    summary = {a.key: (a.impressions, a.clicks, a.window_days, a.fallback) for a in arms}
    assert summary["rich"] == (1400, 42, 14, Fallback.NONE)
    assert summary["thin"] == (300, 30, 30, Fallback.WIDENED)
    assert summary["old"] == (1000, 50, 30, Fallback.WIDENED)
    assert summary["starved"] == (0, 0, None, Fallback.PRIOR)
    assert summary["absent"] == (0, 0, None, Fallback.PRIOR)


def test_window_includes_today_and_excludes_day_fourteen() -> None:
    data = [
        DailyRow(TODAY, "a", 150, 1),
        DailyRow(TODAY - timedelta(days=13), "a", 50, 1),
        DailyRow(TODAY - timedelta(days=14), "a", 1_000, 900),
    ]
    (arm,) = windowed_counts(
        data, ["a"], today=TODAY, window_days=14, max_window_days=30, min_impressions=200
    )
    assert (arm.impressions, arm.clicks, arm.window_days) == (200, 2, 14)
