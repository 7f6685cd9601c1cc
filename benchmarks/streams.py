"""Events per second through each event stream, next to the same store's batch intake in the same
run.

Workload, the same on every path: the events of ``benchmarks.intake`` (batches of 1,000: 800
exposures of new units and 200 conversions of units exposed earlier in the same batch, every
event with its own ``event_id``).

* reference: ``service.record_events(batch)`` in-process, what ``POST /api/v1/events`` calls;
* NATS JetStream: the same events, one per message, published to a fresh stream beforehand (not
  timed); then one consumer (``abpilot.streams.nats_stream``, ``STREAM_BATCH=1000``) is started
  and timed until it has applied and acknowledged every message: fetch, parse and check each
  message with the REST API's event model, ``record_events``, acknowledge;
* Redis Streams: the same through a consumer group (``XREADGROUP``, ``record_events``, ``XACK``),
  the stream on the same Redis server as the Redis store.

The consumer's start-up (connecting, creating the durable or the group) is inside its time.
Rounds alternate reference, NATS and Redis Streams; each figure is the best round, and ``vs
batch intake`` divides it by the reference's best round on the same store.

Run ``python -m benchmarks.streams [--batches 10] [--rounds 3] [--stores SQLite,Redis]`` with
PostgreSQL, Redis and NATS (``nats-server -js`` on 127.0.0.1:4222) running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import nats
import redis

from abpilot.observability import STREAM_MESSAGES
from abpilot.service import EventInput
from abpilot.streams.consumer import ConsumerThreads, Source
from abpilot.streams.nats_stream import NatsSource
from abpilot.streams.redis_stream import RedisStreamSource
from benchmarks.common import BACKENDS, REDIS_URL, machine_line
from benchmarks.intake import BATCH, ServiceRun, batch_events

NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True, slots=True)
class StreamRow:
    store: str
    path: str
    events_per_second: float
    reference: float

    @property
    def ratio(self) -> float:
        return self.events_per_second / self.reference


def as_json(event: EventInput) -> bytes:
    body = {"type": str(event.kind), "experiment_id": event.experiment, "unit_id": event.unit_id}
    body["event_id"] = event.event_id
    return json.dumps(body).encode()


def publish_nats(source: NatsSource, messages: list[bytes]) -> None:
    async def send() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        await source.ensure_streams(js)
        for start in range(0, len(messages), 1000):
            chunk = messages[start : start + 1000]
            await asyncio.gather(*(js.publish(source.subject, m) for m in chunk))
        await nc.close()

    asyncio.run(send())


def delete_nats(source: NatsSource) -> None:
    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for name in (source.stream, source.dead_letter_stream):
            await js.delete_stream(name)
        await nc.close()

    asyncio.run(delete())


def publish_redis(source: RedisStreamSource, messages: list[bytes]) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for start in range(0, len(messages), 1000):
        with client.pipeline(transaction=False) as pipe:
            for message in messages[start : start + 1000]:
                pipe.xadd(source.stream, {"event": message})
            pipe.execute()
    client.close()


def applied(source: Source) -> float:
    """Messages the consumers of ``source`` applied and acknowledged: the counter's own value
    (collecting the whole registry every few milliseconds would slow the consumer it times)."""
    counter = STREAM_MESSAGES.labels(source.name, source.stream)
    return float(counter._value.get())  # type: ignore[attr-defined]


def drain(run: ServiceRun, source: Source, count: int) -> float:
    """Seconds one consumer of ``source`` takes to apply ``count`` more messages."""
    target = applied(source) + count
    consumers = ConsumerThreads(run.service, [source])
    started = time.perf_counter()
    consumers.start()
    try:
        while applied(source) < target:
            time.sleep(0.005)
        return time.perf_counter() - started
    finally:
        consumers.stop()


def measure_store(store: str, batches: int, rounds: int) -> list[StreamRow]:
    tag = uuid.uuid4().hex[:8]
    nats_source = NatsSource(
        url=NATS_URL,
        stream=f"BENCH_{tag}",
        subject=f"bench.{tag}",
        durable="bench",
        dead_letter_subject=f"bench.{tag}.dead",
        batch=BATCH,
    )
    redis_source = RedisStreamSource(
        url=REDIS_URL,
        stream=f"abpbench-stream-{tag}",
        group="bench",
        dead_letter_stream=f"abpbench-stream-{tag}:dead",
        batch=BATCH,
    )
    best: dict[str, float] = {}
    with BACKENDS[store]() as (url, options):
        run = ServiceRun(url, options)
        try:
            paths: dict[str, Callable[[int], float]] = {
                "batch intake": lambda n: run.round(n, batches),
                "NATS JetStream": lambda n: stream_round(
                    run, nats_source, lambda m: publish_nats(nats_source, m), n, batches
                ),
                "Redis Streams": lambda n: stream_round(
                    run, redis_source, lambda m: publish_redis(redis_source, m), n, batches
                ),
            }
            for number in range(rounds):
                for path, measure in paths.items():
                    best[path] = max(best.get(path, 0.0), measure(number))
            run.check()
        finally:
            run.close()
            delete_nats(nats_source)
            client = redis.Redis.from_url(REDIS_URL)
            client.delete(redis_source.stream, redis_source.dead_letter_stream)
            client.close()

    reference = best["batch intake"]
    return [StreamRow(store, path, eps, reference) for path, eps in best.items()]


def stream_round(
    run: ServiceRun,
    source: Source,
    publish: Callable[[list[bytes]], None],
    number: int,
    batches: int,
) -> float:
    """Publish ``batches`` batches' events, one per message (not timed), then time draining."""
    tag = f"{source.name}-r{number}"
    events = [e for b in range(batches) for e in batch_events(f"{tag}-b{b}")]
    messages = [as_json(e) for e in events]
    publish(messages)
    elapsed = drain(run, source, len(messages))
    run.sent += batches
    return len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000 per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default=",".join(BACKENDS))
    args = parser.parse_args()
    print(machine_line())
    print(f"{args.rounds} rounds of {args.batches * BATCH:,} events per path; best round each\n")
    print("| store | path | events/s | vs batch intake |")
    print("|---|---|---:|---:|")
    for store in args.stores.split(","):
        for row in measure_store(store.strip(), args.batches, args.rounds):
            print(
                f"| {row.store} | {row.path} | {row.events_per_second:,.0f} | {row.ratio:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
