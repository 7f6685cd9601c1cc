"""Redis Cluster support: connecting, and reading several experiments' keys in one snapshot each.

On a Redis Cluster every script and every MULTI/EXEC must touch one hash slot. An experiment's
keys share its hash tag ``{<id>}``, so everything about one experiment still happens in one
atomic step; what spans experiments is split per slot (see ``docs/architecture.md`` §Redis
Cluster). The definitions and the two indexes move under one global tag on a cluster (see
``RedisKeys``), so creating, changing and deleting a definition stays one script.

A URL ``redis+cluster://host:port`` (or ``rediss+cluster://``) names a cluster by any of its
nodes; redis-py's ``RedisCluster`` discovers the rest and follows MOVED and ASK redirections
(a resharding), retrying on TRYAGAIN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from abpilot.domain.errors import StoreUnavailable

CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})


def is_cluster_url(url: str) -> bool:
    return url.split(":", 1)[0].lower() in CLUSTER_SCHEMES


def connect_cluster(url: str, **options: Any) -> RedisCluster:
    """A ``RedisCluster`` client for ``redis+cluster://...``; it reads the slot map at once, so
    an unreachable cluster is ``StoreUnavailable`` here (one server is connected lazily)."""
    scheme, rest = url.split(":", 1)
    plain = f"{scheme.lower().removesuffix('+cluster')}:{rest}"
    # redis-py's cluster client takes no database number (a cluster has only database 0).
    options.pop("db", None)
    try:  # RedisCluster asks a node for the slot map at once
        return RedisCluster.from_url(plain, **options)
    except (RedisClusterException, redis.RedisError) as error:
        where = plain.rsplit("@", 1)[-1].split("//", 1)[-1]  # no password
        raise StoreUnavailable(f"Redis Cluster at {where} cannot be reached: {error}") from error


def location(client: redis.Redis | RedisCluster) -> str:
    """Where ``client`` connects, for messages (never with a password)."""
    if isinstance(client, RedisCluster):
        nodes = sorted(str(name) for name in client.nodes_manager.startup_nodes)
        return f"Redis Cluster {','.join(nodes)}"
    kwargs = client.get_connection_kwargs()
    return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")


class SlotTransactions:
    """A stand-in for ``pipeline(transaction=True)`` on a cluster: commands are queued as on a
    pipeline (``pipe.hgetall(key)``...), and ``execute`` runs those of each hash slot as one
    MULTI/EXEC (one consistent snapshot per experiment, not across experiments), answering in
    the order queued. The first argument of every command queued must be its key."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., SlotTransactions]:
        def queue(*args: Any, **kwargs: Any) -> SlotTransactions:
            self._queued.append((name, args, kwargs))
            return self

        return queue

    def execute(self) -> list[Any]:
        by_slot: dict[int, list[int]] = {}
        for n, (_, args, _) in enumerate(self._queued):
            by_slot.setdefault(key_slot(str(args[0]).encode()), []).append(n)
        replies: list[Any] = [None] * len(self._queued)
        for positions in by_slot.values():
            pipe = self._client.pipeline(transaction=True)  # type: ignore[no-untyped-call]
            for n in positions:
                name, args, kwargs = self._queued[n]
                getattr(pipe, name)(*args, **kwargs)
            for n, reply in zip(positions, pipe.execute(), strict=True):
                replies[n] = reply
        self._queued.clear()
        return replies


def snapshot_pipeline(client: redis.Redis | RedisCluster) -> Any:
    """A pipeline whose commands run as one MULTI/EXEC on one server, or as one per hash slot
    (per experiment) on a cluster."""
    if isinstance(client, RedisCluster):
        return SlotTransactions(client)
    return client.pipeline(transaction=True)
