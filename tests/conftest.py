"""Fixtures shared by the whole suite: one ``store`` fixture over every backend.

PostgreSQL tests get their own schema and Redis tests their own key prefix, removed afterwards.
Without a server those tests are skipped with the reason; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from abpilot.store.base import Store

# No timing assertions: Hypothesis' per-example deadline fails a correct property on a loaded
# machine, so the suite's profile has none (a hang is still caught by the test's own limits).
settings.register_profile("abpilot", deadline=None)
settings.load_profile("abpilot")

POSTGRES_URL = os.environ.get(
    "ABPILOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ABPILOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Every barrier of the concurrency tests has this timeout: a party that never arrives (its
# thread or process failed before the barrier, say on opening its store) breaks the barrier for
# the others (BrokenBarrierError) instead of holding them, and the test, forever.
BARRIER_SECONDS = 120


def _server_missing(name: str, error: Exception) -> None:
    reason = f"{name} is not reachable ({error}); start it to run these tests"
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as error:
        _server_missing("PostgreSQL", error)
    sep = "&" if "?" in POSTGRES_URL else "?"
    # A statement of the test's waits at most TEST_LOCK_TIMEOUT for a lock, then fails with
    # PostgreSQL's "canceling statement due to lock timeout": a lock never released is a
    # failure that names itself, not a run that hangs (no test waits half as long on purpose).
    options = f"-csearch_path%3D{schema}%20-clock_timeout%3D{TEST_LOCK_TIMEOUT}"
    try:
        yield f"{POSTGRES_URL}{sep}options={options}"
    finally:
        _drop_schema(schema)


TEST_LOCK_TIMEOUT = "120s"
# DROP SCHEMA waits for every transaction that touched the schema's tables: one left open by the
# test (a connection it leaked, a thread still blocked) would hold the teardown forever.
DROP_LOCK_TIMEOUT = "60s"


def _drop_schema(schema: str) -> None:
    """Drop a test's schema; if a session holds it past ``DROP_LOCK_TIMEOUT``, end that session,
    drop the schema, and fail the test's teardown naming what held it."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{DROP_LOCK_TIMEOUT}'")
        try:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            return
        except psycopg.errors.LockNotAvailable:
            pass
        holders = conn.execute(
            "SELECT a.pid, a.state, now() - a.state_change, left(a.query, 200) "
            "FROM pg_stat_activity a WHERE a.pid IN (SELECT l.pid FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND l.pid <> pg_backend_pid())",
            (schema,),
        ).fetchall()
        for pid, *_ in holders:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute("SET lock_timeout = 0")
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    raise AssertionError(
        f"schema {schema} was still held {DROP_LOCK_TIMEOUT} after the test (a transaction left "
        f"open); these sessions were ended: {holders}"
    )


def redis_cluster_url() -> str:
    """The URL of this test process's local Redis Cluster (``tests/redis_cluster.py``), started
    on first use; without redis-server, a skip (a failure under CI=true)."""
    from tests.redis_cluster import local_cluster, missing_reason

    reason = missing_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return local_cluster().url


@pytest.fixture(scope="session", autouse=True)
def redis_cluster() -> Iterator[None]:
    """Stops the local Redis Cluster at the end of the session if a test started one."""
    from tests.redis_cluster import stop_local_cluster

    yield
    stop_local_cluster()


@contextlib.contextmanager
def redis_prefix(url: str = REDIS_URL) -> Iterator[str]:
    """A fresh key prefix on the Redis server (or cluster) at ``url``; its keys are deleted
    afterwards."""
    import redis

    from abpilot.store.redis.cluster import connect_cluster, is_cluster_url

    prefix = f"abptest-{uuid.uuid4().hex[:12]}"
    client = (
        connect_cluster(url, socket_connect_timeout=3)
        if is_cluster_url(url)
        else redis.Redis.from_url(url, socket_connect_timeout=3)
    )
    try:
        client.ping()
    except redis.RedisError as error:
        _server_missing("Redis", error)
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


# ABPILOT_TEST_BACKENDS=redis-cluster (comma-separated) runs the store suites on other backends
# than the default four: .ci/run runs the contract suite on a local Redis Cluster that way.
BACKENDS = [
    b.strip()
    for b in os.environ.get("ABPILOT_TEST_BACKENDS", "memory,sqlite,postgres,redis").split(",")
    if b.strip()
]
# Those several processes can share (the store races and concurrency tests), and those behind a
# server (the reliability tests).
SHARED_BACKENDS = [b for b in BACKENDS if b != "memory"]
SERVER_BACKENDS = [b for b in BACKENDS if b not in {"memory", "sqlite"}]


@contextlib.contextmanager
def backend_url(backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(url, options) of a fresh, isolated store of ``backend``."""
    if backend == "memory":
        yield "memory://", {}
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'abpilot.db'}", {}
    elif backend == "postgres":
        with postgres_schema_url() as url:
            yield url, {}
    elif backend == "redis-cluster":
        url = redis_cluster_url()
        with redis_prefix(url) as prefix:
            yield url, {"prefix": prefix}
    else:
        with redis_prefix() as prefix:
            yield REDIS_URL, {"prefix": prefix}


StoreFactory = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens clients of one isolated store of each backend.

    Calling it twice gives two clients of the same data, as two workers would have (memory has
    no second client, so it returns the same object).
    """
    from abpilot.store.factory import open_store

    opened: list[Store] = []
    with backend_url(request.param, tmp_path) as (url, options):
        shared = open_store(url, **options) if request.param == "memory" else None

        def factory() -> Store:
            if shared is not None:
                return shared
            store = open_store(url, **options)
            opened.append(store)
            return store

        yield factory
        for store in opened:
            store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that drives a real browser (it takes the ``browser`` fixture, Chromium through
    Playwright) is ``extended``: the README's command leaves it to ``.ci/run``'s extended stage
    (``-m extended``). Runs before ``-m`` selects, so the mark counts there."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.extended)
