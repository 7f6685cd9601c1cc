"""The dedupe window on Redis (``abpilot.store.event_ids``): event ids in per-day sets.

With ``event_id_retention_days`` N = 0 an experiment's claimed ids live in one set,
``p:{id}:events``, kept forever. With N > 0 an id claimed on UTC day D goes into
``p:{id}:events:<D>``, which EXPIREs N + 1 days after the start of D (so at least N days after
any claim in it), and D is added to ``p:{id}:event_days``. A claim on day D' checks the sets of
days D' - N .. D' (and ``events``, which holds the ids claimed before the window was set) in the
one ``STEP`` call of the intake: an id resent within N days is found. Everything stays under the
experiment's hash tag.

Expiry alone bounds the state; the leader's ``prune_event_ids`` also UNLINKs (freed off the main
thread) the day sets that have left the window by its clock, which makes a shortened window take
effect at once, and gives ``events`` an expiry of the window too. The days ``event_days`` lists
are what export and delete find.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis

from abpilot.store.event_ids import DAY_SECONDS, EPOCH, day_end, day_number, window_start
from abpilot.store.redis.history import RedisKeys, reachable, text


def day_set(day: int) -> str:
    """The name of the set of ids claimed on ``day``."""
    return f"events:{day:d}"


def day_set_ttl(day: int, retention_days: int, now: datetime) -> int:
    """Seconds from ``now`` until the set of ``day`` leaves a window of ``retention_days``: the
    end of day ``day + retention_days`` (at least 1)."""
    end = (day + retention_days + 1) * DAY_SECONDS
    return max(1, math.ceil(end - now.timestamp()))


class RedisEventIds(RedisKeys):
    """Mixed into ``RedisStore`` (through ``RedisIntake``): needs ``_client`` and ``_prefix``."""

    _client: redis.Redis
    location: str
    event_id_retention_days: int

    def event_sets(self, day: int) -> list[str]:
        """The sets a claim on ``day`` checks: ``events`` first, then the window's day sets."""
        retention = self.event_id_retention_days
        if retention <= 0:
            return ["events"]
        return ["events", *(day_set(d) for d in range(day - retention, day + 1))]

    @reachable
    def prune_event_ids(self, *, now: datetime, limit: int) -> int:
        start = window_start(now, self.event_id_retention_days)
        if start is None:
            return 0
        first_kept = day_number(start)  # every id of an earlier day was claimed before start
        listed = cast(list[Any], self._client.zrange(self._index_ids, 0, -1))
        experiments = [text(e) for e in listed]
        pipe = self._client.pipeline(transaction=False)
        for exp in experiments:
            pipe.smembers(self._key(exp, "event_days"))
            pipe.ttl(self._key(exp, "events"))
        replies = pipe.execute()
        # Ids claimed before the window was set (a set without expiry, TTL -1): kept for one
        # more window, then gone. (TTL then EXPIRE rather than EXPIRE NX: Redis 6.2 has no NX.)
        seconds = (self.event_id_retention_days + 1) * DAY_SECONDS
        for exp, ttl in zip(experiments, replies[1::2], strict=True):
            if ttl == -1:
                self._client.expire(self._key(exp, "events"), seconds)
        removed = 0
        for exp, days in zip(experiments, replies[::2], strict=True):
            if removed >= limit:
                break
            for day in sorted(int(text(d)) for d in days):
                if day >= first_kept or removed >= limit:
                    break  # at least one set per call, however large: UNLINK frees it aside
                key = self._key(exp, day_set(day))
                pipe = self._client.pipeline(transaction=True)
                pipe.scard(key)
                pipe.unlink(key)
                pipe.srem(self._key(exp, "event_days"), str(day))
                removed += int(pipe.execute()[0])
        return removed

    def _day_keys(self, experiment_id: str) -> list[str]:
        """The day sets ``event_days`` lists for an experiment (to delete them with it)."""
        days = self._client.smembers(self._key(experiment_id, "event_days"))
        return [self._key(experiment_id, day_set(int(text(d)))) for d in cast(set[Any], days)]

    def _read_event_ids(self, experiment_id: str) -> dict[str, datetime]:
        """Every id the experiment holds, with its claim time: the end of its day for an id of
        a day set, the experiment's last event time for one of ``events`` (no time is kept
        there; every counted event moved it forward), never earlier than the claim."""
        listed = cast(set[Any], self._client.smembers(self._key(experiment_id, "event_days")))
        days = sorted(int(text(d)) for d in listed)
        pipe = self._client.pipeline(transaction=True)
        pipe.get(self._key(experiment_id, "activity"))
        pipe.smembers(self._key(experiment_id, "events"))
        for day in days:
            pipe.smembers(self._key(experiment_id, day_set(day)))
        activity, legacy, *per_day = pipe.execute()
        last = (
            datetime.now(UTC) if activity is None else EPOCH + timedelta(microseconds=int(activity))
        )
        found = {text(i): last for i in legacy}
        for day, ids in zip(days, per_day, strict=True):
            for event_id in ids:
                found[text(event_id)] = day_end(day)
        return found

    def _queue_event_ids(self, pipe: Any, experiment_id: str, ids: Mapping[str, datetime]) -> None:
        """Queue the writes that restore ``ids`` (claimed at their times) on ``pipe``: into
        ``events`` with a window of 0, else into the sets of their days. Each set expires as
        a claim at the latest of these times would have set it: an export is taken moments
        before its import, and carries only the ids inside its window."""
        if self.event_id_retention_days <= 0 or not ids:
            members = sorted(ids)
            for start in range(0, len(members), 1000):
                pipe.sadd(self._key(experiment_id, "events"), *members[start : start + 1000])
            return
        by_day: dict[int, list[str]] = {}
        for event_id, at in ids.items():
            by_day.setdefault(day_number(at), []).append(event_id)
        latest = max(ids.values())
        for day, members in sorted(by_day.items()):
            key = self._key(experiment_id, day_set(day))
            members.sort()
            for start in range(0, len(members), 1000):
                pipe.sadd(key, *members[start : start + 1000])
            pipe.expire(key, day_set_ttl(day, self.event_id_retention_days, latest))
            pipe.sadd(self._key(experiment_id, "event_days"), str(day))
