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

A third reference does the same writes as the service, by hand (``same_writes``): on the same
database (SQLite file, PostgreSQL schema, Redis server) and for a second experiment of the same
service, per batch and in one transaction (SQL) or one pipeline (Redis), the rows a batch adds:
1,000 event-id claims, 800 assignments, 800 exposed units, 200 units' conversion totals and the
variants' and metric's counters (4 upserts, summed per batch as the service sums them), through
the driver's ``executemany`` (sqlite3, psycopg) or redis-py's pipeline (one command per row:
``SADD``, ``HSETNX``, ``SADD``, ``HINCRBYFLOAT``, ``HINCRBY``). It computes nothing: variants
alternate, no hash; it reads nothing back (the service learns which ids, assignments and units
were new, and counts only those). It is the work no implementation of the same counting can skip,
so ``vs same writes`` tells how much the service adds to the store's own writes.

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
from datetime import UTC, datetime
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
    same_writes: float | None = None
    """Events per second of the batches' writes done by hand (``same_writes``)."""


def batch_units(tag: str) -> list[str]:
    """The units a batch exposes (the first ``BATCH - EXPOSURES_PER_BATCH`` also convert)."""
    return [f"{tag}-{j}" for j in range(EXPOSURES_PER_BATCH)]


def batch_events(tag: str, key: str = EXPERIMENT_KEY) -> list[EventInput]:
    units = batch_units(tag)
    events = [EventInput(EventKind.EXPOSURE, key, unit_id=u, event_id=f"x-{u}") for u in units]
    events += [
        EventInput(EventKind.CONVERSION, key, unit_id=u, event_id=f"c-{u}")
        for u in units[: BATCH - EXPOSURES_PER_BATCH]
    ]
    return events


def batch_keys(tag: str) -> list[str]:
    """The upsert keys of a batch: each event's unit, as in ``batch_events``."""
    units = batch_units(tag)
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


# the same writes, by hand -----------------------------------------------------------------------

SQL_SAME_WRITES = (
    "INSERT INTO processed_events (experiment_id, event_id, processed_at) VALUES ({m}, {m}, {m}) "
    "ON CONFLICT DO NOTHING",
    "INSERT INTO assignments (experiment_id, unit_id, variant, period, assigned_at) "
    "VALUES ({m}, {m}, {m}, 0, {m}) ON CONFLICT DO NOTHING",
    "INSERT INTO exposed_units (experiment_id, unit_id) VALUES ({m}, {m}) ON CONFLICT DO NOTHING",
    "INSERT INTO unit_metrics (experiment_id, unit_id, metric, count, total) "
    "VALUES ({m}, {m}, 'conversion', 1, 1.0) ON CONFLICT (experiment_id, unit_id, metric) "
    "DO UPDATE SET count = unit_metrics.count + 1, total = unit_metrics.total + 1.0",
    "INSERT INTO variant_counters (experiment_id, variant, period, assigned_units, exposures, "
    "unique_units, last_event_at) VALUES ({m}, {m}, 0, {m}, {m}, {m}, {m}) "
    "ON CONFLICT (experiment_id, variant, period) DO UPDATE SET "
    "assigned_units = variant_counters.assigned_units + excluded.assigned_units, "
    "exposures = variant_counters.exposures + excluded.exposures, "
    "unique_units = variant_counters.unique_units + excluded.unique_units, "
    "last_event_at = excluded.last_event_at",
    "INSERT INTO metric_counters (experiment_id, variant, period, metric, count, units, sum, "
    "sum_squares, last_event_at) VALUES ({m}, {m}, 0, 'conversion', {m}, {m}, {m}, {m}, {m}) "
    "ON CONFLICT (experiment_id, variant, period, metric) DO UPDATE SET "
    "count = metric_counters.count + excluded.count, "
    "units = metric_counters.units + excluded.units, sum = metric_counters.sum + excluded.sum, "
    "sum_squares = metric_counters.sum_squares + excluded.sum_squares, "
    "last_event_at = excluded.last_event_at",
)
VARIANTS = ("control", "treatment")


