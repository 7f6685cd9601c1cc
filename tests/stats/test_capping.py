"""Capping (abpilot.stats.capping): the percentile threshold against NumPy's quantile of every
unit's total written out (tests/cases/capping.json, and 1,000,000 units here), against
PostgreSQL's PERCENTILE_CONT (the definition GrowthBook uses there), the capped sums against
np.minimum, and the sampled threshold above the exact limit against its rank-error bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from abpilot.stats.capping import (
    MAX_EXACT_UNITS,
    capped_sums,
    capped_variants,
    percentile_threshold,
)
from tests.conftest import postgres_schema_url

CASES = json.loads((Path(__file__).parents[1] / "cases" / "capping.json").read_text())["cases"]
EXACT = 1e-12


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_one_threshold_from_every_variant_matches_numpy(case: dict[str, Any]) -> None:
    for expected in case["cases"]:
        threshold, sums = capped_variants(
            case["totals"],
            quantile=expected["quantile"],
            population=case["population"],
            ignore_zeros=expected["ignore_zeros"],
        )
        assert threshold.value == pytest.approx(expected["threshold"], rel=EXACT, abs=EXACT)
        assert threshold.units == expected["units"]
        assert (threshold.method, threshold.rank_error) == ("exact", 0.0)
        for found, want in zip(sums, expected["capped"], strict=True):
            assert found.sum == pytest.approx(want["sum"], rel=1e-12)
            assert found.sum_squares == pytest.approx(want["sum_squares"], rel=1e-12)
            assert found.capped == want["capped"]


def test_exact_at_a_million_units_with_zeros_and_refunds() -> None:
    """1,000,000 units, 400,000 of them without a value (zeros, given as a count) and some with
    negative totals: the same threshold as np.quantile of all million totals, for every
    quantile and with zeros ignored."""
    rng = np.random.default_rng(1_000_000)
    valued = rng.lognormal(3, 1.5, 600_000)
    valued[:30_000] *= -1
    everything = np.concatenate([valued, np.zeros(400_000)])
    for quantile in (0.001, 0.2, 0.5, 0.9, 0.99, 0.999):
        found = percentile_threshold(valued, quantile=quantile, zero_units=400_000)
        assert found.value == np.quantile(everything, quantile)
        assert found.units == 1_000_000
        ignored = percentile_threshold(
            valued, quantile=quantile, zero_units=400_000, ignore_zeros=True
        )
        assert ignored.value == np.quantile(valued, quantile)
        assert ignored.units == 600_000


def test_the_threshold_is_postgresqls_percentile_cont() -> None:
    """PostgreSQL's PERCENTILE_CONT, which GrowthBook's percentile cap uses on PostgreSQL."""
    case = CASES[1]
    everything = [v for totals in case["totals"] for v in totals]
    zeros = sum(case["population"]) - len(everything)
    everything += [0.0] * zeros
    with postgres_schema_url() as url:
        import psycopg

        with psycopg.connect(url) as conn:
            for expected in case["cases"]:
                query = (
                    "SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY v)"
                    " FROM unnest(%s::float8[]) v"
                    + (" WHERE v <> 0" if expected["ignore_zeros"] else "")
                )
                row = conn.execute(query, (expected["quantile"], everything)).fetchone()
                assert row is not None
                found = percentile_threshold(
                    [v for totals in case["totals"] for v in totals],
                    quantile=expected["quantile"],
                    zero_units=zeros,
                    ignore_zeros=expected["ignore_zeros"],
                )
                assert found.value == pytest.approx(row[0], rel=EXACT, abs=EXACT)


def test_above_the_exact_limit_a_sample_keeps_the_rank_within_its_bound() -> None:
    """With the exact limit lowered to 20,000 for the test, 300,000 units (a third of them
    zeros): the threshold comes from a sample, says so, and its rank among all the totals is
    within the stated bound of the quantile (DKW, Massart's constant); without an rng it
    refuses."""
    rng = np.random.default_rng(5)
    valued = rng.exponential(10.0, 200_000)
    everything = np.sort(np.concatenate([valued, np.zeros(100_000)]))
    with pytest.raises(ValueError, match="rng"):
        percentile_threshold(valued, quantile=0.9, zero_units=100_000, max_exact=20_000)
    for quantile in (0.5, 0.9, 0.99):
        found = percentile_threshold(
            valued,
            quantile=quantile,
            zero_units=100_000,
            rng=np.random.default_rng(int(quantile * 100)),
            max_exact=20_000,
        )
        assert found.method == "sample"
        assert found.rank_error == pytest.approx(np.sqrt(np.log(2e6) / 40_000))
        assert found.value is not None
        rank = np.searchsorted(everything, found.value) / everything.size
        assert abs(rank - quantile) <= found.rank_error
    assert MAX_EXACT_UNITS >= 1_000_000


def test_capped_sums_and_cross_products() -> None:
    totals = np.array([1.0, 5.0, 12.0, -3.0, 40.0])
    x = np.array([2.0, 1.0, 0.5, 3.0, 4.0])
    found = capped_sums(totals, cap=10.0, covariates=x)
    capped = np.minimum(totals, 10.0)
    assert found.sum == capped.sum()
    assert found.sum_squares == capped @ capped
    assert found.capped == 2
    assert found.sum_products == capped @ x
    with pytest.raises(ValueError, match="one value per total"):
        capped_sums(totals, cap=10.0, covariates=x[:3])


def test_edges() -> None:
    assert percentile_threshold([], quantile=0.5).value is None
    assert percentile_threshold([], quantile=0.5, zero_units=3).value == 0.0
    assert percentile_threshold([7.0], quantile=0.99).value == 7.0
    assert percentile_threshold([0.0, 0.0], quantile=0.5, ignore_zeros=True).value is None
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="quantile"):
            percentile_threshold([1.0], quantile=bad)
    threshold, sums = capped_variants([[], []], quantile=0.9, population=[0, 0])
    assert threshold.value is None
    assert [s.sum for s in sums] == [0.0, 0.0]
    with pytest.raises(ValueError, match="one count per variant"):
        capped_variants([[1.0]], quantile=0.9, population=[1, 2])
    with pytest.raises(ValueError, match="cannot be smaller"):
        capped_variants([[1.0, 2.0]], quantile=0.9, population=[1])
