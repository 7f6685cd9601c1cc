"""Redis counts one plain exposure with one small script (``EXPOSE_ONE``), beside the general
counting path (``count_events`` through the generic ``STEP`` script). The two must leave the
same keys: these tests run the same exposures through both, on two prefixes of the same
server, and compare every key the experiment has."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

import abpilot
from abpilot.domain.errors import DefinitionChanged
from abpilot.store.base import ApplyResult, EventKind, EventRecord
from abpilot.store.factory import open_store
from abpilot.store.redis import RedisStore, expose_one, intake
from tests import redis_cluster
from tests.conftest import IN_CI, backend_url
from tests.factories import make_experiment


@pytest.fixture
def two_redis(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[RedisStore, RedisStore]]:
    retention = getattr(request, "param", 0)
    with (
        backend_url("redis", tmp_path) as (url, options),
        backend_url("redis", tmp_path) as (other_url, other_options),
    ):
        one = open_store(url, **options, event_id_retention_days=retention)
        two = open_store(other_url, **other_options, event_id_retention_days=retention)
        assert isinstance(one, RedisStore)
        assert isinstance(two, RedisStore)
        try:
            yield one, two
        finally:
            one.close()
            two.close()


def keys_of(store: RedisStore, experiment_id: str) -> dict[str, Any]:
    """Every key of the experiment but its definition, by its name after the prefix, with its
    value (and whether it expires)."""
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    prefix = store._key(experiment_id, "")
    found: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        name = key[len(prefix) :]
        if name == "def":
            continue
        kind = client.type(key)
        value: Any = {
            "hash": client.hgetall,
            "set": lambda k: sorted(client.smembers(k)),
            "string": client.get,
        }[kind](key)
        found[name] = (kind, value, client.ttl(key) > 0)
    client.close()
    return found


def exposures(
    seed: int, experiment_id: str, count: int
) -> Iterator[EventRecord | tuple[str, str, int]]:
    """Exposures of 40 units with repeated event ids, out-of-order times and, now and then, a
    unit assigned first (to a variant the exposure may not name: it counts under its own)."""
    draw = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0)
    for _ in range(count):
        unit = f"u{draw.randrange(40)}"
        if draw.random() < 0.1:
            yield unit, draw.choice(["control", "treatment"]), draw.randrange(2)
            continue
        yield EventRecord(
            EventKind.EXPOSURE,
            experiment_id,
            draw.choice(["control", "treatment"]),
            unit,
            event_id=draw.choice([None, f"e{draw.randrange(60)}"]),  # repeats are duplicates
            period=draw.randrange(2),
            received_at=start + timedelta(seconds=draw.randrange(-50, 400)),
        )


@pytest.mark.parametrize("two_redis", [0, 7], indirect=True, ids=["ids-kept", "7-day-window"])
def test_one_script_and_the_general_path_leave_the_same_keys(
    two_redis: tuple[RedisStore, RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, general = two_redis
    exp = make_experiment("expose-one")
    for store in (fast, general):
        store.create_experiment(exp)
    calls: list[object] = []
    counted = expose_one.expose_one_result

    def noted(reply: object, experiment_id: str) -> ApplyResult:
        calls.append(reply)
        return counted(reply, experiment_id)

    monkeypatch.setattr(intake, "expose_one_result", noted)
    for step, item in enumerate(exposures(19, exp.id, 300)):
        if isinstance(item, tuple):
            for store in (fast, general):
                store.assign(exp.id, item[0], item[1], period=item[2])
            continue
        answers = [
            fast.apply_current_events([item], {exp.id: exp.version}),
            general.apply_events([item]),
        ]
        assert answers[0] == answers[1], step
    assert len(calls) > 200  # the one script did count them
    found = keys_of(fast, exp.id)
    assert found == keys_of(general, exp.id)
    names = set(found)
    assert {"assign", "exposed", "counters", "activity"} <= names
    assert any(name.startswith("events") for name in names)  # the cases were there
    assert sum(c.exposures for c in fast.get_counters(exp.id).values()) < 270  # duplicates


def test_a_unit_stored_before_periods_counts_under_period_0(
    two_redis: tuple[RedisStore, RedisStore],
) -> None:
    """An assignment cell from before allocation periods holds the bare variant: both paths
    count the unit's exposure under (variant, period 0)."""
    fast, general = two_redis
    exp = make_experiment("legacy-cell")
    for store in (fast, general):
        store.create_experiment(exp)
        store._client.hset(store._key(exp.id, "assign"), "old-unit", "treatment")
    event = EventRecord(EventKind.EXPOSURE, exp.id, "control", "old-unit", period=1)
    fast.apply_current_events([event], {exp.id: exp.version})
    general.apply_events([event])
    assert keys_of(fast, exp.id) == keys_of(general, exp.id)
    counters = fast.get_period_counters(exp.id)
    assert counters[0]["treatment"].exposures == 1
    assert counters[0]["treatment"].assigned_units == 0  # assigned before, not by this exposure


