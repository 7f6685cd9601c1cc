"""Assignments and event counting on Redis: one Lua script per change (see the key layout in
``abpilot.store.redis``). A batch of events is one script call, all or nothing; counters change
only through HINCRBY/HINCRBYFLOAT inside the scripts, never by a read in Python followed by a
write."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from redis.commands.core import Script

from abpilot.domain.errors import ValidationError
from abpilot.store.base import (
    ApplyResult,
    AssignResult,
    EventKind,
    EventRecord,
    MetricTotals,
    StoredAssignment,
    VariantCounters,
)
from abpilot.store.plan import group_counters, sum_periods
from abpilot.store.redis_history import EPOCH, RedisKeys, microseconds, reachable, text

# Per-experiment keys, in the order the event script expects them.
EVENT_KEYS = ("events", "assign", "exposed", "counters", "metrics", "units", "activity")
ASSIGN_EXPOSE_KEYS = ("events", "assign", "exposed", "counters", "activity")

# KEYS: assign, counters. ARGV: unit id, cell '<variant>|<period>'.
# Returns {stored cell, 1 if stored now}.
_ASSIGN = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2] .. '|assigned_units', 1)
  return {ARGV[2], 1}
end
return {redis.call('HGET', KEYS[1], ARGV[1]), 0}
"""

# Assign and expose one unit. KEYS: events, assign, exposed, counters, activity.
# ARGV: unit id, cell '<variant>|<period>' to store when the unit has none, event id ('' for
# none), receive time in microseconds ('' for none). The exposure counts under the stored cell
# (a bare variant is from before periods: 0) unless the event id was counted before.
# Returns {stored cell, 1 if stored now, 1 if the exposure was counted}.
_ASSIGN_EXPOSE = """
local created, cell = 0, redis.call('HGET', KEYS[2], ARGV[1])
if not cell then
  cell, created = ARGV[2], 1
  redis.call('HSET', KEYS[2], ARGV[1], cell)
  redis.call('HINCRBY', KEYS[4], cell .. '|assigned_units', 1)
elseif not string.find(cell, '|', 1, true) then
  cell = cell .. '|0'
end
if ARGV[3] ~= '' and redis.call('SADD', KEYS[1], ARGV[3]) == 0 then return {cell, created, 0} end
redis.call('HINCRBY', KEYS[4], cell .. '|exposures', 1)
if redis.call('SADD', KEYS[3], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[4], cell .. '|unique_units', 1)
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) > tonumber(redis.call('GET', KEYS[5]) or '-1') then
  redis.call('SET', KEYS[5], ARGV[4])
end
return {cell, created, 1}
"""

