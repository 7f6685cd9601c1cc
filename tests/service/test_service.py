"""Service behaviour a user relies on beyond single requests: workers, caching, outages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

import abpilot
from abpilot.api import create_app
from abpilot.domain.errors import StoreUnavailable, UnitNotAssigned, WrongStatus
from abpilot.service import EventInput, ExperimentService
from abpilot.settings import Settings
from abpilot.store.base import EventKind, Store
from tests.conftest import StoreFactory

VARIANTS = [
    {"key": "control", "weight": 0.3},
    {"key": "b", "weight": 0.3},
    {"key": "c", "weight": 0.4},
]


def test_two_workers_agree_and_count_once(store_factory: StoreFactory) -> None:
    one = ExperimentService(store_factory())
    two = ExperimentService(store_factory())
    one.create_experiment(key="shared", variants=VARIANTS)
    one.start_experiment("shared")
    units = [f"user-{i}" for i in range(200)]
    first = [one.get_variant_for_user("shared", u).variant for u in units]
    second = [two.get_variant_for_user("shared", u).variant for u in units]
    assert first == second
    assert sum(v.assigned_units for v in one.get_metrics("shared").variants) == 200


def test_batch_assignment_equals_single_assignment(store_factory: StoreFactory) -> None:
    service = ExperimentService(store_factory())
    service.create_experiment(key="many", variants=VARIANTS, traffic_allocation=0.6)
    service.start_experiment("many")
    units = [f"u{i}" for i in range(2_000)]
    single = [service.get_variant_for_user("many", u, record=False).variant for u in units]
    assert service.get_variants_for_users("many", units) == [
        None if v is None else v.key for v in single
    ]
    assert all(v.assigned_units == 0 for v in service.get_metrics("many").variants)


def test_status_change_reaches_other_workers_after_the_cache_time(
    store_factory: StoreFactory,
) -> None:
    one = ExperimentService(store_factory(), cache_seconds=0)
    cached = ExperimentService(store_factory(), cache_seconds=3600)
    fresh = ExperimentService(store_factory(), cache_seconds=0)
    one.create_experiment(key="exp", variants=VARIANTS)
    one.start_experiment("exp")
    cached.get_variant_for_user("exp", "u", record=False)
    one.pause_experiment("exp")
    with pytest.raises(WrongStatus):
        fresh.get_variant_for_user("exp", "u")
    with pytest.raises(WrongStatus):
        one.get_variant_for_user("exp", "u")
    # Within its cache time a worker still answers from the hash, as documented.
    assert cached.get_variant_for_user("exp", "u", record=False).in_experiment


def test_events_check_status_in_the_store_not_the_cache(store_factory: StoreFactory) -> None:
    one = ExperimentService(store_factory())
    other = ExperimentService(store_factory(), cache_seconds=3600)
    one.create_experiment(key="exp", variants=VARIANTS)
    one.start_experiment("exp")
    other.get_variant_for_user("exp", "u")
    one.end_experiment("exp")
    with pytest.raises(WrongStatus):
        other.record_exposure(experiment="exp", unit_id="u")


def test_events_follow_a_pause_and_a_resumption_on_another_worker(
    store_factory: StoreFactory,
) -> None:
    one = ExperimentService(store_factory())
    other = ExperimentService(store_factory(), cache_seconds=3600)
    one.create_experiment(key="exp", variants=VARIANTS)
    one.start_experiment("exp")
    other.record_exposure(experiment="exp", unit_id="u")
    one.pause_experiment("exp")
    with pytest.raises(WrongStatus):
        other.record_events([EventInput(EventKind.EXPOSURE, "exp", "v"), *CONVERSION_OF_U])
    one.resume_experiment("exp")
    assert other.record_events([EventInput(EventKind.EXPOSURE, "exp", "v")]).applied == 1
    assert sum(v.exposures for v in one.get_metrics("exp").variants) == 2


CONVERSION_OF_U = [EventInput(EventKind.CONVERSION, "exp", "u", metric="conversion")]


class CallLog:
    """A store that notes the name of every method the service calls on it."""

    def __init__(self, store: Store) -> None:
        self.store, self.calls = store, list[str]()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def test_a_single_event_makes_one_store_call_once_the_definition_is_cached(
    store_factory: StoreFactory,
) -> None:
    log = CallLog(store_factory())
    service = ExperimentService(log, cache_seconds=3600)  # type: ignore[arg-type]  # a spy
    service.create_experiment(key="exp", variants=VARIANTS)
    service.start_experiment("exp")
    service.record_exposure(experiment="exp", unit_id="warm-up")
    log.calls.clear()
    service.record_exposure(experiment="exp", unit_id="u", event_id="e1")
    service.record_conversion(experiment="exp", unit_id="u", metric="conversion")
    assert log.calls == ["apply_current_events", "apply_current_events"]
    # A conversion of a unit never assigned is refused, and named, as before.
    with pytest.raises(UnitNotAssigned) as refused:
        service.record_events([*CONVERSION_OF_U, *[EventInput(EventKind.CONVERSION, "exp", "x")]])
    assert refused.value.field == "unit_id"
    assert "'x' was never assigned in experiment 'exp'" in refused.value.message
    counters = log.store.get_counters(service.get_experiment("exp").id)
    counted = [c.metrics["conversion"] for c in counters.values() if "conversion" in c.metrics]
    assert [(m.count, m.units) for m in counted] == [(1, 1)]


def test_end_experiment_records_time_and_winner() -> None:
    moment = datetime(2026, 5, 1, 12, tzinfo=UTC)
    service = ExperimentService(abpilot.open("memory://").store, clock=lambda: moment)
    service.create_experiment(key="exp", variants=VARIANTS)
    service.start_experiment("exp")
    ended = service.end_experiment("exp", winner="c", override=True)
    assert (ended.status, ended.winner, ended.ended_at) == ("completed", "c", moment)


class BrokenStore:
    """A store whose server has gone away: every call raises StoreUnavailable."""

    def __getattr__(self, name: str) -> object:
        def fail(*args: object, **kwargs: object) -> None:
            raise StoreUnavailable("the database is unavailable: connection refused")

        return fail


def test_store_outage_is_a_503_with_a_reason() -> None:
    app = create_app(Settings(store="memory"), store=BrokenStore())  # type: ignore[arg-type]
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "store_unavailable"
        assert client.get("/healthz").status_code == 200
        response = client.post("/api/v1/experiments/x/exposures", json={"unit_id": "u"})
        assert response.status_code == 503


def test_unreachable_servers_raise_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        abpilot.open("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable):
        abpilot.open("redis://127.0.0.1:1/0").store.ping()
