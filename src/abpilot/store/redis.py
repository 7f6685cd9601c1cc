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
- ``p:{id}:events``    set of processed event ids
- ``p:{id}:activity``  microseconds since the epoch (UTC) at which the last counted event was
                       received: only ever moved forward, by the apply script
- ``p:{id}:daily``, ``p:{id}:raw``, ``p:{id}:allocations``: see ``redis_history``
- ``p:{id}:decisions``, ``p:{id}:decision_counts``, ``p:{id}:decision_times``,
  ``p:{id}:feedback``, ``p:{id}:states`` (contextual bandits): see ``redis_contextual``

Global keys, outside any tag: ``p:index:keys`` (hash experiment key -> id), ``p:index:ids``
(sorted set of ids scored by ``created_at``) and leases ``p:lease:<name>``. Variant and metric
keys never contain ``|`` and periods are integers, so every field splits unambiguously. Python
joins ``<variant>|<period>`` once and the scripts treat it as one opaque "cell" of counters.
Fields written before periods existed (``<variant>|exposures``, ``<variant>|<metric>|sum``, an
assignment without ``|<period>``) are read as period 0.

Shared documents (``p:doc:...``, ``p:docs:...``) belong to no experiment and are tagged by
namespace: see ``redis_documents``.

Counters change only through HINCRBY/HINCRBYFLOAT inside the scripts below, never by a read in
Python followed by a write.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from redis.commands.core import Script

from abpilot.domain.errors import (
    ConcurrentModification,
    DuplicateKey,
    ExperimentNotFound,
    ValidationError,
)
from abpilot.domain.experiment import Experiment, ExperimentStatus
from abpilot.store.base import (
    ApplyResult,
    AssignResult,
    EventKind,
    EventRecord,
    MetricTotals,
    StoredAssignment,
    VariantCounters,
)
from abpilot.store.codec import as_utc, experiment_from_dict, experiment_to_dict
from abpilot.store.plan import group_counters, sum_periods
from abpilot.store.redis_contextual import CONTEXTUAL_KEYS, RedisContextual
from abpilot.store.redis_documents import RedisDocuments
from abpilot.store.redis_history import HISTORY_KEYS, RedisHistory, reachable, text
from abpilot.store.redis_transfer import RedisTransfer, _assignment

# Per-experiment keys, in the order the event script expects them after ``def``.
_EVENT_KEYS = ("events", "assign", "exposed", "counters", "metrics", "units", "activity")
_ALL_KEYS = ("def", *_EVENT_KEYS, *HISTORY_KEYS, *CONTEXTUAL_KEYS)

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

# KEYS: assign, counters. ARGV: unit id, cell '<variant>|<period>'.
# Returns {stored cell, 1 if stored now}.
_ASSIGN = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2] .. '|assigned_units', 1)
  return {ARGV[2], 1}
end
return {redis.call('HGET', KEYS[1], ARGV[1]), 0}
"""

# A whole batch, all or nothing, each (experiment, event id) at most once.
# KEYS: seven per experiment in the batch, in the order of _EVENT_KEYS (events, assign, exposed,
# counters, metrics, units, activity); experiment x (1-based) owns KEYS[7x-6 .. 7x].
# ARGV[1]: JSON array of [x, kind, cell, unit id|null, metric|null, value, event id|null,
# time|null], where the cell '<variant>|<period>' (called variant below) keys the counters the
# event goes to and time is a 1-based index into ARGV[2], a JSON array of distinct receive times
# (integer microseconds since the epoch): the latest time of x's counted events moves x's
# activity forward.
# Phase 1 only reads: it drops repeated ids (stored, or earlier in the batch), aggregates the
# rest per key (as plan.py does) and refuses the batch if an increment is not finite, which
# HINCRBYFLOAT would reject halfway. Phase 2 writes. Returns {applied, duplicates}.
_APPLY = """
local null, overflow, applied, duplicates = cjson.null, false, 0, 0
local seen, ids, exposures, exposed, per_unit, metrics = {}, {}, {}, {}, {}, {}
local times, latest = cjson.decode(ARGV[2]), {}
local function k(x, i) return KEYS[(x - 1) * 7 + i] end
local function fmt(v) return string.format('%.17g', v) end
local function at(t, key)
  if t[key] == nil then t[key] = {} end
  return t[key]
