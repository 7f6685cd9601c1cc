"""Redis-specific checks: big batches, the key layout, and many processes at once."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from abpilot.domain.errors import StoreUnavailable, ValidationError
from abpilot.store.base import (
    AllocationRecord,
    AssignResult,
    DailyRow,
    EventKind,
    EventRecord,
    MetricTotals,
)
from abpilot.store.memory import MemoryStore
from abpilot.store.redis import RedisStore
from abpilot.store.redis import store as redis_store_module
from tests.conftest import BARRIER_SECONDS, REDIS_URL, redis_prefix
from tests.factories import make_experiment
from tests.processes import process_context

EXPOSURE, CONVERSION = EventKind.EXPOSURE, EventKind.CONVERSION


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as value:
        yield value


@pytest.fixture
def store(prefix: str) -> Iterator[RedisStore]:
    opened = RedisStore.from_url(REDIS_URL, prefix=prefix)
    yield opened
    opened.close()


def test_ten_thousand_event_batch(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = make_experiment()
    store.create_experiment(exp)
    events = []
    for i in range(10_000):
        unit, variant = f"u{i % 1000}", "control" if i % 1000 < 500 else "v1"
        period = i % 1000 // 250  # each unit in one period; two periods per variant
        if i % 2 == 0:
            events.append(
                EventRecord(EXPOSURE, exp.id, variant, unit, event_id=f"e{i}", period=period)
            )
        else:
            value = float(i % 5)
            events.append(
                EventRecord(CONVERSION, exp.id, variant, unit, "revenue", value, f"e{i}", period)
            )
    trips: list[str] = []  # the command of each round trip
    execute = store._client.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        trips.append(str(args[0]))
        return execute(*args, **options)

    monkeypatch.setattr(store._client, "execute_command", counted)
    result = store.apply_events(events)
    monkeypatch.undo()
    assert (result.applied, result.duplicates) == (10_000, 0)
    # The whole batch is one script call (one round trip), whatever its size: nothing it touches
    # is stored yet, as the store guesses (reading alongside, in case the guess is wrong); a
    # server that has not seen the script yet answers NOSCRIPT first.
    # Throughput: benchmarks/intake.py.
    assert trips in (["EVALSHA"], ["EVALSHA", "SCRIPT LOAD", "EVALSHA"])
    reference = MemoryStore()
    reference.apply_events(events)
    assert store.get_counters(exp.id) == reference.get_counters(exp.id)
    assert store.get_period_counters(exp.id) == reference.get_period_counters(exp.id)
    assert set(store.get_period_counters(exp.id)) == {0, 1, 2, 3}
    again = store.apply_events(events)
    assert (again.applied, again.duplicates) == (0, 10_000)
    assert store.get_period_counters(exp.id) == reference.get_period_counters(exp.id)


def test_mixed_periods_match_the_memory_store(store: RedisStore) -> None:
    """Random batches over periods, units that change period, anonymous and repeated events."""
    exp = make_experiment(weights=(0.3, 0.3, 0.4))
    store.create_experiment(exp)
    reference = MemoryStore()
    rng = random.Random(7)
    for unit in ("pre-0", "pre-1"):
        period = rng.randrange(3)
        store.assign(exp.id, unit, "v2", period=period)
        reference.assign(exp.id, unit, "v2", period=period)
    for batch in range(20):
        events = []
        for i in range(200):
            unit = rng.choice([None, "pre-0", "pre-1", *(f"u{n}" for n in range(30))])
            variant, period = rng.choice(["control", "v1", "v2"]), rng.randrange(4)
            event_id = rng.choice([None, f"b{batch}-{i}", f"shared-{rng.randrange(50)}"])
            if rng.random() < 0.4:
                events.append(
                    EventRecord(EXPOSURE, exp.id, variant, unit, None, 1.0, event_id, period)
                )
            else:
                metric, value = rng.choice([("conversion", 1.0), ("revenue", rng.randrange(9) / 4)])
                events.append(
                    EventRecord(CONVERSION, exp.id, variant, unit, metric, value, event_id, period)
                )
        assert store.apply_events(events) == reference.apply_events(events)
    assert store.get_period_counters(exp.id) == reference.get_period_counters(exp.id)
    assert store.get_counters(exp.id) == reference.get_counters(exp.id)
    units = ["pre-0", "pre-1", "never", *(f"u{n}" for n in range(30))]
    assert store.get_assignments(exp.id, units) == reference.get_assignments(exp.id, units)


def test_layout_from_before_periods_reads_as_period_zero(store: RedisStore, prefix: str) -> None:
    exp = make_experiment()
    store.create_experiment(exp)
    tag = f"{prefix}:{{{exp.id}}}"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.hset(f"{tag}:assign", mapping={"old": "v1"})
    client.hset(f"{tag}:counters", mapping={"v1|assigned_units": 1, "v1|exposures": 2})
    client.hset(f"{tag}:metrics", mapping={"v1|revenue|count": 1, "v1|revenue|sum": 2.5})
    client.close()
    store.apply_events([EventRecord(EXPOSURE, exp.id, "v1", "new", period=0)])
    assert store.get_assignments(exp.id, ["old", "new"]) == {"old": ("v1", 0), "new": ("v1", 0)}
    assert store.assign(exp.id, "old", "control", period=3) == AssignResult("v1", False, 0)
    counters = store.get_period_counters(exp.id)
    assert set(counters) == {0}
    v1 = counters[0]["v1"]
    assert (v1.assigned_units, v1.exposures, v1.unique_units) == (2, 3, 1)
    assert v1.metrics["revenue"] == MetricTotals(1, 0, 2.5, 0.0)


def test_every_experiment_key_carries_its_hash_tag(store: RedisStore, prefix: str) -> None:
    exp, other = make_experiment("a"), make_experiment("b")
    store.create_experiment(exp)
    store.create_experiment(other)
    for e in (exp, other):
        store.assign(e.id, "assigned", "control")
        store.apply_events(
            [
                EventRecord(EXPOSURE, e.id, "v1", "u|1", event_id="x"),
                EventRecord(CONVERSION, e.id, "v1", "u|1", "revenue", 2.0, "y"),
                EventRecord(CONVERSION, e.id, "v1", None, "conversion"),
            ]
        )
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = set(client.scan_iter(match=f"{prefix}:*"))
    client.close()
    index = {f"{prefix}:index:keys", f"{prefix}:index:ids"}
    assert index <= keys
    for e in (exp, other):
        mine = {k for k in keys if k.startswith(f"{prefix}:{{{e.id}}}:")}
        names = {k.rsplit(":", 1)[1] for k in mine}
        assert names == {"def", "assign", "exposed", "counters", "metrics", "units", "events"}
        assert len({key_slot(k.encode()) for k in mine}) == 1
    assert keys - index == {k for k in keys if f":{{{exp.id}}}:" in k or f":{{{other.id}}}:" in k}
    assert store.delete_experiment(exp.id)
    store.delete_experiment(other.id)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert set(client.scan_iter(match=f"{prefix}:{{*")) == set()
    client.close()


def test_batch_is_all_or_nothing(store: RedisStore) -> None:
    exp = make_experiment()
    store.create_experiment(exp)
    huge = 1e200
    events = [
        EventRecord(EXPOSURE, exp.id, "v1", "u", event_id="first"),
        EventRecord(CONVERSION, exp.id, "v1", "u", "revenue", huge, "big"),
    ]
    with pytest.raises(ValidationError, match="overflow"):
        store.apply_events(events)
    assert store.get_counters(exp.id) == {}
    assert store.get_assignments(exp.id, ["u"]) == {}
    assert store.apply_events(events[:1]).applied == 1


def test_unreachable_server_raises_store_unavailable() -> None:
    down = RedisStore.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
        down.ping()
    with pytest.raises(StoreUnavailable):
        down.get_counters("anything")
    with pytest.raises(StoreUnavailable):
        down.get_daily_metrics("anything")
    with pytest.raises(StoreUnavailable):
        down.add_allocation(_allocation("anything"))
    with pytest.raises(StoreUnavailable):
        down.try_lead("recalculate", ttl_seconds=1)
    down.close()


def test_an_unreachable_cluster_is_store_unavailable_without_its_password() -> None:
    with pytest.raises(StoreUnavailable, match=r"Redis Cluster at 127\.0\.0\.1:1 ") as caught:
        RedisStore.from_url("redis+cluster://:secret@127.0.0.1:1", socket_connect_timeout=0.5)
    assert "secret" not in str(caught.value)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that takes connections and never answers (a paused Redis, or one behind a
    half-open connection): the URL of it."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        acceptor.join(timeout=10)
        for conn in held:
            conn.close()
        listener.close()


def test_a_redis_that_stops_answering_fails_the_operation_instead_of_holding_it(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py waits for an answer forever unless told otherwise; the store gives every
    command ``SOCKET_TIMEOUT_S`` (shortened here) and then answers StoreUnavailable."""
    monkeypatch.setattr(redis_store_module, "SOCKET_TIMEOUT_S", 0.2)
    silent = RedisStore.from_url(silent_server)
    with pytest.raises(StoreUnavailable, match="Timeout"):
        silent.get_counters("anything")
    silent.close()


