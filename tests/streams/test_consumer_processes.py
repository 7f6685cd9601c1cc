"""Real `abpilot consume` processes on each bus: two share a stream, one is SIGKILLed in the middle
of a batch (read, not yet acknowledged), and the survivor takes its messages over after
``STREAM_ACK_WAIT_SECONDS``; every event counts exactly once and every bad one is a dead letter.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from abpilot.service import ExperimentService
from tests.conftest import REDIS_URL
from tests.e2e.server import free_port
from tests.streams.conftest import Bus
from tests.streams.workload import (
    NatsBus,
    RedisBus,
    check_counters,
    create_experiment,
    make_workload,
    markers,
    wait_until,
)

# Extended stage of .ci/run (not the README command): consumer processes, one SIGKILLed mid-batch.
pytestmark = pytest.mark.extended

APPLIED = re.compile(rb"applied (\d+), duplicates (\d+)")


class Consumer:
    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        command = shutil.which("abpilot") or f"{sys.executable} -m abpilot"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command.split(), "consume", *args],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> bytes:
        return self.log.read_bytes()

    def ready(self) -> bool:
        assert self.process.poll() is None, self.text().decode(errors="replace")
        return b"consuming" in self.text()

    def batches(self) -> int:
        return len(APPLIED.findall(self.text()))

    def applied(self) -> int:
        return sum(int(a) for a, _ in APPLIED.findall(self.text()))

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def consumers(env: dict[str, str], tmp_path: Path, *args: list[str]) -> Iterator[list[Consumer]]:
    """A consumer process per element of ``args`` (its extra arguments)."""
    started = [Consumer(env, tmp_path / f"consumer-{i}.log", *a) for i, a in enumerate(args)]
    try:
        yield started
    finally:
        for consumer in started:
            consumer.stop()


def mid_batch(bus: Bus, consumer: Consumer) -> bool:
    """``consumer`` holds messages it has read and not acknowledged."""
    if isinstance(bus, RedisBus):
        client = redis.Redis.from_url(REDIS_URL)
        try:
            name = f"{os.uname().nodename}-{consumer.process.pid}"
            pending: Any = client.xpending(bus.settings["REDIS_STREAM"], "abpilot")
            owners = {c["name"].decode(): int(c["pending"]) for c in pending["consumers"]}
            return owners.get(name, 0) > 0
        finally:
            client.close()
    assert isinstance(bus, NatsBus)
    return consumer.batches() > 0 and not bus.drained()


def test_two_consumers_share_a_stream_and_survive_a_sigkill_mid_batch(
    bus: Bus, service: ExperimentService, store_prefix: str, tmp_path: Path
) -> None:
    key = f"proc-{uuid.uuid4().hex[:8]}"
    create_experiment(service, key)
    workload = make_workload(key, 20_000)
    env = {
        **bus.settings,
        "STREAM_BATCH": "50",
        "STORE": "redis",
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": store_prefix,
        "STREAM_CONSUMERS": "nats" if isinstance(bus, NatsBus) else "redis",
    }
    bus.create_consumer()
    port = free_port()
    with consumers(env, tmp_path, [], ["--metrics-port", str(port)]) as (doomed, survivor):
        wait_until(lambda: doomed.ready() and survivor.ready(), seconds=60, what="start-up")
        bus.publish(workload.messages)
        wait_until(
            lambda: doomed.batches() > 0 and survivor.batches() > 0 and mid_batch(bus, doomed),
            seconds=120,
            what="both consumers applying batches",
        )
        doomed.kill()
        assert not bus.drained()
        wait_until(bus.drained, seconds=300, what="the survivor draining the stream")
        assert doomed.applied() > 0
        assert survivor.applied() > 0
        stream = bus.source().stream
        name = env["STREAM_CONSUMERS"]

        def scraped(metric: str) -> float:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            pattern = rf'^{metric}{{source="{name}",stream="{re.escape(stream)}"}} (\S+)$'
            found = re.search(pattern, body, re.M)
            return float(found.group(1)) if found else -1.0

        wait_until(lambda: scraped("abpilot_stream_lag") == 0, seconds=30, what="lag 0")
        assert scraped("abpilot_stream_messages_total") > 0
    check_counters(service, workload)
    assert set(markers(bus.dead_letters())) == workload.bad
