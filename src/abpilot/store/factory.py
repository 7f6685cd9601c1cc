"""Open a store from a URL: ``sqlite:///path``, ``postgresql://...``, ``redis://...``,
``redis+cluster://host:port`` (a Redis Cluster), ``memory://``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.store.base import Store

# The options each kind of store takes (anything else is refused before a connection is made:
# redis-py would only fail on first use). ``migrate`` is accepted by every store (SQL only
# acts on it), so a caller need not know which kind of store a URL names; so is
# ``event_id_retention_days`` (the dedupe window, ``abpilot.store.event_ids``; 0 by default:
# keep every event id forever).
COMMON_OPTIONS = frozenset({"migrate", "event_id_retention_days"})
SQL_OPTIONS = COMMON_OPTIONS | frozenset(
    {
        "echo",
        "pool_size",
        "max_overflow",
        "pool_timeout",
        "pool_recycle",
        "pool_pre_ping",
        "connect_args",
    }
)
REDIS_OPTIONS = COMMON_OPTIONS | frozenset(
    {
        "prefix",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "max_connections",
        "retry_on_timeout",
        "client_name",
        "username",
        "password",
        "wait_replicas",
        "wait_timeout_ms",
    }
)
MEMORY_OPTIONS = COMMON_OPTIONS
# ``redis+cluster://host:port`` (any node of a Redis Cluster) opens it through RedisCluster.
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower()


def store_options(url: str) -> frozenset[str]:
    """The options ``open_store`` takes for a store at ``url``."""
    scheme = _scheme(url)
    if scheme == "memory":
        return MEMORY_OPTIONS
    if scheme in REDIS_SCHEMES:
        return REDIS_OPTIONS
    if scheme.startswith(("sqlite", "postgresql", "postgres")):
        return SQL_OPTIONS
    raise ValidationError(
        f"unsupported store URL scheme '{scheme}' (use sqlite:///, postgresql://, redis://, "
        "redis+cluster:// or memory://)",
        field="url",
    )


def check_options(
    url: str, options: Mapping[str, Any], *, caller: str, also: Iterable[str] = ()
) -> None:
    """Refuse an option the store at ``url`` (or the caller, ``also``) does not take, with a
    TypeError naming it and listing the accepted ones (and the likeliest meant)."""
    accepted = sorted(store_options(url) | set(also))
    unknown = sorted(set(options) - set(accepted))
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0].removeprefix("key_"), accepted, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise TypeError(
        f"{caller} got an unexpected option {', '.join(map(repr, unknown))} for a "
        f"{_scheme(url)}:// store{hint}; accepted: {', '.join(accepted)}"
    )


def open_store(url: str, **options: Any) -> Store:
    """Return the store for ``url``. SQL stores are migrated to the latest schema on open
    unless ``migrate=False`` is passed. Options a store does not take are a TypeError."""
    check_options(url, options, caller="open_store()")
    scheme = _scheme(url)
    if scheme == "memory":
        from abpilot.store.memory import MemoryStore

        return MemoryStore(event_id_retention_days=options.get("event_id_retention_days", 0))
    if scheme in REDIS_SCHEMES:
        from abpilot.store.redis import RedisStore

        return RedisStore.from_url(url, **options)
    from abpilot.store.sql import SqlStore

    return SqlStore.from_url(url, **options)
