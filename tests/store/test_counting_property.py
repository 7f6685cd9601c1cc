"""Random batches of events give, on every store, the counters that the definitions give.

The reference here does not count incrementally as the stores do (``abpilot.domain.counting``):
it replays the events, keeps the ones counted, and computes every figure from its definition,
e.g. a variant's sum of squares as the sum over its units of (unit total)^2. The batches mix
exposures and conversions of a few units, events naming the wrong variant, repeated event ids
(within a batch and across batches) and conversions without a unit. As the service guarantees,
a conversion of a unit comes only once the unit has an assignment (stored or in its batch).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abpilot.store.base import EventKind, EventRecord, MetricTotals, Store, VariantCounters
from tests.factories import make_experiment

EXPOSURE, CONVERSION = EventKind.EXPOSURE, EventKind.CONVERSION
VARIANTS = ("control", "v1")  # make_experiment's
RawEvent = tuple[EventKind, str, str | None, str | None, float, int]

raw_event = st.tuples(
    st.sampled_from([EXPOSURE, CONVERSION]),
    st.sampled_from(VARIANTS),
    st.sampled_from([None, "u0", "u1", "u2", "u3"]),
    st.sampled_from([None, "e0", "e1", "e2", "e3", "e4", "e5"]),
    st.integers(0, 12).map(lambda quarters: quarters / 4),  # exact in binary
    st.sampled_from([0, 1]),  # period
)
batches = st.lists(st.lists(raw_event, min_size=1, max_size=8), min_size=1, max_size=5)


def reference(batches: Sequence[Sequence[EventRecord]]) -> dict[str, VariantCounters]:
    """The counters by definition, from the events that count."""
    seen_ids: set[str] = set()
    assigned: dict[str, tuple[str, int]] = {}
    exposures: dict[str, int] = defaultdict(int)
    exposed: dict[str, set[str]] = defaultdict(set)
    conversions: list[tuple[str, str | None, float]] = []  # (variant, unit, value)
    for batch in batches:
        counted = []
        for event in batch:
            if event.event_id is not None:
                if event.event_id in seen_ids:
                    continue
                seen_ids.add(event.event_id)
            counted.append(event)
        for event in counted:  # a unit's first exposure in the batch assigns it
            if event.kind is EXPOSURE and event.unit_id is not None:
                assigned.setdefault(event.unit_id, (event.variant, event.period))
        for event in counted:
            unit = event.unit_id
            variant = assigned[unit][0] if unit in assigned else event.variant
            if event.kind is EXPOSURE:
                exposures[variant] += 1
                if unit is not None:
                    exposed[variant].add(unit)
            else:
                conversions.append((variant, unit, event.value))
    result: dict[str, VariantCounters] = {}
    for variant in VARIANTS:
        unit_totals: dict[str, float] = defaultdict(float)
        anonymous = [v for var, unit, v in conversions if var == variant and unit is None]
        for var, unit, value in conversions:
            if var == variant and unit is not None:
                unit_totals[unit] += value
        count = sum(1 for var, _, _ in conversions if var == variant)
        if not (exposures[variant] or count):
            continue
        totals = MetricTotals(
            count=count,
            units=len(unit_totals),
            sum=sum(unit_totals.values()) + sum(anonymous),
            sum_squares=sum(t * t for t in unit_totals.values()) + sum(v * v for v in anonymous),
        )
        result[variant] = VariantCounters(
            assigned_units=sum(1 for a in assigned.values() if a[0] == variant),
            exposures=exposures[variant],
            unique_units=len(exposed[variant]),
            metrics={"revenue": totals} if count else {},
        )
    return result


def as_records(exp_id: str, drawn: list[list[RawEvent]]) -> list[list[EventRecord]]:
    """The drawn batches as records, a conversion of a unit that has no assignment yet (stored,
    or by an exposure counted in its batch) made anonymous, as the service would refuse it."""
    records: list[list[EventRecord]] = []
    assigned: set[str] = set()
    seen_ids: set[str] = set()
    for batch in drawn:
        events = [
            EventRecord(kind, exp_id, variant, unit, "revenue", value, event_id, period)
            if kind is CONVERSION
            else EventRecord(kind, exp_id, variant, unit, event_id=event_id, period=period)
            for kind, variant, unit, event_id, value, period in batch
        ]
        batch_ids = set(seen_ids)
        will_assign = set(assigned)
        for e in events:
            fresh = e.event_id is None or e.event_id not in batch_ids
            if e.event_id is not None:
                batch_ids.add(e.event_id)
            if fresh and e.kind is EXPOSURE and e.unit_id is not None:
                will_assign.add(e.unit_id)
        events = [
            replace(e, unit_id=None)
            if e.kind is CONVERSION and e.unit_id is not None and e.unit_id not in will_assign
            else e
            for e in events
        ]
        seen_ids, assigned = batch_ids, will_assign
        records.append(events)
    return records


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=batches)
def test_counters_match_their_definitions(store: Store, drawn: list[list[RawEvent]]) -> None:
    exp = make_experiment(key=f"counting-{uuid.uuid4().hex}")
    store.create_experiment(exp)
    records = as_records(exp.id, drawn)
    for batch in records:
        store.apply_events(batch)
    expected = reference(records)
    counters = store.get_counters(exp.id)
    assert counters.keys() == expected.keys()
    for variant, want in expected.items():
        got = counters[variant]
        assert (got.assigned_units, got.exposures, got.unique_units) == (
            want.assigned_units,
            want.exposures,
            want.unique_units,
        )
        assert got.metrics.keys() == want.metrics.keys()
        for metric, totals in want.metrics.items():
            found = got.metrics[metric]
            assert (found.count, found.units) == (totals.count, totals.units)
            assert found.sum == pytest.approx(totals.sum)
            assert found.sum_squares == pytest.approx(totals.sum_squares)
