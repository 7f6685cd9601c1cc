"""Redis store: shared state for many workers and hosts, every change made by one Lua script.

Key layout (``p`` is the prefix, ``abp`` by default). Everything recorded for one experiment lives
under the hash tag ``{<experiment id>}`` so that, on Redis Cluster, it sits on one shard and a
script can touch all of it:

- ``p:{id}:def``       hash ``doc`` (experiment JSON, see codec), ``version``, ``key``
- ``p:{id}:assign``    hash unit id -> ``<variant>|<period>`` (first one wins, with its period)
- ``p:{id}:exposed``   set of unit ids exposed at least once
- ``p:{id}:counters``  hash ``<variant>|<period>|assigned_units``, ``|exposures``,
                       ``|unique_units`` -> integer
- ``p:{id}:metrics``   hash ``<variant>|<period>|<metric>|count``, ``|units``, ``|sum``,
                       ``|sum_squares``
- ``p:{id}:units``     hash ``c|<metric>|<unit id>`` -> conversions of that unit and
                       ``t|<metric>|<unit id>`` -> its running total (unit id last: unambiguous)
- ``p:{id}:events``    set of processed event ids (with a dedupe window, those claimed before
                       it was set)
- ``p:{id}:events:<day>``, ``p:{id}:event_days``: with a dedupe window, the ids claimed on each
                       UTC day (expiring) and the days that have a set: see ``event_ids``
- ``p:{id}:activity``  microseconds since the epoch (UTC) at which the last counted event was
                       received: only ever moved forward, by the commit script
- ``p:{id}:daily``, ``p:{id}:raw``, ``p:{id}:allocations``: see ``history``
- ``p:{id}:decisions``, ``p:{id}:decision_counts``, ``p:{id}:decision_times``,
  ``p:{id}:feedback``, ``p:{id}:states``, ``p:{id}:unit_decisions`` (contextual bandits): see
  ``contextual``

Global keys, outside any tag: ``p:index:keys`` (hash experiment key -> id), ``p:index:ids``
(sorted set of ids scored by ``created_at``) and leases ``p:lease:<name>``. On a Redis Cluster
the definitions and both indexes share the global tag ``{index}`` instead (``p:{index}:def:<id>``,
``p:{index}:keys``, ``p:{index}:ids``), so the create, update and delete scripts still touch one
slot; what then spans two slots is done in steps (docs/architecture.md §8). Variant and metric
keys never contain ``|`` and periods are integers, so every field splits unambiguously. Python
joins ``<variant>|<period>`` once and the scripts treat it as one opaque "cell" of counters.
Fields written before periods existed (``<variant>|exposures``, ``<variant>|<metric>|sum``, an
assignment without ``|<period>``) are read as period 0.

Shared documents (``p:doc:...``, ``p:docs:...``) belong to no experiment and are tagged by
namespace: see ``documents``.

Counters change only through HINCRBY/HINCRBYFLOAT inside the commit script of ``intake``
(the counting rules are ``abpilot.domain.counting``'s), never by a read in Python written back.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from abpilot.domain.errors import ConcurrentModification, ExperimentNotFound
from abpilot.domain.experiment import Experiment, ExperimentStatus
from abpilot.store.base import experiment_taken
from abpilot.store.codec import as_utc, experiment_from_dict, experiment_to_dict
from abpilot.store.defaults import StoreDefaults
from abpilot.store.event_ids import check_retention
from abpilot.store.redis.cluster import connect_cluster, is_cluster_url, location
from abpilot.store.redis.contextual import CONTEXTUAL_KEYS, RedisContextual
from abpilot.store.redis.documents import RedisDocuments
from abpilot.store.redis.history import HISTORY_KEYS, RedisHistory, reachable, text
from abpilot.store.redis.intake import EVENT_KEYS, RedisIntake
from abpilot.store.redis.transfer import RedisTransfer

# Seconds a command may wait for Redis's answer (``socket_timeout``, unless given) before the
# operation fails as StoreUnavailable.
SOCKET_TIMEOUT_S = 30.0
_ALL_KEYS = ("def", *EVENT_KEYS, *HISTORY_KEYS, *CONTEXTUAL_KEYS)

# KEYS: def, index:keys, index:ids. ARGV: id, key, doc, version, created_at score.
# Returns 'ok', 'id_taken' or 'key_taken'; writes nothing unless 'ok'.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'id_taken' end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return 'key_taken' end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'version', ARGV[4], 'key', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 'ok'
"""