def same_rows(experiment_id: str, tag: str, at: object) -> tuple[list[tuple[object, ...]], ...]:
    """The rows one batch of ``batch_events(tag)`` adds, per statement of ``SQL_SAME_WRITES``."""
    units = batch_units(tag)
    converted = units[: BATCH - EXPOSURES_PER_BATCH]
    e = experiment_id
    claims = [(e, f"x-{u}", at) for u in units] + [(e, f"c-{u}", at) for u in converted]
    half = EXPOSURES_PER_BATCH // 2
    return (
        claims,
        [(e, u, VARIANTS[j % 2], at) for j, u in enumerate(units)],
        [(e, u) for u in units],
        [(e, u) for u in converted],
        [(e, v, half, half, half, at) for v in VARIANTS],
        [(e, v, len(converted) // 2, len(converted) // 2, 100.0, 100.0, at) for v in VARIANTS],
    )


def _reference_experiment(run: ServiceRun) -> str:
    """A second running experiment of the service, for a reference's rows."""
    created = run.service.create_experiment(
        key=f"{EXPERIMENT_KEY}-by-hand",
        variants=[{"key": v, "weight": 0.5} for v in VARIANTS],
        metrics=[{"key": "conversion"}],
    )
    return created.id


@contextlib.contextmanager
def same_writes(
    store: str, url: str, options: dict[str, Any], run: ServiceRun
) -> Iterator[Callable[[int, int], float]]:
    """``run(number, batches)``: events/s of the batches' writes done by hand (the module's
    docstring), on the database or server of ``url``."""
    experiment_id = _reference_experiment(run)

    def rate(apply: Callable[[str], None], number: int, batches: int) -> float:
        return batches * BATCH / timed([f"h{number}-b{b}" for b in range(batches)], apply)

    if store == "SQLite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        statements = [sql.format(m="?") for sql in SQL_SAME_WRITES]
        at = "2026-01-01 00:00:00.000000"

        def apply_sqlite(tag: str) -> None:
            conn.execute("BEGIN IMMEDIATE")
            for sql, rows in zip(statements, same_rows(experiment_id, tag, at), strict=True):
                conn.executemany(sql, rows)
            conn.execute("COMMIT")

        try:
            yield lambda number, batches: rate(apply_sqlite, number, batches)
        finally:
            conn.close()
    elif store == "PostgreSQL":
        import psycopg

        statements = [sql.format(m="%s") for sql in SQL_SAME_WRITES]
        moment = datetime.now(UTC)
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as pg:

            def apply_postgres(tag: str) -> None:
                with pg.cursor() as cursor:
                    for sql, rows in zip(
                        statements, same_rows(experiment_id, tag, moment), strict=True
                    ):
                        cursor.executemany(sql, rows)
                pg.commit()

            yield lambda number, batches: rate(apply_postgres, number, batches)
    else:
        import redis

        client = redis.Redis.from_url(url)
        names = ("ids", "assigned", "exposed", "totals", "counters")
        keys = {name: f"{options['prefix']}:{{{experiment_id}}}:by-hand:{name}" for name in names}

        def apply_redis(tag: str) -> None:
            claims, assigned, exposed, converted, variants, metrics = same_rows(
                experiment_id, tag, 0
            )
            pipe = client.pipeline(transaction=True)
            for _e, event_id, _at in claims:
                pipe.sadd(keys["ids"], event_id)
            for _e, unit, variant, _at in assigned:
                pipe.hsetnx(keys["assigned"], unit, variant)
            for _e, unit in exposed:
                pipe.sadd(keys["exposed"], unit)
            for _e, unit in converted:
                pipe.hincrbyfloat(keys["totals"], f"{unit}|conversion", 1.0)
            for _e, variant, assigned_units, exposures, unique_units, _at in variants:
                pipe.hincrby(keys["counters"], f"{variant}|assigned", assigned_units)
                pipe.hincrby(keys["counters"], f"{variant}|exposures", exposures)
                pipe.hincrby(keys["counters"], f"{variant}|units", unique_units)
            for _e, variant, count, units, total, squares, _at in metrics:
                pipe.hincrby(keys["counters"], f"{variant}|conversion|count", count)
                pipe.hincrby(keys["counters"], f"{variant}|conversion|units", units)
                pipe.hincrbyfloat(keys["counters"], f"{variant}|conversion|sum", total)
                pipe.hincrbyfloat(keys["counters"], f"{variant}|conversion|squares", squares)
            pipe.execute()

        try:
            yield lambda number, batches: rate(apply_redis, number, batches)
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

            by_hand = stack.enter_context(same_writes(store, url, options, run))
            same_rates: list[float] = []
            for number in range(rounds):
                service_rates.append(run.round(number, batches))
                ceiling_rates.append(ceiling(number, batches))
                same_rates.append(by_hand(number, batches))
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
        same_writes=max(same_rates),
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
