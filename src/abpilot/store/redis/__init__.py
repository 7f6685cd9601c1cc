"""The Redis store: shared state for many workers and hosts (the key layout is in ``store``).

``store.RedisStore`` is assembled from one mixin per role: ``intake`` (assignments and event
counting through the counting core), ``history`` (daily intake, allocation periods, leases, and
the key names and helpers the others share), ``contextual`` (decisions and feedback),
``documents`` (shared documents) and ``transfer`` (export and import).
"""

from abpilot.store.redis.store import RedisStore

__all__ = ["RedisStore"]