# A whole batch, all or nothing, each (experiment, event id) at most once.
# KEYS: seven per experiment in the batch, in the order of _EVENT_KEYS (events, assign, exposed,
# counters, metrics, units, activity); experiment x (1-based) owns KEYS[7x-6 .. 7x].
# ARGV[1]: JSON array of [x, kind, cell, unit id|null, metric|null, value, event id|null,
# time|null], where the cell '<variant>|<period>' (called variant below) keys the counters the
# event goes to and time is a 1-based index into ARGV[2], a JSON array of distinct receive times
# (integer microseconds since the epoch): the latest time of x's counted events moves x's
# activity forward.
# Phase 1 only reads: it drops repeated ids (stored, or earlier in the batch); moves every event
# of a unit to the unit's assignment, the stored one or else its first exposure in this batch
# (stored in phase 2), whatever cell the event names; aggregates the rest per key (as plan.py
# does) and refuses the batch if an increment is not finite, which HINCRBYFLOAT would reject
# halfway. Phase 2 writes. Returns {applied, duplicates}.
_APPLY = """
local null, overflow, applied, duplicates = cjson.null, false, 0, 0
local seen, ids, fresh, exposures, exposed, per_unit, metrics = {}, {}, {}, {}, {}, {}, {}
local assigned, new_assignments = {}, {}
local times, latest = cjson.decode(ARGV[2]), {}
local function k(x, i) return KEYS[(x - 1) * 7 + i] end
local function fmt(v) return string.format('%.17g', v) end
local function at(t, key)
  if t[key] == nil then t[key] = {} end
  return t[key]
end
-- The unit's assignment as a cell (false: none); a bare variant is from before periods: 0.
local function assignment(x, unit)
  local a = at(assigned, x)
  if a[unit] == nil then
    local cell = redis.call('HGET', k(x, 2), unit)
    if cell and not string.find(cell, '|', 1, true) then cell = cell .. '|0' end
    a[unit] = cell or false
  end
  return a[unit]
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
  local x, id, time = e[1], e[7], e[8]
  local repeated = false
  if id ~= null then
    local s = at(seen, x)
    repeated = s[id] or redis.call('SISMEMBER', k(x, 1), id) == 1
    if not repeated then s[id] = true; table.insert(at(ids, x), id) end
  end
  if repeated then
    duplicates = duplicates + 1
  else
    applied = applied + 1
    table.insert(fresh, e)
    if time ~= null and times[time] > (latest[x] or -1) then latest[x] = times[time] end
  end
end
for _, e in ipairs(fresh) do
  local x, kind, variant, unit = e[1], e[2], e[3], e[4]
  if kind == 'exposure' and unit ~= null and not assignment(x, unit) then
    assigned[x][unit] = variant
    at(new_assignments, x)[unit] = variant
  end
end
for _, e in ipairs(fresh) do
  local x, kind, variant, unit, metric, value = e[1], e[2], e[3], e[4], e[5], e[6]
  if unit ~= null then variant = assignment(x, unit) or variant end
  if kind == 'exposure' then
    local n = at(exposures, x)
    n[variant] = (n[variant] or 0) + 1
    if unit ~= null and at(exposed, x)[unit] == nil then exposed[x][unit] = variant end
  elseif unit ~= null then
    local d = at(at(at(per_unit, x), metric), unit)
    d.variant, d.count, d.total = d.variant or variant, (d.count or 0) + 1, (d.total or 0) + value
  else
    add(x, variant, metric, 1, 0, value, value * value)
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
for x, by_unit in pairs(new_assignments) do
  local grow = {}
  for unit, variant in pairs(by_unit) do
    redis.call('HSET', k(x, 2), unit, variant)
    grow[variant] = (grow[variant] or 0) + 1
  end
  for variant, n in pairs(grow) do
    redis.call('HINCRBY', k(x, 4), variant .. '|assigned_units', n)
  end
end
for x, by_unit in pairs(exposed) do
  local grow = {}
  for unit, variant in pairs(by_unit) do
    if redis.call('SADD', k(x, 3), unit) == 1 then grow[variant] = (grow[variant] or 0) + 1 end
  end
  for variant, n in pairs(grow) do
    redis.call('HINCRBY', k(x, 4), variant .. '|unique_units', n)
  end
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
        time = times.setdefault(microseconds(event.received_at), len(times) + 1)
    cell = _cell(event.variant, event.period)
    return (x, kind, cell, unit, metric, event.value, event_id, time)


def stored_assignment(cell: bytes | str) -> StoredAssignment:
    """A stored assignment ``<variant>|<period>``; a bare variant is from before periods: 0."""
    variant, _, period = text(cell).partition("|")
    return StoredAssignment(variant, int(period) if period else 0)


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


class RedisIntake(RedisKeys):
    """Mixed into ``RedisStore``: needs ``_client``, ``_prefix`` and ``location``."""

    _client: redis.Redis
    location: str
    _assign: Script
    _apply: Script
    _assign_expose: Script

    def _register_intake_scripts(self) -> None:
        self._assign = self._client.register_script(_ASSIGN)
        self._apply = self._client.register_script(_APPLY)
        self._assign_expose = self._client.register_script(_ASSIGN_EXPOSE)

    @reachable
    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        stored, created = self._assign(
            keys=[self._key(experiment_id, "assign"), self._key(experiment_id, "counters")],
            args=[unit_id, _cell(variant, period)],
        )
        found = stored_assignment(stored)
        return AssignResult(variant=found.variant, created=bool(created), period=found.period)

    @reachable
    def assign_and_expose(self, event: EventRecord) -> AssignResult:
        assert event.kind is EventKind.EXPOSURE
        assert event.unit_id is not None
        exp = event.experiment_id
        moment = "" if event.received_at is None else str(microseconds(event.received_at))
        stored, created, counted = self._assign_expose(
            keys=[self._key(exp, name) for name in ASSIGN_EXPOSE_KEYS],
            args=[
                event.unit_id,
                _cell(event.variant, event.period),
                event.event_id or "",
                moment,
            ],
        )
        found = stored_assignment(stored)
        return AssignResult(found.variant, bool(created), found.period, exposed=bool(counted))

    @reachable
    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        units = list(dict.fromkeys(unit_ids))
        if not units:
            return {}
        cells = self._client.hmget(self._key(experiment_id, "assign"), units)
        return {u: stored_assignment(c) for u, c in zip(units, cells, strict=True) if c is not None}

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
        keys = [self._key(exp, name) for exp in positions for name in EVENT_KEYS]
        payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        try:
            applied, duplicates = self._apply(keys=keys, args=[payload, json.dumps(list(times))])
        except redis.exceptions.ResponseError as error:
            if "would overflow" not in str(error):
                raise
            message = "event values are too large: a metric total would overflow"
            raise ValidationError(message, field="value") from error
        return ApplyResult(applied=int(applied), duplicates=int(duplicates))

    @reachable
    def get_counters_many(
        self, experiment_ids: Iterable[str]
    ) -> dict[str, dict[str, VariantCounters]]:
        # Faster than the default: one MULTI/EXEC pipeline for every experiment's hashes (one
        # round trip), not one per experiment.
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
        return EPOCH + timedelta(microseconds=int(cast(str, found)))