def test_a_wait_that_could_block_forever_is_refused() -> None:
    """Redis's ``WAIT n 0`` waits for n replicas however long it takes: refused up front."""
    with pytest.raises(ValueError, match="wait_timeout_ms must be at least 1"):
        RedisStore.from_url(REDIS_URL, wait_replicas=1, wait_timeout_ms=0)


def _allocation(experiment_id: str, **changes: Any) -> AllocationRecord:
    record = AllocationRecord(
        experiment_id=experiment_id,
        period=0,
        computed_at=datetime(2025, 2, 1, 12, 30, 15, 123456, tzinfo=UTC),
        weights={"control": 0.1 + 0.2, "v1": 1 / 3},
        method="monte_carlo",
        seed=2**64 - 1,
        source="daily",
        details={"arms": {"v1": {"trials": 10**12, "probability_best": 0.9999999999999999}}},
    )
    return replace(record, **changes)


def test_history_keys_carry_the_hash_tag(store: RedisStore, prefix: str) -> None:
    exp, other = make_experiment("a"), make_experiment("b")
    day = date(2025, 1, 15)
    for e in (exp, other):
        store.create_experiment(e)
        store.record_daily_metrics(
            e.id, day, [DailyRow(day, "v1", 10, 1)], '{"a": 1}', datetime.now(UTC)
        )
        store.add_allocation(_allocation(e.id))
    lease = store.try_lead("recalculate", ttl_seconds=30)
    assert lease is not None
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = set(client.scan_iter(match=f"{prefix}:*"))
    for e in (exp, other):
        mine = {k for k in keys if k.startswith(f"{prefix}:{{{e.id}}}:")}
        assert {k.rsplit(":", 1)[1] for k in mine} == {"def", "daily", "raw", "allocations"}
        assert len({key_slot(k.encode()) for k in mine}) == 1
    index = {f"{prefix}:index:keys", f"{prefix}:index:ids"}
    assert keys - index - {f"{prefix}:lease:recalculate"} == {
        k for k in keys if f":{{{exp.id}}}:" in k or f":{{{other.id}}}:" in k
    }
    assert store.delete_experiment(exp.id)
    assert {k for k in client.scan_iter(match=f"{prefix}:*") if exp.id in k} == set()
    assert store.list_allocations(other.id) != []
    lease.release()
    assert client.exists(f"{prefix}:lease:recalculate") == 0
    client.close()


