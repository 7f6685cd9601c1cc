"""Daily intake, allocation history and scheduler leadership for the Redis store.

Keys, beside the experiment's others under its hash tag (``p`` is the store's prefix):

- ``p:{id}:daily``        hash ``<day>|<variant>`` (ISO day) -> JSON ``[impressions, clicks]``:
                          one clean row per (variant, day), a later post replaces it
- ``p:{id}:raw``          list of JSON ``{"received_at", "day", "payload"}``, oldest first
- ``p:{id}:allocations``  list of JSON allocation documents; element ``n - 1`` is period ``n``.
                          RPUSH is atomic and answers with the new length, so concurrent
                          additions get distinct consecutive periods without a read in Python;
                          a compare-and-set checks the length in the same script.

Leases live outside any experiment: ``p:lease:<name>`` holds a random token, set with
``SET NX PX`` and renewed or released only by the holder of that token (a Lua check-and-act).

Allocation documents are encoded in Python (never decoded by Lua's cjson), so seeds up to
2**64 - 1 and the exact floats of the weights survive.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import redis
from redis.commands.core import Script
from redis.typing import EncodableT

from abpilot.domain.errors import StoreUnavailable
from abpilot.store.base import AllocationRecord, DailyRow, RawMetrics, period_taken
from abpilot.store.codec import as_utc
from abpilot.store.redis.cluster import snapshot_pipeline

HISTORY_KEYS = ("daily", "raw", "allocations")

# KEYS: the lease. ARGV: token, ttl in ms. Returns 1 if still held (and extended), else 0.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: the lease. ARGV: token. Deletes it only while this token holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: the allocation list of each record (an experiment's list repeats for each of its
# records), then the lists of experiments with an expectation but no record. ARGV[1]: the number
# of records m; ARGV[2 .. m + 1]: their documents, in order; then for each key the period its
# experiment is expected to be at (its list's length), or -1 for no expectation. Every key is
# checked before the first write, so a failing batch stores nothing: a wrong type is an error,
# and a length other than the expected one (another process added a period since the caller
# read it) answers {-1, i, length} for the first such key i. Then each document is pushed in
# order and the new lengths (the periods) come back. A script runs alone, so no other client's
# push comes in between. It spans experiments: on a Cluster it is called once per experiment.
_ADD_ALLOCATIONS = """
local n, m = #KEYS, tonumber(ARGV[1])
for i = 1, n do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= 'list' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a list')
  end
end
for i = 1, n do
  local expected = tonumber(ARGV[m + 1 + i])
  if expected >= 0 then
    local length = redis.call('LLEN', KEYS[i])
    if length ~= expected then return {-1, i, length} end
  end
end
local periods = {}
for i = 1, m do periods[i] = redis.call('RPUSH', KEYS[i], ARGV[i + 1]) end
return periods
"""

# A cluster whose slots are not all served (nodes down) is as unreachable as a dead server.
CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
)


class _Located(Protocol):
    location: str


S = TypeVar("S", bound=_Located)
P = ParamSpec("P")
R = TypeVar("R")


def reachable(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Turn "cannot talk to Redis" into ``StoreUnavailable``; other errors pass through."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except CONNECTION_ERRORS as error:
            raise StoreUnavailable(
                f"Redis at {self.location} cannot be reached: {error}"
            ) from error

    return wrapper


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def microseconds(moment: datetime) -> int:
    """Integer microseconds since the epoch: exact, and ordered as the datetimes are."""
    return (as_utc(moment) - EPOCH) // timedelta(microseconds=1)


def text(value: bytes | str) -> str:
    """A reply as ``str``, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _milliseconds(ttl_seconds: float) -> int:
    return max(1, math.ceil(ttl_seconds * 1000))


class RedisLease:
    """Leadership while ``key`` holds ``token``; it lapses by itself ``ttl`` after the last
    renewal, so a dead leader is replaced."""

    def __init__(self, scripts: tuple[Script, Script], key: str, token: str, ttl_ms: int) -> None:
        self._renew, self._release = scripts
        self.key, self.token, self.ttl_ms = key, token, ttl_ms

    def renew(self) -> bool:
        """Extend the lease by its TTL; False when it expired or another process took it (or
        Redis cannot be reached, as then it may expire unseen)."""
        try:
            return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        except CONNECTION_ERRORS:
            return False

    def release(self) -> None:
        """Give the lease up if still held; unreachable Redis lets it expire instead."""
        with contextlib.suppress(*CONNECTION_ERRORS):
            self._release(keys=[self.key], args=[self.token])


