"""Issue 18's counters on every store: covariate, cross, capped, ratio and segment sums equal,
after random batches, what the definitions give on the unit-level data, and stay exact under
concurrency, refusal and export/import.

The reference does not count incrementally: it replays the events, keeps each unit's facts
from its first counted exposure (a missing covariate is 0), the dimension values' slots in the
order they were first seen (new values of one batch in sorted order; past the limit ``other``),
and each unit's final totals, and computes every sum from them (Σx over exposed units, Σx·T,
Σx·1[converted] for a binary metric, Σmin(T, c), Σmin(T, c)², Σx·min(T, c), ΣN·D, and each segment's
counters from its units).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abpilot.domain import derived
from abpilot.domain.errors import ValidationError
from abpilot.domain.experiment import Experiment, Metric, MetricKind
from abpilot.domain.rules import ExperimentRules, experiment_rules
from abpilot.service.core import ExperimentService
from abpilot.store.base import EventKind, EventRecord, MetricTotals, Store, VariantCounters
from tests.conftest import BARRIER_SECONDS, StoreFactory
from tests.factories import make_experiment

EXPOSURE, CONVERSION = EventKind.EXPOSURE, EventKind.CONVERSION
VARIANTS = ("control", "v1")
UNITS = ("u0", "u1", "u2", "u3", "u4")
CAP = 5.0
METRICS = (
    Metric("revenue", MetricKind.VALUE, covariate="pre", cap_absolute=CAP),
    Metric("orders", MetricKind.BINARY),
    Metric("signup", MetricKind.BINARY, covariate="pre"),
    Metric("rpo", MetricKind.RATIO, numerator="revenue", denominator="orders"),
)
ASSIGN = "assign"

# (kind, variant, unit, event id, metric, value, covariate, country)
action = st.tuples(
    st.sampled_from([EXPOSURE, EXPOSURE, CONVERSION, CONVERSION, ASSIGN]),
    st.sampled_from(VARIANTS),
    st.sampled_from([None, *UNITS]),
    st.sampled_from([None, "e0", "e1", "e2", "e3"]),
    st.sampled_from(["revenue", "orders", "signup"]),
    st.integers(0, 16).map(lambda quarters: quarters / 4),
    st.sampled_from([None, -1.5, 0.5, 2.0, 3.25]),
    st.sampled_from([None, "nl", "de", "fr"]),
)
batches = st.lists(st.lists(action, min_size=1, max_size=8), min_size=1, max_size=5)


def experiment(segments: int = 2) -> tuple[Experiment, ExperimentRules]:
    exp = make_experiment(
        key=f"derived-{uuid.uuid4().hex}", metrics=METRICS, dimensions=("country",)
    )
    rules = experiment_rules(exp)
    assert rules is not None
    return exp, replace(rules, segments=segments)


@dataclass
class Unit:
    variant: str
    exposed: bool = False
    exposures: int = 0
    x: float = 0.0
    segment: str | None = None
    totals: dict[str, list[float]] = field(default_factory=dict)  # metric -> [count, total]


@dataclass
class Replay:
    """The unit-level data the events leave, by definition."""

    limit: int
    units: dict[str, Unit] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)  # value -> its segment
    ids: set[str] = field(default_factory=set)
    anonymous: list[tuple[str, str, float]] = field(default_factory=list)
    exposures: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def batch(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        counted = []
        for e in events:
            if e.event_id is not None:
                if e.event_id in self.ids:
                    continue
                self.ids.add(e.event_id)
            counted.append(e)
        newly: dict[str, EventRecord] = {}
        for e in counted:
            if e.kind is EXPOSURE and e.unit_id is not None:
                unit = self.units.setdefault(e.unit_id, Unit(e.variant))
                if not unit.exposed and e.unit_id not in newly:
                    newly[e.unit_id] = e
        new_values = sorted(
            {e.dimensions["country"] for e in newly.values() if e.dimensions} - self.slots.keys()
        )
        for value in new_values:
            taken = sum(1 for v in self.slots.values() if v != derived.OTHER)
            self.slots[value] = value if taken < self.limit else derived.OTHER
        for unit_id, e in newly.items():
            unit = self.units[unit_id]
            unit.exposed = True
            unit.x = (e.covariates or {}).get("pre", 0.0)
            unit.segment = self.slots[e.dimensions["country"]] if e.dimensions else None
        for e in counted:
            unit = self.units.get(e.unit_id or "")
            variant = unit.variant if unit is not None else e.variant
            if e.kind is EXPOSURE:
                self.exposures[variant] += 1
                if unit is not None:
                    unit.exposures += 1
            elif unit is None:
                self.anonymous.append((variant, e.metric or "", e.value))
            else:
                sums = unit.totals.setdefault(e.metric or "", [0, 0.0])
                sums[0] += 1
                sums[1] += e.value
        return counted

    def derived_sums(self, units: Sequence[Unit]) -> dict[str, float]:
        def total(u: Unit, m: str) -> float:
            return u.totals.get(m, [0, 0.0])[1]

        exposed = [u for u in units if u.exposed]
        revenue = [u for u in units if "revenue" in u.totals]
        return {
            "x_units": len(exposed),
            "x_sum": sum(u.x for u in exposed),
            "x_squares": sum(u.x * u.x for u in exposed),
            "xy": sum(u.x * total(u, "revenue") for u in units),
            # A binary metric's y is 1 for a unit that converted, however often.
            "xy_binary": sum(u.x for u in units if "signup" in u.totals),
            "cap_units": len(revenue),
            "cap_sum": sum(min(total(u, "revenue"), CAP) for u in revenue),
            "cap_squares": sum(min(total(u, "revenue"), CAP) ** 2 for u in revenue),
            "cap_xy": sum(u.x * min(total(u, "revenue"), CAP) for u in units),
            "nd": sum(total(u, "revenue") * total(u, "orders") for u in units),
        }


def found_sums(c: VariantCounters) -> dict[str, float]:
    x, capped = derived.covariate_sums(c, "pre"), derived.capped_totals(c, "revenue")
    return {
        "x_units": x.units,
        "x_sum": x.sum,
        "x_squares": x.sum_squares,
        "xy": derived.cross_sum(c, "revenue"),
        "xy_binary": derived.cross_sum(c, "signup"),
        "cap_units": capped.units,
        "cap_sum": capped.sum,
        "cap_squares": capped.sum_squares,
        "cap_xy": derived.capped_cross_sum(c, "revenue"),
        "nd": derived.ratio_cross_sum(c, "rpo"),
    }


def metric_totals(units: Sequence[Unit], metric: str) -> MetricTotals:
    having = [u.totals[metric] for u in units if metric in u.totals]
    return MetricTotals(
        count=int(sum(c for c, _ in having)),
        units=len(having),
        sum=sum(t for _, t in having),
        sum_squares=sum(t * t for _, t in having),
    )


def records(
    exp: Experiment, rules: ExperimentRules, drawn: list[list[tuple]], store: Store
) -> list[list[EventRecord]]:
    """The drawn batches as records (assignments made at once through ``store.assign``); a
    conversion of a unit without an assignment is made anonymous, as the service refuses it."""
    assigned: set[str] = set()
    seen: set[str] = set()
    result = []
    for batch in drawn:
        events = []
        for kind, variant, unit, event_id, metric, value, x, country in batch:
            fresh = event_id is None or event_id not in seen
            if event_id is not None and kind != ASSIGN:
                seen.add(event_id)
            if kind == ASSIGN:
                if unit is not None and unit not in assigned:
                    store.assign(exp.id, unit, variant)
                    assigned.add(unit)
                continue
            if kind is EXPOSURE:
                if fresh and unit is not None:
                    assigned.add(unit)  # by this batch
                events.append(
                    EventRecord(
                        EXPOSURE,
                        exp.id,
                        variant,
                        unit,
                        event_id=event_id,
                        covariates=None if x is None else {"pre": x},
                        dimensions=None if country is None else {"country": country},
                        rules=rules,
                    )
                )
            else:
                owner = unit if unit in assigned else None
                events.append(
                    EventRecord(
                        CONVERSION, exp.id, variant, owner, metric, value, event_id, rules=rules
                    )
                )
        result.append(events)
    return result


def check(store: Store, exp: Experiment, replay: Replay) -> None:
    counters = store.get_counters(exp.id)
    for variant in VARIANTS:
        units = [u for u in replay.units.values() if u.variant == variant]
        got = counters.get(variant, VariantCounters())
        assert found_sums(got) == pytest.approx(replay.derived_sums(units))
        # No reserved cell among the metrics.
        assert set(got.metrics) <= {"revenue", "orders", "signup"}
    segments = derived.segments(counters, "country", ["revenue", "orders"])
    expected: dict[str, dict[str, VariantCounters]] = {}
    for (segment, variant), units in _group(replay).items():
        metrics = {m: metric_totals(units, m) for m in ("revenue", "orders")}
        expected.setdefault(segment, {})[variant] = VariantCounters(
            exposures=sum(u.exposures for u in units),
            unique_units=len(units),
            metrics={m: t for m, t in metrics.items() if t.count},
        )
        assert found_sums(segments[segment][variant]) == pytest.approx(replay.derived_sums(units))
    assert segments.keys() == expected.keys()
    for segment, by_variant in expected.items():
        assert segments[segment].keys() == by_variant.keys()
        for variant, want in by_variant.items():
            got = segments[segment][variant]
            assert (got.exposures, got.unique_units) == (want.exposures, want.unique_units)
            assert got.metrics.keys() == want.metrics.keys()
            for metric, totals in want.metrics.items():
                assert got.metrics[metric].count == totals.count
                assert got.metrics[metric].units == totals.units
                assert got.metrics[metric].sum == pytest.approx(totals.sum)
                assert got.metrics[metric].sum_squares == pytest.approx(totals.sum_squares)


def _group(replay: Replay) -> dict[tuple[str, str], list[Unit]]:
    groups: dict[tuple[str, str], list[Unit]] = defaultdict(list)
    for unit in replay.units.values():
        if unit.segment is not None:
            groups[(unit.segment, unit.variant)].append(unit)
    return groups


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=batches)
def test_derived_counters_match_their_definitions(store: Store, drawn: list[list[tuple]]) -> None:
    exp, rules = experiment(segments=2)
    store.create_experiment(exp)
    replay = Replay(limit=2)
    for batch in records(exp, rules, drawn, store):
        for unit in {e.unit_id for e in batch if e.unit_id is not None}:
            stored = store.get_assignments(exp.id, [unit]).get(unit)
            if stored is not None:
                replay.units.setdefault(unit, Unit(stored.variant))
        store.apply_events(batch)
        replay.batch(batch)
    check(store, exp, replay)


def test_a_unit_exposed_after_converting_joins_its_segment_with_its_totals(store: Store) -> None:
    exp, rules = experiment()
    store.create_experiment(exp)
    store.assign(exp.id, "u", "v1")
    conversion = EventRecord(CONVERSION, exp.id, "v1", "u", "revenue", 7.0, rules=rules)
    store.apply_events([conversion, replace(conversion, metric="orders", value=1.0)])
    exposure = EventRecord(
        EXPOSURE, exp.id, "v1", "u", covariates={"pre": 2.0}, dimensions={"country": "nl"}
    )
    store.apply_events([replace(exposure, rules=rules)])
    store.apply_events([replace(conversion, value=1.0)])
    c = store.get_counters(exp.id)["v1"]
    assert derived.cross_sum(c, "revenue") == 16.0  # 7·2 when exposed, then 1·2
    assert derived.capped_totals(c, "revenue").sum == CAP
    assert derived.capped_cross_sum(c, "revenue") == 2.0 * CAP  # min(7, 5)·2, then nothing
    assert derived.ratio_cross_sum(c, "rpo") == 8.0
    nl = derived.segments(store.get_counters(exp.id), "country", ["revenue"])["nl"]["v1"]
    assert nl.metrics["revenue"] == MetricTotals(count=2, units=1, sum=8.0, sum_squares=64.0)
    assert derived.cross_sum(nl, "revenue") == 16.0
    assert derived.ratio_cross_sum(nl, "rpo") == 8.0


def test_a_binary_metric_adds_the_covariate_once_per_converting_unit(store: Store) -> None:
    """y of a binary metric is 0/1 per unit: units converting several times (in one batch, over
    batches, with values other than 1, before their exposure) add x once to Σxy, as the
    unit-level definition Σ x·1[converted] gives."""
    exp, rules = experiment()
    store.create_experiment(exp)
    x = {"a": 2.0, "b": -1.5, "c": 3.25, "d": 0.5}
    store.assign(exp.id, "c", "v1")
    early = EventRecord(CONVERSION, exp.id, "v1", "c", "signup", 1.0, rules=rules)
    store.apply_events([early, replace(early, value=4.0)])  # c converts twice before exposure
    exposures = [
        EventRecord(EXPOSURE, exp.id, "v1", u, covariates={"pre": x[u]}, rules=rules) for u in x
    ]
    convert = EventRecord(CONVERSION, exp.id, "v1", "a", "signup", 1.0, rules=rules)
    store.apply_events(
        [*exposures, convert, replace(convert, value=2.5), replace(convert, unit_id="b")]
    )
    store.apply_events([convert, replace(convert, unit_id="c", value=0.0)])
    store.apply_events([replace(convert, unit_id="b", value=7.0)])
    c = store.get_counters(exp.id)["v1"]
    converted = {"a", "b", "c"}  # d never converts
    assert derived.cross_sum(c, "signup") == pytest.approx(sum(x[u] for u in converted))
    assert c.metrics["signup"].units == len(converted)
    assert derived.covariate_sums(c, "pre").sum == pytest.approx(sum(x.values()))


def test_a_refused_batch_leaves_nothing(store: Store) -> None:
    exp, rules = experiment()
    store.create_experiment(exp)
    huge = EventRecord(
        EXPOSURE,
        exp.id,
        "control",
        "u",
        covariates={"pre": 1e200},
        rules=rules,
        dimensions={"country": "nl"},
    )
    with pytest.raises(ValidationError):
        store.apply_events([huge])
    with pytest.raises(ValidationError):
        store.assign_and_expose(huge)
    assert store.get_counters(exp.id) == {}
    state = store.get_unit_state(exp.id)
    assert (state.assignments, state.exposed, state.totals) == ({}, frozenset(), {})


def test_assign_and_expose_stores_the_facts(store: Store) -> None:
    exp, rules = experiment()
    store.create_experiment(exp)
    first = EventRecord(
        EXPOSURE,
        exp.id,
        "v1",
        "u",
        covariates={"pre": 3.0},
        dimensions={"country": "de"},
        rules=rules,
    )
    store.assign_and_expose(first)
    store.assign_and_expose(replace(first, covariates={"pre": 100.0}))  # first one wins
    c = store.get_counters(exp.id)["v1"]
    assert derived.covariate_sums(c, "pre") == MetricTotals(0, 1, 3.0, 9.0)
    de = derived.segments(store.get_counters(exp.id), "country", [])["de"]["v1"]
    assert (de.exposures, de.unique_units) == (2, 1)


def test_export_and_import_keep_the_derived_counters(store_factory: StoreFactory) -> None:
    store = store_factory()
    exp, rules = experiment()
    store.create_experiment(exp)
    store.apply_events(
        [
            EventRecord(
                EXPOSURE,
                exp.id,
                "v1",
                "u",
                covariates={"pre": 2.0},
                dimensions={"country": "fr"},
                rules=rules,
            ),
            EventRecord(CONVERSION, exp.id, "v1", "u", "revenue", 3.0, rules=rules),
        ]
    )
    service = ExperimentService(store)
    document = json.loads(json.dumps(service.transfer.export([exp.id]), default=str))
    before = (store.get_period_counters(exp.id), store.get_unit_state(exp.id))
    store.delete_experiment(exp.id)
    service.transfer.import_(document)
    assert (store.get_period_counters(exp.id), store.get_unit_state(exp.id)) == before
    copy = exp.id
    # Later events count on from the restored facts: the covariate and the segment.
    store.apply_events([EventRecord(CONVERSION, copy, "v1", "u", "revenue", 1.0, rules=rules)])
    c = store.get_counters(copy)["v1"]
    assert derived.cross_sum(c, "revenue") == 8.0
    fr = derived.segments(store.get_counters(copy), "country", ["revenue"])["fr"]["v1"]
    assert fr.metrics["revenue"].sum == 4.0


THREADS, UNITS_PER_THREAD = 4, 10


def test_concurrent_batches_count_exactly(store_factory: StoreFactory) -> None:
    """Clients expose units (three dimension values, a limit of two) while others convert the
    same units: every sum is exact, and exactly two values get segments."""
    exp, rules = experiment(segments=2)
    store_factory().create_experiment(exp)
    countries = ("nl", "de", "fr")
    units = [f"t{t}-u{i}" for t in range(THREADS) for i in range(UNITS_PER_THREAD)]
    assigning = store_factory()  # one client (each holds its own connections)
    for i, unit in enumerate(units):
        assigning.assign(exp.id, unit, VARIANTS[i % 2])
    barrier = threading.Barrier(THREADS * 2, timeout=BARRIER_SECONDS)

    def expose(t: int) -> None:
        client = store_factory()
        barrier.wait()
        for i in range(UNITS_PER_THREAD):
            client.apply_events(
                [
                    EventRecord(
                        EXPOSURE,
                        exp.id,
                        "control",
                        f"t{t}-u{i}",
                        covariates={"pre": float(i)},
                        dimensions={"country": countries[(t + i) % 3]},
                        rules=rules,
                    )
                ]
            )

    def convert(t: int) -> None:
        client = store_factory()
        barrier.wait()
        for i in range(UNITS_PER_THREAD):
            client.apply_events(
                [
                    EventRecord(
                        CONVERSION, exp.id, "control", f"t{t}-u{i}", "revenue", 2.0, rules=rules
                    ),
                    EventRecord(
                        CONVERSION, exp.id, "control", f"t{t}-u{i}", "orders", 1.0, rules=rules
                    ),
                ]
            )

    with ThreadPoolExecutor(max_workers=THREADS * 2) as pool:
        jobs = [pool.submit(expose, t) for t in range(THREADS)]
        jobs += [pool.submit(convert, t) for t in range(THREADS)]
        for job in jobs:
            job.result()
    counters = store_factory().get_counters(exp.id)
    every = sum(derived.cross_sum(c, "revenue") for c in counters.values())
    assert every == 2.0 * THREADS * sum(range(UNITS_PER_THREAD))
    assert sum(derived.ratio_cross_sum(c, "rpo") for c in counters.values()) == 2.0 * len(units)
    segments = derived.segments(counters, "country", ["revenue"])
    assert len(segments.keys() - {derived.OTHER}) == 2
    in_segments = [c for by_variant in segments.values() for c in by_variant.values()]
    assert sum(c.unique_units for c in in_segments) == len(units)
    assert sum(c.metrics["revenue"].sum for c in in_segments) == 2.0 * len(units)
    assert sum(derived.cross_sum(c, "revenue") for c in in_segments) == every


def test_unit_totals_read_every_converting_unit(store: Store) -> None:
    exp, rules = experiment()
    store.create_experiment(exp)
    events = []
    for i in range(30):
        x = None if i % 3 == 0 else {"pre": float(i)}
        events.append(
            EventRecord(EXPOSURE, exp.id, VARIANTS[i % 2], f"u{i}", covariates=x, rules=rules)
        )
        if i % 5:
            value = float(i % 7)
            events.append(EventRecord(CONVERSION, exp.id, "control", f"u{i}", "revenue", value))
    store.apply_events(events)
    store.apply_events([EventRecord(CONVERSION, exp.id, "control", "u1", "revenue", 0.5)])
    store.apply_events([EventRecord(CONVERSION, exp.id, "control", None, "revenue", 9.0)])
    read = store.get_unit_totals(exp.id, "revenue", "pre")
    rows = sorted(
        zip(
            read.units,
            read.variants,
            read.periods,
            read.counts,
            read.totals,
            read.covariates,
            strict=True,
        )
    )
    expected = sorted(
        (
            f"u{i}",
            VARIANTS[i % 2],
            0,
            2 if i == 1 else 1,
            float(i % 7) + (0.5 if i == 1 else 0.0),
            0.0 if i % 3 == 0 else float(i),
        )
        for i in range(30)
        if i % 5
    )
    assert rows == expected
    plain = store.get_unit_totals(exp.id, "revenue")
    assert sorted(plain.totals) == sorted(r[4] for r in expected)
    assert set(plain.covariates) == {0.0}
    assert store.get_unit_totals(exp.id, "orders").units == []