def test_allocation_round_trips_exactly(store: RedisStore) -> None:
    exp = make_experiment()
    store.create_experiment(exp)
    sent = _allocation(exp.id, period=99)
    stored = store.add_allocation(sent)
    assert stored == replace(sent, period=1)
    assert store.list_allocations(exp.id) == [stored]
    assert store.latest_allocation(exp.id) == stored
    assert stored.computed_at.utcoffset() is not None
    assert store.add_allocation(replace(sent, seed=None)).seed is None
    assert store.latest_allocation(exp.id) == replace(sent, period=2, seed=None)


def test_allocation_batch_with_a_damaged_key_stores_nothing(store: RedisStore, prefix: str) -> None:
    good, damaged = make_experiment("good"), make_experiment("damaged")
    for exp in (good, damaged):
        store.create_experiment(exp)
    client = redis.Redis.from_url(REDIS_URL)
    client.set(f"{prefix}:{{{damaged.id}}}:allocations", "not a list")
    client.close()
    records = [_allocation(good.id, period=0), _allocation(damaged.id, period=0)]
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        store.add_allocations(records)
    assert store.list_allocations(good.id) == []  # checked before the first push
    assert store.add_allocations(records[:1])[0].period == 1


def test_lease_expires_and_renew_after_losing_it_is_false(prefix: str) -> None:
    one = RedisStore.from_url(REDIS_URL, prefix=prefix)
    two = RedisStore.from_url(REDIS_URL, prefix=prefix)  # another process: its own connections
    client = redis.Redis.from_url(REDIS_URL)
    key = f"{prefix}:lease:recalculate"
    lease = one.try_lead("recalculate", ttl_seconds=30)
    assert lease is not None
    assert 0 < client.pttl(key) <= 30_000  # the key expires by itself after the TTL
    assert two.try_lead("recalculate", ttl_seconds=30) is None
    assert lease.renew()
    # The holder died and nobody renewed: its TTL runs out (Redis removes the key), without
    # waiting 30 s for it.
    client.pexpire(key, 1)
    taken = None
    deadline = time.monotonic() + 60  # against a hang only
    while taken is None:
        assert time.monotonic() < deadline, "the expired lease was never taken"
        time.sleep(0.005)
        taken = two.try_lead("recalculate", ttl_seconds=30)
    assert not lease.renew()  # lost: it must not extend the new holder's lease
    lease.release()  # nor delete it
    assert one.try_lead("recalculate", ttl_seconds=30) is None
    assert taken.renew()
    taken.release()
    assert not taken.renew()
    again = one.try_lead("recalculate", ttl_seconds=30)
    assert again is not None
    again.release()
    one.close()
    two.close()
    client.close()


