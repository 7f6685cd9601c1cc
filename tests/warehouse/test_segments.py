"""A refresh's rows as segment cells (``warehouse/segments.py``): each dimension's values in
sorted order take slots up to the limit, the rest are ``other``; a unit without a value is in no
segment; ``derived.segments`` reads them back as a store's."""

from __future__ import annotations

from abpilot.domain import derived
from abpilot.domain.records import VariantCounters
from abpilot.warehouse.plan import EXPOSURES, Row
from abpilot.warehouse.segments import segment_cells


def _rows() -> list[Row]:
    """Exposed units and a metric per (variant, country, device); one row without a country."""
    found = []
    for variant, country, device, units in [
        ("a", "de", "ios", 3), ("a", "fr", "web", 4), ("a", "us", "web", 5),
        ("b", "de", "web", 6), ("b", "us", "ios", 7), ("b", "", "ios", 2),
    ]:  # fmt: skip
        found.append(Row(EXPOSURES, variant, "2026-03-02", country, units, units, 0, 0.0, 0.0,
                         (device,)))  # fmt: skip
        found.append(Row("revenue", variant, "2026-03-02", country, 1, 0, 2, 10.0 * units,
                         100.0, (device,)))  # fmt: skip
    return found


def test_values_past_the_limit_are_other_and_units_without_one_in_no_segment() -> None:
    cells = segment_cells(_rows(), ["country", "device"], limit=2)
    counters = {variant: VariantCounters(derived=found) for variant, found in cells.items()}
    countries = derived.segments(counters, "country", ["revenue"])
    assert list(countries) == ["de", "fr", "other"]  # "us" past the limit of 2
    assert {v: c.unique_units for v, c in countries["other"].items()} == {"a": 5, "b": 7}
    assert countries["de"]["b"].metrics["revenue"].sum == 60.0
    assert sum(c.unique_units for s in countries.values() for c in s.values()) == 25  # not the 2
    devices = derived.segments(counters, "device", ["revenue"])
    assert {v: c.unique_units for v, c in devices["ios"].items()} == {"a": 3, "b": 9}