end
-- metrics[x][variant][metric] = {count, units, sum, sum_squares}: increments to apply
local function add(x, variant, metric, count, units, sum, sq)
  local m = at(at(at(metrics, x), variant), metric)
  m[1], m[2] = (m[1] or 0) + count, (m[2] or 0) + units
  m[3], m[4] = (m[3] or 0) + sum, (m[4] or 0) + sq
  for i = 3, 4 do
    if m[i] ~= m[i] or m[i] == math.huge or m[i] == -math.huge then overflow = true end
  end
end
for _, e in ipairs(cjson.decode(ARGV[1])) do
  local x, kind, variant, unit, metric, value, id = e[1], e[2], e[3], e[4], e[5], e[6], e[7]
  local repeated, time = false, e[8]
  if id ~= null then
    local s = at(seen, x)
    repeated = s[id] or redis.call('SISMEMBER', k(x, 1), id) == 1
    if not repeated then s[id] = true; table.insert(at(ids, x), id) end
  end
  if repeated then
    duplicates = duplicates + 1
  elseif kind == 'exposure' then
    local n = at(exposures, x)
    n[variant] = (n[variant] or 0) + 1
    if unit ~= null and at(exposed, x)[unit] == nil then exposed[x][unit] = variant end
  elseif unit ~= null then
    local d = at(at(at(per_unit, x), metric), unit)
    d.variant, d.count, d.total = d.variant or variant, (d.count or 0) + 1, (d.total or 0) + value
  else
    add(x, variant, metric, 1, 0, value, value * value)
  end
  if not repeated then
    applied = applied + 1
    if time ~= null and times[time] > (latest[x] or -1) then latest[x] = times[time] end
  end
end
-- A unit's total goes from t to t + v: sum_squares grows by v(2t + v); no t yet: a new unit.
for x, by_metric in pairs(per_unit) do
  for metric, by_unit in pairs(by_metric) do
    for unit, d in pairs(by_unit) do
      local before = redis.call('HGET', k(x, 6), 't|' .. metric .. '|' .. unit)
      local t = tonumber(before or '0')
      add(x, d.variant, metric, d.count, before and 0 or 1, d.total, d.total * (2 * t + d.total))
    end
  end
