"""What the benchmarks share: the machine and versions they print, and throwaway stores.

Every store a benchmark touches is its own: a SQLite file in a temporary folder, a fresh
PostgreSQL schema (dropped afterwards) or a fresh Redis key prefix (its keys deleted afterwards).
Nothing is left in the ``public`` schema or under the service's default ``abp`` prefix.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

POSTGRES_URL = os.environ.get(
    "ABPILOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ABPILOT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

StoreUrl = tuple[str, dict[str, Any]]
"""A store URL and the options ``abpilot.open`` needs with it (``prefix`` for Redis)."""


# machine and versions ---------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB RAM"
    return "RAM unknown"


def os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    return f"{platform.system()} {platform.release()}"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def postgres_version() -> str | None:
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    return None


def redis_version() -> str | None:
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    return None


def server_versions() -> str:
    """PostgreSQL and Redis server versions, where reachable."""
    found = []
    if (pg := postgres_version()) is not None:
        found.append(f"PostgreSQL {pg}")
    if (rd := redis_version()) is not None:
        found.append(f"Redis {rd}")
    return ", ".join(found) or "none reachable"


def machine_line() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.system()} {platform.machine()}; CPU: {cpu_model()} "
        f"({os.cpu_count()} logical CPUs)"
    )


# throwaway stores -------------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_url() -> Iterator[StoreUrl]:
    folder = tempfile.mkdtemp(prefix="abpilot-bench-")
    try:
        yield f"sqlite:///{folder}/bench.db", {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_schema() -> Iterator[tuple[str, str]]:
    """A fresh schema: yields (URL whose search_path is that schema, schema name); dropped after."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}", schema
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextlib.contextmanager
def postgres_url() -> Iterator[StoreUrl]:
    with postgres_schema() as (url, _schema):
        yield url, {}


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    import redis

    prefix = f"abpbench-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    client.ping()
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
        for start in range(0, len(keys), 10_000):
            client.delete(*keys[start : start + 10_000])
        client.close()


@contextlib.contextmanager
def redis_url() -> Iterator[StoreUrl]:
    with redis_prefix() as prefix:
        yield REDIS_URL, {"prefix": prefix}


BACKENDS: dict[str, Callable[[], contextlib.AbstractContextManager[StoreUrl]]] = {
    "SQLite": sqlite_url,
    "PostgreSQL": postgres_url,
    "Redis": redis_url,
}
"""Each backend's throwaway store, by the name the tables print."""


def server_environment(url: str, options: dict[str, Any]) -> dict[str, str]:
    """The environment that points ``abpilot serve`` (or the benchmark server) at a store."""
    if url.startswith("redis"):
        return {"STORE": "redis", "REDIS_URL": url, "REDIS_PREFIX": options["prefix"]}
    return {"STORE": "sql", "DATABASE_URL": url}
