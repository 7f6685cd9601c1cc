"""One population basis for every variant of a metric, and the conversions counted against it."""

from __future__ import annotations

import pytest

from abpilot.stats.summary import (
    Basis,
    VariantData,
    choose_basis,
    summarise,
    summarise_variants,
)
from abpilot.store.base import MetricTotals, VariantCounters

NONE = MetricTotals()


def unit_conversions(units: int, count: int | None = None) -> MetricTotals:
    count = units if count is None else count
    return MetricTotals(count=count, units=units, sum=float(count), sum_squares=float(count))


def event_conversions(count: int) -> MetricTotals:
    return MetricTotals(count=count, units=0, sum=float(count), sum_squares=float(count))


@pytest.mark.parametrize(
    ("counters", "basis"),
    [
        ([VariantCounters(unique_units=1), VariantCounters(assigned_units=50)], "exposed_units"),
        ([VariantCounters(assigned_units=3, exposures=9), VariantCounters()], "assigned_units"),
        ([VariantCounters(exposures=9), VariantCounters(exposures=1)], "exposures"),
        ([VariantCounters(), VariantCounters()], "none"),
    ],
)
def test_the_basis_is_the_first_population_any_variant_has(
    counters: list[VariantCounters], basis: str
) -> None:
    assert choose_basis(counters) == Basis(basis)


def test_every_variant_is_counted_on_the_chosen_basis() -> None:
    result = summarise_variants(
        [
            VariantData("a", unit_conversions(50), VariantCounters(190, 12, 10)),
            VariantData("b", unit_conversions(50), VariantCounters(assigned_units=193)),
        ]
    )
    assert result.basis is Basis.EXPOSED_UNITS
    assert [(s.n, s.basis) for s in result.summaries] == [
        (10, Basis.EXPOSED_UNITS),
        (0, Basis.EXPOSED_UNITS),
    ]
    # b's units are not counted on another basis: its data are flagged instead.
    assert result.mixed == ("b has 193 assigned units and 50 conversions but no exposed units",)


def test_exposures_without_unit_ids_beside_exposed_units_are_mixed() -> None:
    result = summarise_variants(
        [
            VariantData("a", NONE, VariantCounters(exposures=30, unique_units=30)),
            VariantData("b", NONE, VariantCounters(exposures=30)),
        ]
    )
    assert [s.n for s in result.summaries] == [30, 0]
    assert result.mixed == ("b has 30 exposures but no exposed units",)


def test_event_level_conversions_count_against_assigned_units() -> None:
    result = summarise_variants(
        [
            VariantData("a", event_conversions(5), VariantCounters(assigned_units=55)),
            VariantData("b", event_conversions(10), VariantCounters(assigned_units=45)),
        ]
    )
    assert result.basis is Basis.ASSIGNED_UNITS
    assert result.mixed == ()
    a, b = result.summaries
    assert (a.conversions, a.conversion_rate) == (5, pytest.approx(5 / 55))
    assert (b.conversions, b.conversion_rate) == (10, pytest.approx(10 / 45))
    over = summarise(event_conversions(9), VariantCounters(assigned_units=4), Basis.ASSIGNED_UNITS)
    assert (over.conversion_rate, over.conversions_exceed_population) == (2.25, True)


def test_unit_level_conversions_count_converting_units_not_events() -> None:
    summary = summarise(
        unit_conversions(units=4, count=9), VariantCounters(unique_units=20), Basis.EXPOSED_UNITS
    )
    assert (summary.conversions, summary.conversion_rate) == (4, 0.2)
    events = summarise(unit_conversions(units=4, count=9), VariantCounters(exposures=20))
    assert (events.basis, events.conversions) == (Basis.EXPOSURES, 9)


def test_unit_level_and_event_level_conversions_in_different_variants_are_mixed() -> None:
    result = summarise_variants(
        [
            VariantData("a", unit_conversions(6), VariantCounters(assigned_units=40)),
            VariantData("b", event_conversions(15), VariantCounters(assigned_units=40)),
        ]
    )
    assert [s.conversions for s in result.summaries] == [6, 15]
    assert result.mixed == (
        "the conversions of b carry no unit ids while those of a do (converting units)",
    )


def test_no_data_is_not_mixed() -> None:
    result = summarise_variants(
        [VariantData("a", NONE, VariantCounters()), VariantData("b", NONE, VariantCounters())]
    )
    assert (result.basis, result.mixed) == (Basis.NONE, ())
    assert all(s.n == 0 and s.conversion_rate is None for s in result.summaries)