end
if overflow then return redis.error_reply('ERR batch refused: a metric total would overflow') end
for x, list in pairs(ids) do
  for i = 1, #list, 1000 do
    redis.call('SADD', k(x, 1), unpack(list, i, math.min(i + 999, #list)))
  end
end
for x, by_variant in pairs(exposures) do
  for variant, n in pairs(by_variant) do
    redis.call('HINCRBY', k(x, 4), variant .. '|exposures', n)
  end
end
for x, by_unit in pairs(exposed) do
  local grow = {}
  for unit, variant in pairs(by_unit) do
    if redis.call('HSETNX', k(x, 2), unit, variant) == 1 then
      grow[variant .. '|assigned_units'] = (grow[variant .. '|assigned_units'] or 0) + 1
    end
    if redis.call('SADD', k(x, 3), unit) == 1 then
      grow[variant .. '|unique_units'] = (grow[variant .. '|unique_units'] or 0) + 1
    end
  end
  for field, n in pairs(grow) do redis.call('HINCRBY', k(x, 4), field, n) end
end
for x, by_metric in pairs(per_unit) do
  for metric, by_unit in pairs(by_metric) do
    for unit, d in pairs(by_unit) do
      redis.call('HINCRBY', k(x, 6), 'c|' .. metric .. '|' .. unit, d.count)
      redis.call('HINCRBYFLOAT', k(x, 6), 't|' .. metric .. '|' .. unit, fmt(d.total))
    end
  end
end
for x, by_variant in pairs(metrics) do
  for variant, by_metric in pairs(by_variant) do
    for metric, m in pairs(by_metric) do
      local f = variant .. '|' .. metric .. '|'
      redis.call('HINCRBY', k(x, 5), f .. 'count', m[1])
      redis.call('HINCRBY', k(x, 5), f .. 'units', m[2])
      redis.call('HINCRBYFLOAT', k(x, 5), f .. 'sum', fmt(m[3]))
      redis.call('HINCRBYFLOAT', k(x, 5), f .. 'sum_squares', fmt(m[4]))
    end
  end
end
for x, time in pairs(latest) do
  if time > tonumber(redis.call('GET', k(x, 7)) or '-1') then
    redis.call('SET', k(x, 7), string.format('%.0f', time))
  end
end
return {applied, duplicates}
"""


def _row(x: int, event: EventRecord, times: dict[int, int]) -> tuple[object, ...]:
    """One event for the apply script; ``x`` numbers its experiment's group of KEYS and
    ``times`` (receive time in microseconds -> 1-based index) gathers the batch's times."""
    if not math.isfinite(event.value):
        raise ValidationError(f"event value must be finite (got {event.value})", field="value")
    metric = None if event.kind is EventKind.EXPOSURE else event.metric or ""
    kind, unit, event_id = event.kind.value, event.unit_id, event.event_id
    time = None
    if event.received_at is not None:
        time = times.setdefault(_microseconds(event.received_at), len(times) + 1)
    cell = _cell(event.variant, event.period)
    return (x, kind, cell, unit, metric, event.value, event_id, time)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _microseconds(moment: datetime) -> int:
    return (as_utc(moment) - _EPOCH) // timedelta(microseconds=1)


def _cell(variant: str, period: int) -> str:
    return f"{variant}|{period:d}"


def _variant_period(parts: Sequence[str]) -> tuple[str, int]:
    """(variant, period) of a cell split on ``|``; a bare variant is from before periods: 0."""
    return parts[0], int(parts[1]) if len(parts) > 1 else 0


def _group(
    counts: Mapping[Any, Any], totals: Mapping[Any, Any]
) -> dict[int, dict[str, VariantCounters]]:
    """Per-period counters from the ``counters`` and ``metrics`` hashes."""
    plain: dict[tuple[int, str], dict[str, int]] = {}
    for field, raw in counts.items():
        *cell, name = text(field).split("|")
        variant, period = _variant_period(cell)
        row = plain.setdefault((period, variant), {})
        row[name] = row.get(name, 0) + int(raw)
    stats: dict[tuple[int, str, str], dict[str, float]] = {}
    for field, raw in totals.items():
        *cell, metric, stat = text(field).split("|")
        variant, period = _variant_period(cell)
        values = stats.setdefault((period, variant, metric), {})
        number = int(raw) if stat in ("count", "units") else float(raw)
        values[stat] = values.get(stat, 0) + number
    return group_counters(
        (
            (p, v, c.get("assigned_units", 0), c.get("exposures", 0), c.get("unique_units", 0))
            for (p, v), c in plain.items()
        ),
        (
            (
                p,
                v,
                m,
                MetricTotals(
                    count=int(s.get("count", 0)),
                    units=int(s.get("units", 0)),
                    sum=float(s.get("sum", 0.0)),
                    sum_squares=float(s.get("sum_squares", 0.0)),
                ),
            )
            for (p, v, m), s in stats.items()
        ),
    )


class RedisStore(RedisHistory, RedisContextual, RedisDocuments, RedisTransfer):
    """The ``Store`` protocol on one Redis server (or, per experiment, one Cluster shard)."""

    def __init__(self, client: redis.Redis, prefix: str = "abp") -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(
                f"the Redis key prefix must be non-empty, without braces (got {prefix!r})"
            )
        self._client = client
        self._prefix = prefix
        kwargs = client.get_connection_kwargs()
        self.location = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        self._create: Script = client.register_script(_CREATE)
        self._update: Script = client.register_script(_UPDATE)
        self._delete: Script = client.register_script(_DELETE)
        self._assign: Script = client.register_script(_ASSIGN)
        self._apply: Script = client.register_script(_APPLY)
        self._register_history_scripts()
        self._register_contextual_scripts()
        self._register_document_scripts()
        self._register_transfer_scripts()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "abp", **options: Any) -> RedisStore:
        """Connect lazily to ``url``; ``options`` go to ``redis.Redis.from_url``."""
        options.pop("migrate", None)  # asked of every store by open_store; Redis has no schema
        options.setdefault("socket_connect_timeout", 5.0)
        options["decode_responses"] = True
        return cls(redis.Redis.from_url(url, **options), prefix=prefix)

    @reachable
    def create_experiment(self, experiment: Experiment) -> None:
        outcome = self._create(
            keys=[self._key(experiment.id, "def"), self._index_keys, self._index_ids],
            args=[experiment.id, experiment.key, *self._document(experiment)],
        )
        if text(outcome) == "id_taken":
            raise DuplicateKey(
                f"an experiment with id '{experiment.id}' already exists", field="id"
            )
        if text(outcome) == "key_taken":
            raise DuplicateKey(
                f"an experiment with key '{experiment.key}' already exists", field="key"
            )

    @reachable
    def get_experiment(self, experiment_id: str) -> Experiment | None:
        doc = self._client.hget(self._key(experiment_id, "def"), "doc")
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
            pipe.hget(self._key(experiment_id, "def"), "doc")
        docs: list[bytes | str | None] = pipe.execute() if ids else []
        found = [experiment_from_dict(json.loads(doc)) for doc in docs if doc is not None]
        found.sort(key=lambda e: (e.created_at, e.id))
        return [e for e in found if status is None or e.status is status]

    @reachable
    def update_experiment(self, experiment: Experiment, *, expected_version: int) -> None:
        outcome, stored_key = (
            text(v)
            for v in self._update(
                keys=[self._key(experiment.id, "def"), self._index_keys, self._index_ids],
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
            raise DuplicateKey(
                f"an experiment with key '{experiment.key}' already exists", field="key"
            )

    @reachable
    def delete_experiment(self, experiment_id: str) -> bool:
        keys = [self._key(experiment_id, name) for name in _ALL_KEYS]
        existed = self._delete(
            keys=[*keys, self._index_keys, self._index_ids], args=[experiment_id]
        )
        return bool(existed)

    @reachable
    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        stored, created = self._assign(
            keys=[self._key(experiment_id, "assign"), self._key(experiment_id, "counters")],
            args=[unit_id, _cell(variant, period)],
        )
        found = _assignment(stored)
        return AssignResult(variant=found.variant, created=bool(created), period=found.period)

    @reachable
    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        units = list(dict.fromkeys(unit_ids))
        if not units:
            return {}
        cells = self._client.hmget(self._key(experiment_id, "assign"), units)
        return {u: _assignment(c) for u, c in zip(units, cells, strict=True) if c is not None}

    @reachable
    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        if not events:
            return ApplyResult(applied=0, duplicates=0)
        positions: dict[str, int] = {}
        times: dict[int, int] = {}
        rows = [
            _row(positions.setdefault(e.experiment_id, len(positions) + 1), e, times)
            for e in events
        ]
        keys = [self._key(exp, name) for exp in positions for name in _EVENT_KEYS]
        payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        try:
            applied, duplicates = self._apply(keys=keys, args=[payload, json.dumps(list(times))])
        except redis.exceptions.ResponseError as error:
            if "would overflow" not in str(error):
                raise
            message = "event values are too large: a metric total would overflow"
            raise ValidationError(message, field="value") from error
        return ApplyResult(applied=int(applied), duplicates=int(duplicates))

    def get_counters(self, experiment_id: str) -> dict[str, VariantCounters]:
        return sum_periods(self.get_period_counters(experiment_id))

    @reachable
    def get_counters_many(
        self, experiment_ids: Iterable[str]
    ) -> dict[str, dict[str, VariantCounters]]:
        ids = list(dict.fromkeys(experiment_ids))
        pipe = self._client.pipeline(transaction=True)  # one snapshot of every hash read
        for experiment_id in ids:
            pipe.hgetall(self._key(experiment_id, "counters"))
            pipe.hgetall(self._key(experiment_id, "metrics"))
        replies = pipe.execute() if ids else []
        return {
            e: sum_periods(_group(counts, totals))
            for e, counts, totals in zip(ids, replies[::2], replies[1::2], strict=True)
            if counts or totals
        }

    @reachable
    def get_period_counters(self, experiment_id: str) -> dict[int, dict[str, VariantCounters]]:
        pipe = self._client.pipeline(transaction=True)  # one consistent snapshot of both hashes
        pipe.hgetall(self._key(experiment_id, "counters"))
        pipe.hgetall(self._key(experiment_id, "metrics"))
        counts, totals = pipe.execute()
        return _group(counts, totals)

    @reachable
    def last_event_at(self, experiment_id: str) -> datetime | None:
        found = self._client.get(self._key(experiment_id, "activity"))
        if found is None:
            return None
        return _EPOCH + timedelta(microseconds=int(cast(str, found)))

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
