"""Batch event intake through the service, next to each store's own upsert ceiling.

Workload, the same for every store: batches of 1,000 events, each 800 exposures of new units and
200 conversions of units exposed earlier in the same batch, every event with its own
``event_id`` (the exactly-once path retrying clients use). They go in-process through
``service.record_events(batch)`` (what ``POST /api/v1/events`` calls): validation, the stored
assignment of each unit, the event-id claims and the counters, in one transaction (SQL) or one
Lua script (Redis) per batch. Batches are built before the clock starts.

References, in the same run, on the same server, with the same batch size:

* SQLite: a raw ``sqlite3`` loop on its own file, with the pragmas abpilot's engine sets
  (WAL, ``synchronous=NORMAL``): per batch ``BEGIN IMMEDIATE``, ``executemany`` of
  ``INSERT INTO counters VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1`` keyed by each
  event's unit (800 inserts, 200 updates), ``COMMIT``;
* PostgreSQL: the same upsert through psycopg 3 ``executemany`` (which pipelines the statements)
  in one transaction per batch, in a table of a fresh schema (pgbench-style);
* Redis: ``redis-benchmark -P 64 HINCRBY <prefix>:ceiling f 1`` (50 clients, pipelines of 64), the
  server's own ceiling for the command abpilot's counters use; and, as a second reference, redis-py
  pipelines of 1,000 ``HINCRBY`` (the same keys as the SQL loops), what one Python client can push.

``vs ceiling`` divides the service's events/s by the reference's upserts/s (1.0x would mean the
service counts events as fast as the store can take bare single-row upserts). The service does
more per event than one upsert (the event-id claim, the unit's assignment and exposure marks, the
counters), but aggregates counters per batch. Rounds alternate service and reference; each figure
is the best round.

The store rows run with ids kept forever (``event_id_retention_days=0``, ``abpilot.open``'s
default). ``measure_window`` sets the dedupe window the server uses by default (7 days) next to
that, on Redis, where it changes the claim most (the window's day sets are checked instead of one
set): two services on two fresh prefixes, alternating rounds, the same batches.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import abpilot
from abpilot.service import EventInput
from abpilot.store.base import EventKind
from benchmarks.common import BACKENDS, REDIS_URL, postgres_schema

BATCH = 1_000
EXPOSURES_PER_BATCH = 800
EXPERIMENT_KEY = "intake-bench"
T = TypeVar("T")
UPSERT = (
    "INSERT INTO counters (k, n) VALUES ({p}, 1) ON CONFLICT (k) DO UPDATE SET n = counters.n + 1"
)


@dataclass(frozen=True, slots=True)
class IntakeRow:
    store: str
    service: float | None = None
    """Events per second through ``service.record_events``."""
    ceiling: float | None = None
    ceiling_label: str = ""
    python_client: float | None = None
    """Redis only: redis-py pipelined HINCRBY per second."""
    note: str = ""


def batch_events(tag: str, key: str = EXPERIMENT_KEY) -> list[EventInput]:
    units = [f"{tag}-{j}" for j in range(EXPOSURES_PER_BATCH)]
    events = [EventInput(EventKind.EXPOSURE, key, unit_id=u, event_id=f"x-{u}") for u in units]
    events += [
        EventInput(EventKind.CONVERSION, key, unit_id=u, event_id=f"c-{u}")
        for u in units[: BATCH - EXPOSURES_PER_BATCH]
    ]
    return events


def batch_keys(tag: str) -> list[str]:
    """The upsert keys of a batch: each event's unit, as in ``batch_events``."""
    units = [f"{tag}-{j}" for j in range(EXPOSURES_PER_BATCH)]
    return units + units[: BATCH - EXPOSURES_PER_BATCH]


def timed(batches: Sequence[T], apply: Callable[[T], object]) -> float:
    started = time.perf_counter()
    for batch in batches:
        apply(batch)
    return time.perf_counter() - started


# the service ------------------------------------------------------------------------------------


