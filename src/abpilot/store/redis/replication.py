"""Waiting for replicas: the event path's script followed by ``WAIT`` on the same connection.

Redis replicates asynchronously, so a master that fails right after acknowledging a write can
lose it when its replica takes over. ``WAIT n timeout`` blocks until ``n`` replicas have every
write the *same connection* made, so the script and the ``WAIT`` go out in one pipeline on one
connection: the server's own for one Redis, the slot owner's for a Redis Cluster (where redis-py
would send a key-less ``WAIT`` to any node). On a cluster this module follows MOVED (refreshing
the slot map), ASK (``ASKING`` first, on the node named) and TRYAGAIN itself.

``WAIT`` narrows the window, it does not close it: a failover can still promote a replica that
missed the write when fewer than ``n`` acknowledged within the timeout (the store logs it), and
Redis documents that ``WAIT`` does not make Redis strongly consistent.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

REDIRECTIONS = 25


def run_and_wait(
    client: redis.Redis | RedisCluster,
    script: str,
    sha: str,
    keys: list[str],
    args: list[str],
    *,
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """EVALSHA ``sha`` (``script`` loaded when missing) on ``keys`` and ``args``, then ``WAIT
    replicas timeout_ms`` on the same connection: the script's reply and how many replicas
    acknowledged."""
    node: Any = None
    asking = False
    for attempt in range(REDIRECTIONS):
        if isinstance(client, RedisCluster):
            if node is None:
                node = client.get_node_from_key(keys[0])  # type: ignore[no-untyped-call]
            target: redis.Redis = client.get_redis_connection(node)
        else:
            target = client
        pipe = target.pipeline(transaction=False)
        if asking:
            pipe.execute_command("ASKING")  # type: ignore[no-untyped-call]
        pipe.evalsha(sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
        try:
            replies = pipe.execute()
        except redis.exceptions.NoScriptError:
            client.script_load(script)  # on a cluster: on every primary
            continue
        except redis.exceptions.AskError as error:  # the slot is moving: ask its new node once
            assert isinstance(client, RedisCluster)
            node, asking = client.get_node(host=error.host, port=error.port), True  # type: ignore[no-untyped-call]
            continue
        except redis.exceptions.MovedError:  # the slot moved: refresh the map, ask its owner
            assert isinstance(client, RedisCluster)
            client.nodes_manager.initialize()
            node, asking = None, False
            continue
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # The node is gone (a failover may be under way): learn the slot map again for the
            # next call, which the caller makes after a 503 (the event ids make it safe).
            if isinstance(client, RedisCluster):
                with contextlib.suppress(redis.RedisError, RedisClusterException):
                    client.nodes_manager.initialize()
            raise
        except redis.exceptions.TryAgainError:  # keys split between two nodes: nothing ran
            node, asking = None, False
            time.sleep(min(0.5, 0.02 * 2**attempt))
            continue
        return replies[-2], int(replies[-1])
    raise redis.exceptions.ClusterError(
        f"the slot of {keys[0]} kept moving ({REDIRECTIONS} redirections)"
    )