def test_a_changed_definition_writes_nothing(two_redis: tuple[RedisStore, RedisStore]) -> None:
    fast, _ = two_redis
    exp = make_experiment("changed")
    fast.create_experiment(exp)
    event = EventRecord(EventKind.EXPOSURE, exp.id, "control", "u1", event_id="e1")
    with pytest.raises(DefinitionChanged):
        fast.apply_current_events([event], {exp.id: exp.version + 1})
    assert keys_of(fast, exp.id) == {}
    assert fast.apply_current_events([event], {exp.id: exp.version}).applied == 1


@pytest.mark.parametrize("two_redis", [7], indirect=True)
def test_an_id_claimed_days_ago_or_before_the_window_is_a_duplicate(
    two_redis: tuple[RedisStore, RedisStore],
) -> None:
    """Inside a 7-day window, an id claimed two days ago (its day's set) and one claimed before
    the window was set (the set kept forever) are both found by the one script."""
    fast, _ = two_redis
    exp = make_experiment("window")
    fast.create_experiment(exp)
    now = datetime.now(UTC)
    earlier = EventRecord(
        EventKind.EXPOSURE,
        exp.id,
        "control",
        "u1",
        event_id="e-old",
        received_at=now - timedelta(days=2),
    )
    assert fast.apply_current_events([earlier], {exp.id: exp.version}).applied == 1
    fast._client.sadd(fast._key(exp.id, "events"), "e-before-window")
    for event_id in ("e-old", "e-before-window"):
        again = EventRecord(
            EventKind.EXPOSURE, exp.id, "control", "u2", event_id=event_id, received_at=now
        )
        result = fast.apply_current_events([again], {exp.id: exp.version})
        assert (result.applied, result.duplicates) == (0, 1), event_id
    assert "u2" not in fast.get_assignments(exp.id, ["u2"])  # a duplicate changes nothing


@pytest.fixture
def master_url() -> Iterator[str]:
    """A Redis master with one replica on free ports (started for the test)."""
    reason = redis_cluster.missing_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    with redis_cluster.master_with_replica() as url:
        yield url


def test_with_wait_replicas_a_counted_exposure_is_on_the_replica(
    master_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``REDIS_WAIT_REPLICAS`` holds for the one script too: each single exposure is
    acknowledged once the replica has it, and too few replicas in time is logged."""
    calls: list[object] = []
    counted = expose_one.expose_one_result
    monkeypatch.setattr(
        intake, "expose_one_result", lambda reply, exp: calls.append(reply) or counted(reply, exp)
    )
    service = abpilot.open(master_url, prefix="w", wait_replicas=1, wait_timeout_ms=5000)
    experiment = service.create_experiment(
        key="waited", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
    )
    service.start_experiment("waited")
    port = redis_cluster.replica_port(master_url)
    replica = redis.Redis(port=port, decode_responses=True)
    counters = f"w:{{{experiment.id}}}:counters"
    for n in range(10):
        service.record_exposure(experiment="waited", unit_id=f"u{n}")
        exposures = replica.hgetall(counters)
        assert sum(int(v) for k, v in exposures.items() if k.endswith("|exposures")) == n + 1
    assert calls == [1] * 10  # each through the one script
    replica.close()
    service.store.close()
    too_many = abpilot.open(master_url, prefix="w", wait_replicas=2, wait_timeout_ms=20)
    with caplog.at_level(logging.WARNING, logger="abpilot.store"):
        too_many.record_exposure(experiment="waited", unit_id="late")
    assert "1 of 2 replicas acknowledged" in caplog.text
    assert (
        too_many.get_metrics("waited").variants[0].exposures
        + too_many.get_metrics("waited").variants[1].exposures
        == 11
    )
    too_many.store.close()


def test_a_server_that_lost_its_scripts_counts_on(master_url: str) -> None:
    """A Redis that restarted (or ran SCRIPT FLUSH) answers NOSCRIPT: the intake scripts, the
    one-exposure script and the generic one, are loaded again and nothing is lost or counted
    twice."""
    service = abpilot.open(master_url, prefix="flush")
    service.create_experiment(
        key="flushed", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]
    )
    service.start_experiment("flushed")
    client = redis.Redis.from_url(master_url)
    for n in range(3):
        client.script_flush()
        service.record_exposure(experiment="flushed", unit_id=f"single{n}", event_id=f"s{n}")
        client.script_flush()
        batch = [
            abpilot.EventInput(EventKind.EXPOSURE, "flushed", unit_id=f"batch{n}-{i}")
            for i in range(3)
        ]
        service.record_events(batch)
    service.record_exposure(experiment="flushed", unit_id="single0", event_id="s0")  # a resend
    variants = service.get_metrics("flushed").variants
    assert sum(v.exposures for v in variants) == 12
    assert sum(v.unique_units for v in variants) == 12
    client.close()
    service.store.close()
