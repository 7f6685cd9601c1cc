"""The dedupe window (EVENT_ID_RETENTION_DAYS) on every store, with an injected clock: an id
resent inside the window counts once, the store forgets ids once they leave it (its dedupe state
shrinks), pruning in batches never blocks intake, and a window of 0 keeps every id."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from abpilot.domain.experiment import Experiment
from abpilot.service.core import ExperimentService
from abpilot.service.events import EventInput, prune_event_ids
from abpilot.store.base import EventKind, EventRecord, Store
from abpilot.store.event_ids import DAY_SECONDS, day_number
from abpilot.store.factory import open_store
from abpilot.store.redis import RedisStore
from tests.conftest import BACKENDS, backend_url
from tests.factories import make_experiment

T0 = datetime(2026, 3, 10, 18, 30, tzinfo=UTC)
WINDOW = 7
DAY = timedelta(days=1)


def exposure(exp: str, unit: str, event_id: str, at: datetime) -> EventRecord:
    return EventRecord(EventKind.EXPOSURE, exp, "control", unit, event_id=event_id, received_at=at)


def windowed(backend: str, tmp_path: Path, days: int) -> Iterator[tuple[Store, Store]]:
    """Two clients of one fresh store of ``backend`` with a window of ``days`` (memory: one)."""
    with backend_url(backend, tmp_path) as (url, options):
        first = open_store(url, event_id_retention_days=days, **options)
        second = (
            first
            if backend == "memory"
            else open_store(url, event_id_retention_days=days, **options)
        )
        try:
            yield first, second
        finally:
            first.close()
            if second is not first:
                second.close()


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    yield from windowed(request.param, tmp_path, WINDOW)


@pytest.fixture(params=BACKENDS)
def forever(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    for store, _ in windowed(request.param, tmp_path, 0):
        yield store


def running(store: Store, key: str = "checkout") -> Experiment:
    exp = make_experiment(key)
    store.create_experiment(exp)
    return exp


def ids(store: Store, experiment_id: str) -> set[str]:
    return set(store.get_unit_state(experiment_id).event_ids)


def test_a_resend_inside_the_window_counts_once(stores: tuple[Store, Store]) -> None:
    store, other = stores
    e = running(store).id
    assert store.apply_events([exposure(e, "u1", "ev-1", T0)]).applied == 1
    assert store.assign_and_expose(exposure(e, "u2", "ev-2", T0)).exposed
    late = T0 + WINDOW * DAY - timedelta(seconds=1)  # the last moment inside the window
    # Pruning at that moment keeps both ids, and another worker still finds them.
    prune_event_ids(other, now=late, batch=10)
    assert other.apply_events([exposure(e, "u1", "ev-1", late)]).duplicates == 1
    assert not other.assign_and_expose(exposure(e, "u2", "ev-2", late)).exposed
    assert store.get_counters(e)["control"].exposures == 2
    assert ids(store, e) == {"ev-1", "ev-2"}


def test_the_dedupe_state_shrinks_after_the_window(stores: tuple[Store, Store]) -> None:
    store, other = stores
    a, b = running(store, "a").id, running(store, "b").id
    old = [exposure(exp, f"u{n}", f"old-{n}", T0) for exp in (a, b) for n in range(30)]
    assert store.apply_events(old).applied == 60
    recent = T0 + (WINDOW + 1) * DAY
    store.apply_events([exposure(a, "u-new", "new", recent)])
    now = T0 + (WINDOW + 1) * DAY + timedelta(hours=1)
    removed = prune_event_ids(other, now=now, batch=7)  # many small batches
    assert removed == 60
    assert ids(store, a) == {"new"}
    assert ids(store, b) == set()
    assert other.prune_event_ids(now=now, limit=7) == 0  # nothing left to prune
    # Forgotten: a resend now counts again; the recent id is still a duplicate.
    again = store.apply_events([exposure(a, "u0", "old-0", now), exposure(a, "u-new", "new", now)])
    assert (again.applied, again.duplicates) == (1, 1)


def test_a_window_of_zero_keeps_every_id(forever: Store) -> None:
    e = running(forever).id
    forever.apply_events([exposure(e, "u1", "ev-1", T0)])
    years = T0 + 3650 * DAY
    assert prune_event_ids(forever, now=years) == 0
    assert forever.apply_events([exposure(e, "u1", "ev-1", years)]).duplicates == 1
    assert ids(forever, e) == {"ev-1"}


def test_pruning_in_batches_never_blocks_intake(stores: tuple[Store, Store]) -> None:
    """A backlog pruned in batches of 5 while another client counts new events: every new event
    counts exactly once, every old id goes, and every new id stays."""
    store, other = stores
    e = running(store).id
    backlog = [exposure(e, f"old-u{n}", f"old-{n}", T0) for n in range(200)]
    store.apply_events(backlog)
    now = T0 + (WINDOW + 2) * DAY
    batches = [[exposure(e, f"u{n}-{k}", f"new-{n}-{k}", now) for k in range(5)] for n in range(40)]
    pruned: list[int] = []
    errors: list[BaseException] = []

    def prune() -> None:
        try:
            pruned.append(prune_event_ids(other, now=now, batch=5))
        except BaseException as error:  # reported below
            errors.append(error)

    pruner = threading.Thread(target=prune)
    pruner.start()
    applied = sum(store.apply_events(batch).applied for batch in batches)
    pruner.join()
    assert errors == []
    assert applied == 200
    assert pruned == [200]
    assert ids(store, e) == {f"new-{n}-{k}" for n in range(40) for k in range(5)}
    assert store.get_counters(e)["control"].exposures == 400


def test_redis_day_sets_expire_after_the_window(tmp_path: Path) -> None:
    for store, _ in windowed("redis", tmp_path, WINDOW):
        assert isinstance(store, RedisStore)
        e = running(store).id
        store.apply_events([exposure(e, "u1", "ev-1", T0)])
        day = day_number(T0)
        key = store._key(e, f"events:{day}")
        end = (day + WINDOW + 1) * DAY_SECONDS  # the end of the window's last day
        ttl = store._client.ttl(key)
        assert end - T0.timestamp() - 5 <= ttl <= end - T0.timestamp()
        assert not store._client.exists(store._key(e, "events"))  # nothing kept forever
        assert store.delete_experiment(e)
        assert not store._client.exists(key)


def test_exports_carry_only_the_ids_inside_the_window(tmp_path: Path) -> None:
    clock = [T0]
    with backend_url("sqlite", tmp_path) as (url, _):
        source = ExperimentService(
            open_store(url, event_id_retention_days=WINDOW), clock=lambda: clock[0]
        )
        exp = running(source.store)
        for n, at in enumerate((T0, T0 + 5 * DAY)):
            clock[0] = at
            event = EventInput(EventKind.EXPOSURE, exp.key, f"u{n}", "control", event_id=f"ev-{n}")
            source.record_events([event])
        clock[0] = T0 + (WINDOW + 1) * DAY
        document = source.transfer.export()
        assert document["experiments"][0]["event_ids"] == [
            ["ev-1", (T0 + 5 * DAY).isoformat().replace("+00:00", "Z")]
        ]
        for backend in BACKENDS:
            (tmp_path / backend).mkdir()
            for target, _ in windowed(backend, tmp_path / backend, WINDOW):
                service = ExperimentService(target, clock=lambda: clock[0])
                service.transfer.import_(document)
                state = target.get_unit_state(exp.id)
                if isinstance(target, RedisStore):  # Redis keeps days: the end of the day
                    assert day_number(state.event_ids["ev-1"]) == day_number(T0 + 5 * DAY)
                else:
                    assert state.event_ids == {"ev-1": T0 + 5 * DAY}
                # Imported with its time: pruned when it leaves the window, not before.
                assert prune_event_ids(target, now=T0 + 11 * DAY) == 0
                assert prune_event_ids(target, now=T0 + 13 * DAY) == 1
        source.close()


def test_two_workers_sending_the_same_ids_at_once_count_each_once(
    stores: tuple[Store, Store],
) -> None:
    """Both clients send the same 1,000 ids (in opposite orders) at the same time: on Redis the
    check that no day set of the window holds a new id fails for the later commit, which counts
    again and finds them claimed."""
    store, other = stores
    e = running(store).id
    batches = [[exposure(e, f"u{n}", f"ev-{n}-{k}", T0) for k in range(50)] for n in range(20)]
    counted: list[int] = []

    def send(client: Store, order: list[list[EventRecord]]) -> None:
        counted.append(sum(client.apply_events(batch).applied for batch in order))

    threads = [
        threading.Thread(target=send, args=(store, batches)),
        threading.Thread(target=send, args=(other, batches[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counted) == 1000
    assert store.get_counters(e)["control"].exposures == 1000
    assert len(ids(store, e)) == 1000


def test_redis_ids_from_before_the_window_expire_one_window_after_the_first_prune(
    tmp_path: Path,
) -> None:
    """Ids a store kept forever (window 0) stay recognised when the window is set, and the first
    prune gives their set one more window to live."""
    for forever, _ in windowed("redis", tmp_path, 0):
        assert isinstance(forever, RedisStore)
        e = running(forever).id
        forever.apply_events([exposure(e, "u1", "ev-old", T0)])
        windowed_store = RedisStore(
            forever._client, forever._prefix, event_id_retention_days=WINDOW
        )
        resent = windowed_store.apply_events([exposure(e, "u1", "ev-old", T0 + DAY)])
        assert resent.duplicates == 1
        legacy = forever._key(e, "events")
        assert forever._client.ttl(legacy) == -1
        windowed_store.prune_event_ids(now=T0 + DAY, limit=10)
        assert 0 < forever._client.ttl(legacy) <= (WINDOW + 1) * DAY_SECONDS