# Compare-and-set of the definition. KEYS: def, index:keys, index:ids.
# ARGV: id, new key, doc, expected version, new version, created_at score.
# Returns {outcome, stored key} with outcome 'ok', 'missing', 'conflict' or 'key_taken'.
# On a key change the index entry moves in the same step.
_UPDATE = """
local current = redis.call('HMGET', KEYS[1], 'version', 'key')
if not current[1] then return {'missing', ''} end
if tonumber(current[1]) ~= tonumber(ARGV[4]) then return {'conflict', current[2]} end
if current[2] ~= ARGV[2] then
  local owner = redis.call('HGET', KEYS[2], ARGV[2])
  if owner and owner ~= ARGV[1] then return {'key_taken', current[2]} end
  if redis.call('HGET', KEYS[2], current[2]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], current[2])
  end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'version', ARGV[5], 'key', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
return {'ok', current[2]}
"""

# KEYS: the experiment's keys (def first), then index:keys and index:ids last.
# ARGV[1]: id. Removes everything; returns 1 if the definition existed, else 0.
_DELETE = """
local n = #KEYS - 2
local key = redis.call('HGET', KEYS[1], 'key')
if key and redis.call('HGET', KEYS[n + 1], key) == ARGV[1] then
  redis.call('HDEL', KEYS[n + 1], key)
end
redis.call('ZREM', KEYS[n + 2], ARGV[1])
redis.call('UNLINK', unpack(KEYS, 1, n))
if key then return 1 end
return 0
"""


