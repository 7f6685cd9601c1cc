"""A stream workload with known answers, and the buses it goes through.

``make_workload(events)`` builds messages for one experiment (variants ``a`` and ``b``, metrics
``buy`` and ``revenue``): per unit an exposure, for some a purchase and revenue, either in one
message (a batch in the shape of ``POST /api/v1/events``) or each in its own message right
behind the exposure (so a consumer may see a conversion before another has counted its unit's
exposure: it is left to retry, ``STREAM_MAX_DELIVERIES``), about 1% malformed or refused events
(each carrying a ``bad-<n>`` marker, some inside batches of good events) and producer re-sends
of messages whose events all have an ``event_id``. It knows the exact counters the good events
add up to.

``NatsBus`` and ``RedisBus`` publish to a fresh stream of the real server, read the dead letters
back, take messages as a consumer that dies after applying them (never acknowledging), and tell
when the stream is drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.js.errors
import redis

from abpilot.service import ExperimentService
from abpilot.streams.intake import EventSink, StreamMessage, apply_messages
from abpilot.streams.nats_stream import NatsSource
from abpilot.streams.redis_stream import RedisStreamSource
from tests.conftest import REDIS_URL

NATS_URL = "nats://127.0.0.1:4222"
MARKER = re.compile(r"bad-\d+")


@dataclass
class Expected:
    exposures: Counter[str] = field(default_factory=Counter)
    units: Counter[str] = field(default_factory=Counter)
    buys: Counter[str] = field(default_factory=Counter)
    revenue: Counter[str] = field(default_factory=Counter)


@dataclass
class Workload:
    key: str
    messages: list[bytes]
    expected: Expected
    bad: set[str]  # the markers of the events that must end as dead letters
    resent: int  # messages published twice by the producer
    events: int  # events in the messages, re-sends not counted


def create_experiment(service: ExperimentService, key: str) -> None:
    service.create_experiment(
        key=key,
        variants=[{"key": "a"}, {"key": "b"}],
        metrics=[{"key": "buy"}, {"key": "revenue", "kind": "value"}],
    )
    service.start_experiment(key)


def make_workload(key: str, events: int, *, seed: int = 7, resend: float = 0.025) -> Workload:
    rng = random.Random(seed)
    expected = Expected()
    messages: list[bytes] = []
    bad: set[str] = set()
    resent = 0
    unit = 0
    produced = 0
    while produced < events:
        unit += 1
        if rng.random() < 0.01 * 2.2:  # about 1% of the events (a unit makes ~2.2 events)
            marker = f"bad-{unit}"
            bad.add(marker)
            messages.append(_malformed(key, marker, unit, expected))
            produced += 2 if unit % 6 == 5 else 1
            continue
        variant = "a" if unit % 3 else "b"
        name = f"u{unit}"
        with_ids = rng.random() < 0.5
        events_of_unit: list[dict[str, Any]] = [
            {"type": "exposure", "experiment_id": key, "unit_id": name, "variant": variant}
        ]
        expected.exposures[variant] += 1
        expected.units[variant] += 1
        if rng.random() < 0.6:
            events_of_unit.append(
                {"type": "conversion", "experiment_id": key, "unit_id": name, "metric": "buy"}
            )
            expected.buys[variant] += 1
        if rng.random() < 0.6:
            value = float(unit % 7) + 0.5
            events_of_unit.append(
                {
                    "type": "conversion",
                    "experiment_id": key,
                    "unit_id": name,
                    "metric": "revenue",
                    "value": value,
                }
            )
            expected.revenue[variant] += value
        if with_ids:
            for i, event in enumerate(events_of_unit):
                event["event_id"] = f"{name}-{i}"
        produced += len(events_of_unit)
        if len(events_of_unit) > 1 and rng.random() < 0.5:
            bodies: list[object] = [{"events": events_of_unit}]
        else:  # each event alone, the conversions right behind their exposure
            bodies = list(events_of_unit)
        for body in bodies:
            messages.append(json.dumps(body).encode())
            if with_ids and rng.random() < 2 * resend / len(bodies):  # a producer's retry
                messages.append(messages[-1])
                resent += 1
    return Workload(key, messages, expected, bad, resent, produced)


def _malformed(key: str, marker: str, unit: int, expected: Expected) -> bytes:
    kind = unit % 6
    if kind == 0:
        return f"{{{marker}".encode()  # not JSON
    if kind == 1:
        return json.dumps({"experiment_id": key, "unit_id": marker}).encode()  # no type
    if kind == 2:
        return json.dumps(
            {"type": "exposure", "experiment_id": f"gone-{key}", "unit_id": marker}
        ).encode()
    if kind == 3:
        return json.dumps(
            {"type": "conversion", "experiment_id": key, "unit_id": marker, "metric": "nope"}
        ).encode()
    if kind == 4:
        return json.dumps(
            {"type": "conversion", "experiment_id": key, "unit_id": marker, "value": "lots"}
        ).encode()
    # A refused event between good ones: the good one counts.
    good = {"type": "exposure", "experiment_id": key, "unit_id": f"{marker}-ok", "variant": "a"}
    expected.exposures["a"] += 1
    expected.units["a"] += 1
    refused = {"type": "exposure", "experiment_id": key, "unit_id": marker, "variant": "zzz"}
    return json.dumps({"events": [good, refused]}).encode()


def markers(dead_letters: list[dict[str, Any]]) -> Counter[str]:
    """How many dead letters name each ``bad-<n>`` marker (by distinct dead letter key)."""
    seen: dict[str, str] = {}
    for dead in dead_letters:
        key = f"{dead['message_id']}/{dead['index']}"
        found = MARKER.search(json.dumps(dead["event"]))
        assert found is not None, f"a good event became a dead letter: {dead}"
        seen[key] = found.group(0)
    return Counter(seen.values())


def check_counters(service: ExperimentService, workload: Workload) -> None:
    metrics = {v.key: v for v in service.get_metrics(workload.key).variants}
    expected = workload.expected
    for variant in ("a", "b"):
        got = metrics[variant]
        assert got.exposures == expected.exposures[variant], variant
        assert got.unique_units == expected.units[variant], variant
        assert got.metrics["buy"].count == expected.buys[variant], variant
        assert got.metrics["revenue"].sum == expected.revenue[variant], variant


def wait_until(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    """A bound on a hang, not a timing assertion."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(0.1)


