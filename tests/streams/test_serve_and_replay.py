"""Consumers inside `abpilot serve` (``STREAM_CONSUMERS``), their lag and dead letters on
``/metrics``, and `abpilot replay` of a range: events refused because their experiment did not
exist yet count once it does, and those counted before are duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from abpilot.cli import app
from abpilot.service import ExperimentService
from tests.conftest import REDIS_URL
from tests.e2e.server import running_server
from tests.streams.conftest import Bus
from tests.streams.workload import NatsBus, create_experiment, wait_until

runner = CliRunner()


def metric(body: str, name: str, **labels: str) -> float:
    """The value of ``name`` with ``labels`` in the exposition text (0 when absent)."""
    for line in body.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def event(experiment: str, unit: str) -> bytes:
    body = {"type": "exposure", "experiment_id": experiment, "unit_id": unit, "variant": "a"}
    return json.dumps(body).encode()


def test_serve_runs_the_consumers_and_reports_lag_and_dead_letters(
    bus: Bus, service: ExperimentService, store_prefix: str, tmp_path: Path
) -> None:
    create_experiment(service, "served")
    name = "nats" if isinstance(bus, NatsBus) else "redis"
    stream = bus.source().stream
    env = {
        **bus.settings,
        "STORE": "redis",
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": store_prefix,
        "STREAM_CONSUMERS": name,
        "SCHEDULER_ENABLED": "false",
    }
    with running_server(env, tmp_path) as url:

        def scraped() -> str:
            return httpx.get(f"{url}/metrics").text

        wait_until(
            lambda: f'abpilot_stream_lag{{source="{name}",stream="{stream}"}}' in scraped(),
            seconds=60,
            what="the consumer reporting its lag",
        )
        bus.publish([event("served", f"u{i}") for i in range(20)] + [b"{oops"])
        wait_until(
            lambda: metric(scraped(), "abpilot_stream_messages_total", source=name) == 21,
            seconds=60,
            what="the served consumer applying the messages",
        )
        body = scraped()
        assert metric(body, "abpilot_stream_dead_letters_total", source=name, code="malformed") == 1
        exposures = httpx.get(f"{url}/api/v1/experiments/served/metrics").json()["variants"]
        assert {v["key"]: v["exposures"] for v in exposures} == {"a": 20, "b": 0}
        wait_until(
            lambda: (
                metric(scraped(), "abpilot_stream_lag", source=name) == 0
                and metric(scraped(), "abpilot_stream_pending", source=name) == 0
            ),
            seconds=60,
            what="the lag falling to 0",
        )
    assert [d["code"] for d in bus.dead_letters()] == ["malformed"]


def replay(bus: Bus, env: dict[str, str], first: str, last: str) -> dict[str, object]:
    """`abpilot replay` (in this process: the CLI's own code, without a second start-up)."""
    name = "nats" if isinstance(bus, NatsBus) else "redis"
    done = runner.invoke(
        app, ["replay", name, "--from", first, "--to", last], env={**bus.settings, **env}
    )
    assert done.exit_code == 0, done.output
    result: dict[str, object] = json.loads(done.output)
    return result


def test_replay_counts_what_was_refused_and_nothing_twice(
    bus: Bus, service: ExperimentService, store_prefix: str
) -> None:
    from abpilot.streams.consumer import ConsumerThreads

    create_experiment(service, "early")
    bus.create_consumer()
    # Messages 1-3 and 7 count at once; 4-6 name an experiment created only afterwards.
    bus.publish([event("early", f"u{i}") for i in range(3)])
    bus.publish([event("late", f"u{i}") for i in range(3)] + [event("early", "u9")])
    consumers = ConsumerThreads(service, [bus.source()])
    consumers.start()
    try:
        wait_until(bus.drained, seconds=60, what="draining")
    finally:
        consumers.stop()
    assert [d["code"] for d in bus.dead_letters()] == ["experiment_not_found"] * 3
    create_experiment(service, "late")
    if isinstance(bus, NatsBus):
        first, last = "2", "7"
    else:
        ids = [i.decode() for i, _ in bus.client.xrange(bus.settings["REDIS_STREAM"])]
        first, last = ids[1], ids[6]
    env = {"STORE": "redis", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": store_prefix}
    outcome = replay(bus, env, first, last)
    assert {k: outcome[k] for k in ("messages", "applied", "duplicates", "dead_letters")} == {
        "messages": 6,
        "applied": 3,
        "duplicates": 3,
        "dead_letters": 0,
    }
    assert outcome["refused"] == []
    for key, count in (("early", 4), ("late", 3)):
        assert sum(v.exposures for v in service.get_metrics(key).variants) == count
    # Again: everything is a duplicate now.
    assert replay(bus, env, first, last)["duplicates"] == 6


def test_replay_names_a_bad_range() -> None:
    done = runner.invoke(app, ["replay", "nats", "--from", "first", "--store-url", "memory://"])
    assert done.exit_code == 2
    assert "--from 'first' is not" in done.output
