"""The analysis benchmark's code path at a tiny size, so it cannot rot: the store's answers agree
with the NumPy reference on the unit-level arrays, and a wrong answer gets no time."""

from __future__ import annotations

import dataclasses

import numpy as np
from benchmarks.analysis_data import ADJUSTED, CAPPED, QUANTILE, population

from benchmarks import analysis

UNITS = 2_000


def test_the_memory_store_agrees_with_numpy_and_is_timed() -> None:
    lines: list[str] = []
    (row,) = analysis.measure_all(UNITS, 1, ("memory",), lines.append)
    assert row.store == "memory"
    assert row.units == UNITS
    assert row.agreement <= analysis.TOLERANCE
    assert row.analysis_seconds is not None
    assert row.segments_seconds is not None
    assert f"loaded {UNITS:,} units" in lines[0]
    assert "| memory | 2,000 |" in analysis.row_line(row)


def test_the_reference_covers_every_metric_segment_and_the_cap() -> None:
    pop = population(UNITS)
    expected = analysis.expected_numbers(pop)
    cap = expected[("all", CAPPED, "", "cap")]
    # The cap: linear interpolation between order statistics of every unit's total (zeros too).
    ordered = np.sort(pop.basket)
    h = (UNITS - 1) * QUANTILE
    low = int(np.floor(h))
    assert cap == ordered[low] + (h - low) * (ordered[low + 1] - ordered[low])
    # CUPED's theta is the slope of y on x over every unit, by least squares.
    slope = np.polyfit(pop.pre_revenue, pop.revenue, 1)[0]
    assert abs(expected[("all", ADJUSTED, "b", "theta")] - slope) < 1e-9 * abs(slope)
    scopes = {key[0] for key in expected}
    assert scopes == {"all", "nl", "de", "fr", "be", "es", "it", "pl", "se", "dk", "at"}


def test_a_wrong_answer_reports_no_time() -> None:
    pop = population(UNITS)
    service, experiment, _ = analysis.load(pop)
    try:
        expected = analysis.expected_numbers(pop)
        key = ("all", ADJUSTED, "c", "difference")
        wrong = {**expected, key: expected[key] * (1 + 1e-3)}
        row = analysis.measure("memory", service, experiment, pop, 1, wrong)
        assert row.agreement > analysis.TOLERANCE
        assert row.analysis_seconds is None
        assert row.segments_seconds is None
        assert "no time" in analysis.row_line(row)
        missing = dict(expected)
        del missing[key]
        assert analysis.largest_difference(missing, expected) == float("inf")
    finally:
        service.close()


def test_rows_print_ratios_to_the_reference() -> None:
    row = analysis.AnalysisRow("SQLite", 10, 0.5, 0.2, 0.1, 0.05, 1e-14)
    line = analysis.row_line(row)
    assert "5.0x" in line
    assert "4.0x" in line
    assert "5.0x" not in analysis.row_line(dataclasses.replace(row, analysis_seconds=None))
