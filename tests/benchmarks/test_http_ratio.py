"""The HTTP benchmark's stated ratio pairs each round of a route with its bare twin's same round,
so one disturbed round (the machine busy for a moment) moves neither the verdict nor the pairing."""

from __future__ import annotations

from benchmarks.http_load import Figure, HttpRow


def figure(rates: list[float]) -> Figure:
    return Figure.of(
        {
            "requests": 1,
            "per_second": max(rates),
            "median_per_second": sorted(rates)[len(rates) // 2],
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "errors": 0,
            "first_error": "",
            "rates": rates,
        }
    )


def test_the_ratio_is_the_median_of_rounds_measured_back_to_back() -> None:
    # Round 2 ran while the machine was busy: both endpoints slowed alike.
    row = HttpRow("SQLite", 1, "assign", figure([500, 250, 520]), figure([1000, 500, 1300]))
    assert row.round_ratios() == [0.5, 0.5, 0.4]
    assert row.paired_ratio() == 0.5
    # The ratio of the two best rounds, which ran at different moments, says otherwise.
    assert row.real is not None
    assert row.bare is not None
    assert row.real.per_second / row.bare.per_second == 0.4


def test_a_row_without_figures_has_no_ratio() -> None:
    assert HttpRow("Redis", 2, "exposures", note="skipped").paired_ratio() is None