class RedisStore(
    RedisIntake, RedisHistory, RedisContextual, RedisDocuments, RedisTransfer, StoreDefaults
):
    """The ``Store`` protocol on one Redis server (or, per experiment, one Cluster shard)."""

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        prefix: str = "abp",
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        event_id_retention_days: int = 0,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(
                f"the Redis key prefix must be non-empty, without braces (got {prefix!r})"
            )
        # A RedisCluster answers the same commands; only what spans slots differs (_cluster).
        self._client = cast(redis.Redis, client)
        self._cluster = isinstance(client, RedisCluster)
        self._prefix = prefix
        self.location = location(client)
        if wait_replicas < 0:
            raise ValueError("wait_replicas must not be negative")
        if wait_timeout_ms < 1:  # WAIT n 0 blocks until n replicas answer, however long
            raise ValueError("wait_timeout_ms must be at least 1: a WAIT of 0 ms waits forever")
        self._wait_replicas, self._wait_timeout_ms = wait_replicas, wait_timeout_ms
        self.event_id_retention_days = check_retention(event_id_retention_days)
        self._create: Script = client.register_script(_CREATE)
        self._update: Script = client.register_script(_UPDATE)
        self._delete: Script = client.register_script(_DELETE)
        self._register_history_scripts()
        self._register_contextual_scripts()
        self._register_document_scripts()
        self._register_transfer_scripts()

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "abp", event_id_retention_days: int = 0, **options: Any
    ) -> RedisStore:
        """Connect lazily to ``url``; ``options`` go to ``redis.Redis.from_url`` (or, for a
        ``redis+cluster://`` URL, to ``redis.cluster.RedisCluster.from_url``), except
        ``wait_replicas`` and ``wait_timeout_ms`` (``WAIT`` after each intake step)."""
        retention = check_retention(event_id_retention_days)
        options.pop("migrate", None)  # asked of every store by open_store; Redis has no schema
        options.setdefault("socket_connect_timeout", 5.0)
        options["decode_responses"] = True
        waiting = {
            "wait_replicas": int(options.pop("wait_replicas", 0)),
            "wait_timeout_ms": int(options.pop("wait_timeout_ms", 100)),
        }
        # A Redis that stops answering (paused, a half-open connection after a network fault)
        # fails the operation (StoreUnavailable, a 503) instead of holding its request forever:
        # redis-py's default is no timeout. Longer than any script here runs, and than WAIT.
        options.setdefault("socket_timeout", SOCKET_TIMEOUT_S + waiting["wait_timeout_ms"] / 1000)
        client = (
            connect_cluster(url, **options)
            if is_cluster_url(url)
            else redis.Redis.from_url(url, **options)
        )
        return cls(client, prefix=prefix, event_id_retention_days=retention, **waiting)

    @reachable
    def create_experiment(self, experiment: Experiment) -> None:
        outcome = self._create(
            keys=[self._definition(experiment.id), self._index_keys, self._index_ids],
            args=[experiment.id, experiment.key, *self._document(experiment)],
        )
        if text(outcome) == "id_taken":
            raise experiment_taken("id", experiment.id)
        if text(outcome) == "key_taken":
            raise experiment_taken("key", experiment.key)

    @reachable
    def get_experiment(self, experiment_id: str) -> Experiment | None:
        doc = self._client.hget(self._definition(experiment_id), "doc")
        return None if doc is None else experiment_from_dict(json.loads(doc))

    @reachable
    def get_experiment_id(self, key: str) -> str | None:
        found = self._client.hget(self._index_keys, key)
        return None if found is None else text(found)

    @reachable
    def list_experiments(self, status: ExperimentStatus | None = None) -> list[Experiment]:
        ids = [text(cast(str, i)) for i in self._client.zrange(self._index_ids, 0, -1)]
        pipe = self._client.pipeline(transaction=False)
        for experiment_id in ids:
            pipe.hget(self._definition(experiment_id), "doc")
        docs: list[bytes | str | None] = pipe.execute() if ids else []
        found = [experiment_from_dict(json.loads(doc)) for doc in docs if doc is not None]
        found.sort(key=lambda e: (e.created_at, e.id))
        return [e for e in found if status is None or e.status is status]

    @reachable
    def update_experiment(self, experiment: Experiment, *, expected_version: int) -> None:
        outcome, stored_key = (
            text(v)
            for v in self._update(
                keys=[self._definition(experiment.id), self._index_keys, self._index_ids],
                args=[experiment.id, experiment.key, *self._document(experiment, expected_version)],
            )
        )
        if outcome == "missing":
            raise ExperimentNotFound(f"experiment {experiment.id} does not exist")
        if outcome == "conflict":
            raise ConcurrentModification(
                f"experiment '{stored_key}' was changed by someone else; reload and retry"
            )
        if outcome == "key_taken":
            raise experiment_taken("key", experiment.key)

    @reachable
    def delete_experiment(self, experiment_id: str) -> bool:
        # The day sets listed now; one a claim adds meanwhile expires with its window.
        keys = self._experiment_keys(experiment_id) + self._day_keys(experiment_id)
        if not self._cluster:
            existed = self._delete(
                keys=[*keys, self._index_keys, self._index_ids], args=[experiment_id]
            )
            return bool(existed)
        # Two steps on a cluster, each one script on one slot: the definition and its index
        # entries first (the experiment is gone from then on), then its recorded data. An
        # interruption in between leaves only unreachable data, which deleting again removes.
        existed = self._delete(
            keys=[self._definition(experiment_id), self._index_keys, self._index_ids],
            args=[experiment_id],
        )
        self._client.unlink(*keys)
        return bool(existed)

    def _experiment_keys(self, experiment_id: str) -> list[str]:
        """Every key under the experiment's hash tag."""
        return [self._key(experiment_id, name) for name in _ALL_KEYS]

    @reachable
    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def _document(experiment: Experiment, *expected_version: int) -> list[str | int | float]:
        """ARGV tail: doc, [expected version,] version, created_at score."""
        return [
            json.dumps(experiment_to_dict(experiment), ensure_ascii=False),
            *expected_version,
            experiment.version,
            as_utc(experiment.created_at).timestamp(),
        ]