def test_renew_extends_the_ttl(store: RedisStore, prefix: str) -> None:
    key = f"{prefix}:lease:monitor"
    lease = store.try_lead("monitor", ttl_seconds=30)
    assert lease is not None
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.pexpire(key, 1_000)  # as if 29 of the 30 s had passed
    assert lease.renew()
    assert client.pttl(key) > 20_000  # the full 30 s TTL again, not the 1 s that was left
    assert store.try_lead("monitor", ttl_seconds=30) is None
    lease.release()
    assert client.exists(key) == 0
    client.close()


WORKERS, PER_WORKER, SHARED, BATCH = 8, 500, 50, 50


def _worker_events(worker: int, exp_id: str) -> list[EventRecord]:
    """500 events: the first 50 are the same (same ids) in every worker, the rest its own."""
    events = []
    for i in range(PER_WORKER):
        shared = i < SHARED
        event_id = f"shared-{i}" if shared else f"w{worker}-{i}"
        unit = f"u{i % 40}"  # units are shared by all workers, so per-unit totals race
        variant = "control" if i % 40 < 20 else "v1"
        if i % 3 == 0:
            events.append(EventRecord(EXPOSURE, exp_id, variant, unit, event_id=event_id))
        elif i % 3 == 1:
            value = float(i % 7 + (0 if shared else worker))  # same id, same event
            events.append(
                EventRecord(CONVERSION, exp_id, variant, unit, "revenue", value, event_id)
            )
        else:
            events.append(
                EventRecord(CONVERSION, exp_id, variant, None, "conversion", 1.0, event_id)
            )
    return events