class ServiceRun:
    """One store's service with a running experiment; ``round`` sends fresh batches, timed."""

    def __init__(self, url: str, options: dict[str, str], retention_days: int = 0) -> None:
        self.service = abpilot.open(url, **options, event_id_retention_days=retention_days)
        self.service.create_experiment(
            key=EXPERIMENT_KEY,
            variants=[{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
            metrics=[{"key": "conversion"}],
        )
        self.service.start_experiment(EXPERIMENT_KEY)
        self.service.record_events(batch_events("warm-up"))
        self.sent = 1

    def round(self, number: int, batches: int) -> float:
        prepared = [batch_events(f"r{number}-b{b}") for b in range(batches)]
        elapsed = timed(prepared, self.service.record_events)
        self.sent += batches
        return batches * BATCH / elapsed

    def check(self) -> None:
        exposures = sum(v.exposures for v in self.service.get_metrics(EXPERIMENT_KEY).variants)
        if exposures != self.sent * EXPOSURES_PER_BATCH:
            sent = self.sent * EXPOSURES_PER_BATCH
            raise RuntimeError(f"counted {exposures} exposures, sent {sent}")

    def close(self) -> None:
        self.service.store.close()


# the references ---------------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_ceiling() -> Iterator[Callable[[int, int], float]]:
    folder = tempfile.mkdtemp(prefix="abpilot-bench-ceiling-")
    conn = sqlite3.connect(Path(folder) / "ceiling.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE counters (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    statement = UPSERT.format(p="?")

    def apply(keys: list[str]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(statement, ((k,) for k in keys))
        conn.execute("COMMIT")

    def run(number: int, batches: int) -> float:
        prepared = [batch_keys(f"r{number}-b{b}") for b in range(batches)]
        return batches * BATCH / timed(prepared, apply)

    try:
        yield run
    finally:
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_ceiling() -> Iterator[Callable[[int, int], float]]:
    import psycopg

    with postgres_schema() as (url, _schema), psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE counters (k text PRIMARY KEY, n bigint NOT NULL)")
        conn.commit()
        statement = UPSERT.format(p="%s")

        def apply(keys: list[str]) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(statement, [(k,) for k in keys])
            conn.commit()

        def run(number: int, batches: int) -> float:
            prepared = [batch_keys(f"r{number}-b{b}") for b in range(batches)]
            return batches * BATCH / timed(prepared, apply)

        yield run


def redis_benchmark(prefix: str, requests: int) -> float:
    """``redis-benchmark`` requests per second of pipelined HINCRBY on one key of ``prefix``."""
    executable = shutil.which("redis-benchmark")
    if executable is None:
        raise RuntimeError("redis-benchmark is not installed (it ships with redis-server)")
    parts = urlsplit(REDIS_URL)
    command = [
        executable,
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 6379),
        "-n",
        str(requests),
        "-P",
        "64",
        "-q",
        "HINCRBY",
        f"{prefix}:ceiling",
        "f",
        "1",
    ]
    if parts.path.strip("/"):
        command[1:1] = ["--dbnum", parts.path.strip("/")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    # "HINCRBY ...: 512820.53 requests per second, p50=..." (after \r-separated progress lines)
    found = re.findall(r"([\d.]+) requests per second", done.stdout)
    if not found:
        raise RuntimeError(f"unexpected redis-benchmark output: {done.stdout[-300:]!r}")
    return float(found[-1])


@contextlib.contextmanager
def redis_client_ceiling(prefix: str) -> Iterator[Callable[[int, int], float]]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    key = f"{prefix}:client-ceiling"

    def apply(keys: list[str]) -> None:
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hincrby(key, k, 1)
        pipe.execute()

    def run(number: int, batches: int) -> float:
        prepared = [batch_keys(f"r{number}-b{b}") for b in range(batches)]
        return batches * BATCH / timed(prepared, apply)

    try:
        yield run
    finally:
        client.close()


# the table rows ---------------------------------------------------------------------------------


def measure_store(store: str, batches: int, rounds: int, redis_requests: int) -> IntakeRow:
    try:
        with contextlib.ExitStack() as stack:
            try:
                url, options = stack.enter_context(BACKENDS[store]())
            except Exception as error:  # a server out of reach skips the row
                return IntakeRow(store, note=f"skipped: {type(error).__name__}: {error}")
            run = ServiceRun(url, options)
            stack.callback(run.close)
            service_rates: list[float] = []
            ceiling_rates: list[float] = []
            client_rates: list[float] = []
            if store == "SQLite":
                ceiling = stack.enter_context(sqlite_ceiling())
                label = "raw sqlite3 upsert loop"
            elif store == "PostgreSQL":
                ceiling = stack.enter_context(postgres_ceiling())
                label = "psycopg executemany upsert loop"
            else:
                prefix = options["prefix"]
                client = stack.enter_context(redis_client_ceiling(prefix))
                label = "redis-benchmark -P 64 HINCRBY"

                def ceiling(_number: int, _batches: int) -> float:
                    return redis_benchmark(prefix, redis_requests)

            for number in range(rounds):
                service_rates.append(run.round(number, batches))
                ceiling_rates.append(ceiling(number, batches))
                if store == "Redis":
                    client_rates.append(client(number, batches))
            run.check()
    except Exception as error:  # any failure is reported in the store's row
        return IntakeRow(store, note=f"error: {type(error).__name__}: {error}")
    return IntakeRow(
        store,
        max(service_rates),
        max(ceiling_rates),
        label,
        max(client_rates) if client_rates else None,
    )


def measure_all(batches: int, rounds: int, redis_requests: int) -> list[IntakeRow]:
    return [measure_store(store, batches, rounds, redis_requests) for store in BACKENDS]


WINDOW_DAYS = 7  # the server's default EVENT_ID_RETENTION_DAYS


def measure_window(batches: int, rounds: int) -> tuple[float, float] | str:
    """Redis batch intake (events/s) with the default dedupe window and with ids kept forever,
    alternating rounds; or why it was skipped."""
    try:
        with contextlib.ExitStack() as stack:
            windowed_url, windowed_options = stack.enter_context(BACKENDS["Redis"]())
            forever_url, forever_options = stack.enter_context(BACKENDS["Redis"]())
            windowed = ServiceRun(windowed_url, windowed_options, WINDOW_DAYS)
            stack.callback(windowed.close)
            forever = ServiceRun(forever_url, forever_options, 0)
            stack.callback(forever.close)
            rates: tuple[list[float], list[float]] = ([], [])
            for number in range(rounds):
                rates[0].append(windowed.round(number, batches))
                rates[1].append(forever.round(number, batches))
            windowed.check()
            forever.check()
    except Exception as error:  # a server out of reach (or a failure) skips the row
        return f"skipped: {type(error).__name__}: {error}"
    return max(rates[0]), max(rates[1])


# hot rows on PostgreSQL -------------------------------------------------------------------------

HOT_SECONDS = 5.0


def _hot_worker(url: str, key: str, tag: str, single: bool, ready: Any, out: Any) -> None:
    """One process: a warm-up batch, then (once every worker is ready) ``HOT_SECONDS`` of
    batches of ``batch_events`` (or single exposures of new units, each its own
    ``record_exposure``) into experiment ``key``; puts the events it counted on ``out``."""
    service = abpilot.open(url)
    service.record_events(batch_events(f"{tag}-warm-up", key))
    sent, number = 0, 0
    ready.wait()
    stop = time.perf_counter() + HOT_SECONDS
    try:
        while time.perf_counter() < stop:
            if single:
                for j in range(20):
                    unit = f"{tag}-{number}-{j}"
                    service.record_exposure(experiment=key, unit_id=unit, event_id=f"x-{unit}")
                sent += 20
            else:
                service.record_events(batch_events(f"{tag}-{number}", key))
                sent += BATCH
            number += 1
    finally:
        service.store.close()
    out.put(sent)


def measure_hot_rows(workers: int, *, shared: bool, single: bool) -> float:
    """Events/s of ``workers`` processes counting into one experiment (``shared``: every batch
    adds to the same variant and metric counter rows) or one experiment each (no row in
    common), on a fresh PostgreSQL schema. A batch still running at the end is counted whole,
    so the rate is slightly high for few long batches."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with BACKENDS["PostgreSQL"]() as (url, _options):
        keys = [EXPERIMENT_KEY if shared else f"{EXPERIMENT_KEY}-{w}" for w in range(workers)]
        setup = abpilot.open(url)
        for key in sorted(set(keys)):
            setup.create_experiment(
                key=key,
                variants=[{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
                metrics=[{"key": "conversion"}],
            )
            setup.start_experiment(key)
        setup.store.close()
        ready, out = context.Barrier(workers), context.Queue()
        processes = [
            context.Process(target=_hot_worker, args=(url, keys[w], f"w{w}", single, ready, out))
            for w in range(workers)
        ]
        for process in processes:
            process.start()
        sent = [out.get(timeout=300) for _ in processes]
        for process in processes:
            process.join()
    return sum(sent) / HOT_SECONDS
