"""The role protocols and the defaults written once for them (abpilot.store.defaults)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from abpilot.store.base import AllocationRecord, DailyRow, EventKind, EventRecord, Store
from abpilot.store.defaults import EventDefaults, HistoryDefaults, IntakeDefaults, StoreDefaults
from abpilot.store.memory import MemoryStore
from abpilot.store.redis import RedisStore
from abpilot.store.sql import SqlStore
from tests.factories import make_experiment

BATCHED = {"get_counters_many", "get_daily_metrics_many", "latest_allocations"}
# The defaults each backend replaces by a faster path of its own (one query per chunk of ids,
# one pipeline, one pass under the lock; the definitions' check inside the counting step);
# every other default is inherited.
FASTER_PATHS: dict[type[Store], set[str]] = {
    MemoryStore: {"get_counters_many", "apply_current_events"},
    SqlStore: BATCHED | {"apply_current_events"},
    RedisStore: BATCHED | {"apply_current_events"},
}


def test_a_backend_replaces_a_default_only_by_a_faster_path() -> None:
    defaults = {
        name
        for role in (EventDefaults, IntakeDefaults, HistoryDefaults)
        for name in vars(role)
        if not name.startswith("_")
    }
    for backend, faster in FASTER_PATHS.items():
        replaced = {name for name in defaults if name in _own_attributes(backend)}
        assert replaced == faster, backend.__name__


def _own_attributes(backend: type) -> set[str]:
    """Names defined by the backend or its mixins, above ``StoreDefaults``."""
    mro = backend.__mro__
    return {name for cls in mro[: mro.index(StoreDefaults)] for name in vars(cls)}


def test_the_faster_paths_give_what_the_defaults_give(store: Store) -> None:
    assert isinstance(store, StoreDefaults)
    a, b, quiet = make_experiment("a"), make_experiment("b"), make_experiment("quiet")
    for exp in (a, b, quiet):
        store.create_experiment(exp)
    store.apply_events(
        [
            EventRecord(EventKind.EXPOSURE, a.id, "v1", "u1", period=0),
            EventRecord(EventKind.EXPOSURE, a.id, "v1", "u2", period=1),
            EventRecord(EventKind.CONVERSION, a.id, "v1", "u2", "revenue", 4.0, period=1),
            EventRecord(EventKind.EXPOSURE, b.id, "control", "u1"),
        ]
    )
    day, at = date(2025, 1, 15), datetime(2025, 1, 16, tzinfo=UTC)
    store.record_daily_metrics(b.id, day, [DailyRow(day, "v1", 50, 5)], "{}", at)
    for weights in ({"control": 0.5, "v1": 0.5}, {"control": 0.1, "v1": 0.9}):
        store.add_allocation(AllocationRecord(a.id, 0, at, weights, "exact", None, "events"))
    ids = [a.id, quiet.id, b.id, "unknown", a.id]

    assert store.get_counters(a.id) == EventDefaults.get_counters(store, a.id)
    counters = store.get_counters_many(iter(ids))
    assert counters == EventDefaults.get_counters_many(store, ids)
    assert set(counters) == {a.id, b.id}
    daily = store.get_daily_metrics_many(iter(ids))
    assert daily == HistoryDefaults.get_daily_metrics_many(store, ids)
    assert set(daily) == {b.id}
    latest = store.latest_allocations(iter(ids))
    assert latest == HistoryDefaults.latest_allocations(store, ids)
    assert {e: r.period for e, r in latest.items()} == {a.id: 2}