class NatsBus:
    def __init__(self, *, ack_wait: float = 2.0, batch: int = 200) -> None:
        tag = uuid.uuid4().hex[:10]
        self.tag = tag
        self.settings = {
            "NATS_URL": NATS_URL,
            "NATS_STREAM": f"T_{tag}",
            "NATS_SUBJECT": f"test.{tag}.events",
            "NATS_DURABLE": "abpilot",
            "NATS_DEAD_LETTER_SUBJECT": f"test.{tag}.dead",
            "STREAM_ACK_WAIT_SECONDS": str(ack_wait),
            "STREAM_BATCH": str(batch),
        }

    def source(self) -> NatsSource:
        s = self.settings
        return NatsSource(
            url=NATS_URL,
            stream=s["NATS_STREAM"],
            subject=s["NATS_SUBJECT"],
            durable=s["NATS_DURABLE"],
            dead_letter_subject=s["NATS_DEAD_LETTER_SUBJECT"],
            batch=int(s["STREAM_BATCH"]),
            ack_wait_seconds=float(s["STREAM_ACK_WAIT_SECONDS"]),
        )

    def two_consumers(self) -> list[NatsSource]:
        """Two consumers of the one durable (in one process: two connections)."""
        return [self.source(), self.source()]

    def publish(self, messages: list[bytes]) -> None:
        async def send() -> None:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            await self.source().ensure_streams(js)
            subject = self.settings["NATS_SUBJECT"]
            for start in range(0, len(messages), 500):
                await asyncio.gather(
                    *(js.publish(subject, m) for m in messages[start : start + 500])
                )
            await nc.close()

        asyncio.run(send())

    def dead_letters(self) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            name = self.source().dead_letter_stream
            info = await js.stream_info(name)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                if info.state.messages == 0:
                    break
                found.append(json.loads((await js.get_msg(name, seq)).data or b"{}"))
            await nc.close()
            return found

        return asyncio.run(read())

    def drained(self) -> bool:
        async def info() -> bool:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            consumer = await js.consumer_info(self.settings["NATS_STREAM"], "abpilot")
            await nc.close()
            return consumer.num_pending == 0 and consumer.num_ack_pending == 0

        return asyncio.run(info())

    def pending(self) -> int:
        """Messages delivered to a consumer and not acknowledged."""

        async def info() -> int:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            consumer = await js.consumer_info(self.settings["NATS_STREAM"], "abpilot")
            await nc.close()
            return consumer.num_ack_pending

        return asyncio.run(info())

    def die_after_applying(self, sink: EventSink, count: int) -> int:
        """Take ``count`` messages as one more consumer of the durable, apply them, and die
        without acknowledging: JetStream delivers them again after ack_wait."""

        async def take() -> int:
            source = self.source()
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            sub = await js.pull_subscribe(
                source.subject, durable=source.durable, stream=source.stream
            )
            fetched = await sub.fetch(count, timeout=5)
            messages = [
                StreamMessage(source.message_id(m.metadata.sequence.stream), m.data)
                for m in fetched
            ]
            await asyncio.to_thread(apply_messages, sink, messages)
            await nc.close()
            return len(messages)

        return asyncio.run(take())

    def create_consumer(self) -> None:
        """The durable, as a consumer creates it (so a dying consumer can take from it)."""

        async def create() -> None:
            source = self.source()
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            await source.ensure_streams(js)
            from nats.js.api import AckPolicy, ConsumerConfig

            await js.add_consumer(
                source.stream,
                ConsumerConfig(
                    durable_name=source.durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=source.ack_wait_seconds,
                    filter_subject=source.subject,
                ),
            )
            await nc.close()

        asyncio.run(create())

    def close(self) -> None:
        async def delete() -> None:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            for name in (self.settings["NATS_STREAM"], self.source().dead_letter_stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(name)
            await nc.close()

        asyncio.run(delete())


class RedisBus:
    def __init__(self, *, ack_wait: float = 2.0, batch: int = 200) -> None:
        tag = uuid.uuid4().hex[:10]
        self.tag = tag
        self.client = redis.Redis.from_url(REDIS_URL)
        self.settings = {
            "REDIS_STREAM_URL": REDIS_URL,
            "REDIS_STREAM": f"abptest-stream-{tag}",
            "REDIS_STREAM_GROUP": "abpilot",
            "REDIS_STREAM_DEAD_LETTER": f"abptest-stream-{tag}:dead",
            "STREAM_ACK_WAIT_SECONDS": str(ack_wait),
            "STREAM_BATCH": str(batch),
        }

    def source(self, consumer: str = "c1") -> RedisStreamSource:
        s = self.settings
        return RedisStreamSource(
            url=REDIS_URL,
            stream=s["REDIS_STREAM"],
            group=s["REDIS_STREAM_GROUP"],
            dead_letter_stream=s["REDIS_STREAM_DEAD_LETTER"],
            batch=int(s["STREAM_BATCH"]),
            ack_wait_seconds=float(s["STREAM_ACK_WAIT_SECONDS"]),
            consumer=consumer,
        )

    def two_consumers(self) -> list[RedisStreamSource]:
        """Two consumers of the group, by name."""
        return [self.source("c1"), self.source("c2")]

    def publish(self, messages: list[bytes]) -> None:
        stream = self.settings["REDIS_STREAM"]
        for start in range(0, len(messages), 1000):
            with self.client.pipeline(transaction=False) as pipe:
                for message in messages[start : start + 1000]:
                    pipe.xadd(stream, {"event": message})
                pipe.execute()

    def dead_letters(self) -> list[dict[str, Any]]:
        entries: Any = self.client.xrange(self.settings["REDIS_STREAM_DEAD_LETTER"])
        return [json.loads(fields[b"dead_letter"]) for _, fields in entries]

    def drained(self) -> bool:
        groups: Any = self.client.xinfo_groups(self.settings["REDIS_STREAM"])
        return all(int(g["lag"] or 0) == 0 and int(g["pending"]) == 0 for g in groups)

    def pending(self) -> int:
        groups: Any = self.client.xinfo_groups(self.settings["REDIS_STREAM"])
        return sum(int(g["pending"]) for g in groups)

    def create_consumer(self) -> None:
        self.source().ensure_group(self.client)

    def die_after_applying(self, sink: EventSink, count: int) -> int:
        source = self.source("dies")
        read: Any = self.client.xreadgroup(source.group, "dies", {source.stream: ">"}, count)
        entries = read[0][1] if read else []
        messages = [StreamMessage(source.message_id(i), f[b"event"]) for i, f in entries]
        apply_messages(sink, messages)
        return len(messages)

    def close(self) -> None:
        self.client.delete(self.settings["REDIS_STREAM"], self.settings["REDIS_STREAM_DEAD_LETTER"])
        self.client.close()