def _run_worker(prefix: str, exp_id: str, worker: int, start: Any, results: Any) -> None:
    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    events = _worker_events(worker, exp_id)
    start.wait(timeout=60)
    applied = duplicates = 0
    for offset in range(0, len(events), BATCH):
        result = store.apply_events(events[offset : offset + BATCH])
        applied, duplicates = applied + result.applied, duplicates + result.duplicates
    store.close()
    results.put((applied, duplicates))


def test_many_processes_count_exactly_once(store: RedisStore, prefix: str) -> None:
    exp = make_experiment()
    store.create_experiment(exp)
    ctx = process_context()
    start, results = ctx.Barrier(WORKERS, timeout=BARRIER_SECONDS), ctx.Queue()
    processes = [
        ctx.Process(target=_run_worker, args=(prefix, exp.id, w, start, results))
        for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    unique = WORKERS * (PER_WORKER - SHARED) + SHARED
    assert sum(a for a, _ in outcomes) == unique
    assert sum(d for _, d in outcomes) == WORKERS * PER_WORKER - unique
    reference = MemoryStore()
    for worker in range(WORKERS):
        reference.apply_events(_worker_events(worker, exp.id))
    expected = reference.get_counters(exp.id)
    assert store.get_counters(exp.id) == expected  # integer-valued: sums are exact
    revenue_events = sum(1 for i in range(PER_WORKER) if i % 3 == 1)
    shared_revenue = sum(1 for i in range(SHARED) if i % 3 == 1)
    counted = sum(c.metrics["revenue"].count for c in store.get_counters(exp.id).values())
    assert counted == WORKERS * (revenue_events - shared_revenue) + shared_revenue


def test_a_batch_raced_on_its_unit_counts_again_from_a_fresh_read(
    store: RedisStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between this batch's read and its commit another client counts a conversion of the same
    unit: the commit writes nothing, and the batch counts again on what is stored now."""
    exp = make_experiment()
    store.create_experiment(exp)
    store.apply_events([EventRecord(EXPOSURE, exp.id, "control", "u1")])
    other = RedisStore.from_url(REDIS_URL, prefix=prefix)
    run = RedisStore._run
    calls: list[bool] = []  # what each call of the step script did: True if it wrote

    def racing(self: RedisStore, plan: Any) -> Any:
        if self is store and len(calls) == 1:  # after this batch's read, before its commit
            other.apply_events(
                [EventRecord(CONVERSION, exp.id, "control", "u1", "revenue", 3.0, "theirs")]
            )
        done = run(self, plan)
        if self is store:
            calls.append(done[0])
        return done

    store._guess_rate = 0.0  # read first (the guess path races the same way, one call later)
    monkeypatch.setattr(RedisStore, "_run", racing)
    result = store.apply_events(
        [EventRecord(CONVERSION, exp.id, "control", "u1", "revenue", 2.0, "mine")]
    )
    other.close()
    assert (result.applied, result.duplicates) == (1, 0)
    # read (nothing to check: it succeeds), commit refused (the unit changed), read, commit
    assert calls == [True, False, True, True]
    # One unit whose total went 0 -> 3 -> 5: its square is 25 (not 9 + 2 * (2 * 0 + 2) = 13).
    assert store.get_counters(exp.id)["control"].metrics["revenue"] == MetricTotals(2, 1, 5.0, 25.0)