class RedisKeys:
    """The names of the store's keys (the layout is in ``abpilot.store.redis``). On a Redis
    Cluster (``_cluster``) the definitions and both indexes share the global tag ``{index}``,
    so a script can still check and change a definition and the indexes together."""

    _prefix: str
    _cluster: bool = False

    def _key(self, experiment_id: str, name: str) -> str:
        return f"{self._prefix}:{{{experiment_id}}}:{name}"

    def _definition(self, experiment_id: str) -> str:
        if self._cluster:
            return f"{self._prefix}:{{index}}:def:{experiment_id}"
        return self._key(experiment_id, "def")

    @property
    def _index_keys(self) -> str:
        return f"{self._prefix}:{{index}}:keys" if self._cluster else f"{self._prefix}:index:keys"

    @property
    def _index_ids(self) -> str:
        return f"{self._prefix}:{{index}}:ids" if self._cluster else f"{self._prefix}:index:ids"


class RedisHistory(RedisKeys):
    """Mixed into ``RedisStore``: needs ``_client``, ``_prefix`` and ``location``."""

    _client: redis.Redis
    location: str
    _renew_lease: Script
    _release_lease: Script
    _add_allocations: Script

    def _register_history_scripts(self) -> None:
        self._renew_lease = self._client.register_script(_RENEW)
        self._release_lease = self._client.register_script(_RELEASE)
        self._add_allocations = self._client.register_script(_ADD_ALLOCATIONS)

    # daily intake ----------------------------------------------------------------------------

    @reachable
    def record_daily_metrics(
        self,
        experiment_id: str,
        day: date,
        rows: Sequence[DailyRow],
        payload: str,
        received_at: datetime,
    ) -> None:
        raw = {
            "received_at": as_utc(received_at).isoformat(),
            "day": day.isoformat(),
            "payload": payload,
        }
        # MULTI/EXEC: the log entry and the rows are written together, no client in between.
        pipe = self._client.pipeline(transaction=True)
        pipe.rpush(self._key(experiment_id, "raw"), _json(raw))
        if rows:
            cells: dict[EncodableT, EncodableT] = {
                f"{r.day.isoformat()}|{r.variant}": _json([r.impressions, r.clicks]) for r in rows
            }
            pipe.hset(self._key(experiment_id, "daily"), mapping=cells)
        pipe.execute()

    @reachable
    def get_daily_metrics(self, experiment_id: str) -> list[DailyRow]:
        return _daily_rows(self._client.hgetall(self._key(experiment_id, "daily")))

    @reachable
    def get_daily_metrics_many(self, experiment_ids: Iterable[str]) -> dict[str, list[DailyRow]]:
        # Faster than the default: one pipeline (one round trip), not one read per experiment.
        ids = list(dict.fromkeys(experiment_ids))
        pipe = self._client.pipeline(transaction=False)
        for experiment_id in ids:
            pipe.hgetall(self._key(experiment_id, "daily"))
        replies: list[dict[Any, Any]] = pipe.execute() if ids else []
        return {e: _daily_rows(cells) for e, cells in zip(ids, replies, strict=True) if cells}

    @reachable
    def get_raw_metrics(self, experiment_id: str) -> list[RawMetrics]:
        entries = self._client.lrange(self._key(experiment_id, "raw"), 0, -1)
        found = []
        for entry in entries:
            raw = json.loads(text(entry))
            received_at = as_utc(datetime.fromisoformat(raw["received_at"]))
            found.append(RawMetrics(received_at, date.fromisoformat(raw["day"]), raw["payload"]))
        return found

    # allocations -----------------------------------------------------------------------------

    def add_allocation(
        self, record: AllocationRecord, *, expected_period: int | None = None
    ) -> AllocationRecord:
        expected = None if expected_period is None else {record.experiment_id: expected_period}
        return self.add_allocations([record], expected_periods=expected)[0]

    @reachable
    def add_allocations(
        self,
        records: Sequence[AllocationRecord],
        *,
        expected_periods: Mapping[str, int] | None = None,
    ) -> list[AllocationRecord]:
        if not records:
            return []
        expected = dict(expected_periods or {})
        if self._cluster and len({r.experiment_id for r in records} | set(expected)) > 1:
            return self._add_allocations_per_experiment(records, expected)
        documents = [_document(r) for r in records]
        # An expectation about an experiment without a record here is checked on its own key.
        extra = [e for e in expected if e not in {r.experiment_id for r in records}]
        ids = [r.experiment_id for r in records] + extra
        periods = self._add_allocations(
            keys=[self._key(e, "allocations") for e in ids],
            args=[
                len(records),
                *(_json(d) for d in documents),
                *(expected.get(e, -1) for e in ids),
            ],
        )
        if periods and int(periods[0]) == -1:
            _, index, latest = (int(v) for v in periods)
            experiment_id = ids[index - 1]
            raise period_taken(experiment_id, expected[experiment_id], latest)
        return [
            _allocation(r.experiment_id, int(period), document)
            for r, period, document in zip(records, periods, documents, strict=True)
        ]

    def _add_allocations_per_experiment(
        self, records: Sequence[AllocationRecord], expected: dict[str, int]
    ) -> list[AllocationRecord]:
        """On a cluster, one script per experiment (its slot). Every expectation is read first,
        so a period stored before the call is refused before anything is written; one stored by
        another process during the call leaves the experiments before it written."""
        for experiment_id, period in expected.items():
            latest = int(self._client.llen(self._key(experiment_id, "allocations")))
            if latest != period:
                raise period_taken(experiment_id, period, latest)
        by_experiment: dict[str, list[int]] = {}
        for n, record in enumerate(records):
            by_experiment.setdefault(record.experiment_id, []).append(n)
        stored: list[AllocationRecord | None] = [None] * len(records)
        for experiment_id, positions in by_experiment.items():
            own = {experiment_id: expected[experiment_id]} if experiment_id in expected else None
            done = self.add_allocations([records[n] for n in positions], expected_periods=own)
            for n, record in zip(positions, done, strict=True):
                stored[n] = record
        return [r for r in stored if r is not None]

    @reachable
    def list_allocations(self, experiment_id: str) -> list[AllocationRecord]:
        key = self._key(experiment_id, "allocations")
        documents = self._client.lrange(key, 0, -1)
        return [
            _allocation(experiment_id, period, json.loads(text(doc)))
            for period, doc in enumerate(documents, start=1)
        ]

    @reachable
    def latest_allocation(self, experiment_id: str) -> AllocationRecord | None:
        key = self._key(experiment_id, "allocations")
        pipe = self._client.pipeline(transaction=True)
        pipe.llen(key)
        pipe.lindex(key, -1)
        length, last = pipe.execute()
        if last is None:
            return None
        return _allocation(experiment_id, int(length), json.loads(text(last)))

    @reachable
    def latest_allocations(self, experiment_ids: Iterable[str]) -> dict[str, AllocationRecord]:
        # Faster than the default: one MULTI/EXEC pipeline (one round trip), not one per
        # experiment.
        ids = list(dict.fromkeys(experiment_ids))
        pipe = snapshot_pipeline(self._client)  # each length goes with its last element
        for experiment_id in ids:
            key = self._key(experiment_id, "allocations")
            pipe.llen(key)
            pipe.lindex(key, -1)
        replies = pipe.execute() if ids else []
        return {
            e: _allocation(e, int(length), json.loads(text(last)))
            for e, length, last in zip(ids, replies[::2], replies[1::2], strict=True)
            if last is not None
        }

    # leadership ------------------------------------------------------------------------------

    @reachable
    def try_lead(self, name: str, ttl_seconds: float) -> RedisLease | None:
        key, token = f"{self._prefix}:lease:{name}", secrets.token_hex(16)
        ttl_ms = _milliseconds(ttl_seconds)
        if not self._client.set(key, token, nx=True, px=ttl_ms):
            return None
        return RedisLease((self._renew_lease, self._release_lease), key, token, ttl_ms)


def _daily_rows(cells: dict[Any, Any]) -> list[DailyRow]:
    """Clean rows from a ``daily`` hash, by day then variant."""
    found = []
    for field, value in cells.items():
        day, variant = text(field).split("|")
        impressions, clicks = json.loads(text(value))
        found.append(DailyRow(date.fromisoformat(day), variant, int(impressions), int(clicks)))
    return sorted(found, key=lambda r: (r.day, r.variant))


def _document(record: AllocationRecord) -> dict[str, Any]:
    """What the ``allocations`` list keeps of a record (its period is its position)."""
    return {
        "computed_at": as_utc(record.computed_at).isoformat(),
        "weights": dict(record.weights),
        "method": record.method,
        "seed": record.seed,
        "source": record.source,
        "details": dict(record.details),
    }


def _allocation(experiment_id: str, period: int, document: dict[str, Any]) -> AllocationRecord:
    seed = document["seed"]
    return AllocationRecord(
        experiment_id=experiment_id,
        period=period,
        computed_at=as_utc(datetime.fromisoformat(document["computed_at"])),
        weights=document["weights"],
        method=document["method"],
        seed=None if seed is None else int(seed),
        source=document["source"],
        details=document["details"],
    )
