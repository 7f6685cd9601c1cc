"""Assignments and event counting on Redis (see the key layout in ``abpilot.store.redis``).

The counting rules are ``abpilot.domain.counting``'s. Redis supplies their primitives with an
optimistic step: one pipeline reads what the batch may touch (claimed event ids, assignments,
exposed units, unit totals: a snapshot), the rules run in Python against it, and one generic
script (``_COMMIT``) checks that every value read is still what it was and only then applies the
writes, all or nothing. Counters change only through HINCRBY/HINCRBYFLOAT inside that script.
If another client changed a value read in between, the script writes nothing and the step is
counted again from a fresh snapshot (conflicts need the same unit or event id in two concurrent
batches). The script holds no counting rule: it knows nothing of events, units or variants.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis
from redis.commands.core import Script

from abpilot.domain.counting import (
    BatchKeys,
    CounterIncrements,
    CountingStep,
    EventKey,
    UnitKey,
    UnitMetricKey,
    UnitTotals,
    batch_keys,
    count_assignment,
    count_events,
    count_exposure,
)
from abpilot.domain.errors import StoreUnavailable
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

T = TypeVar("T")

# An experiment's keys that hold its assignments and counters.
EVENT_KEYS = ("events", "assign", "exposed", "counters", "metrics", "units", "activity")

# How many times a step is counted again after a conflict before the store gives up (a 503:
# the batch may be sent again, its event ids make that safe).
MAX_ATTEMPTS = 50

# Check, then write. KEYS: the keys the step touches. ARGV[1]: JSON [checks, writes]; a check is
# [kind, key index, field or member, expected]: 'h' (HGET equals expected, null: no field) or
# 's' (SISMEMBER equals expected, 0 or 1); a write is [op, key index, arg, arg]: 'sadd' member,
# 'hset' field value, 'hincrby' field n, 'hincrbyfloat' field x, or 'max' value (SET the key if
# the value is larger than the number it holds). Returns 1 if written, 0 if a check failed
# (nothing written).
_COMMIT = """
local plan = cjson.decode(ARGV[1])
for _, c in ipairs(plan[1]) do
  local key, member, want = KEYS[c[2]], c[3], c[4]
  if c[1] == 'h' then
    local got = redis.call('HGET', key, member)
    if want == cjson.null then
      if got then return 0 end
    elseif got ~= want then
      return 0
    end
  elseif redis.call('SISMEMBER', key, member) ~= want then
    return 0
  end
end
for _, w in ipairs(plan[2]) do
  local op, key = w[1], KEYS[w[2]]
  if op == 'sadd' then
    redis.call('SADD', key, w[3])
  elseif op == 'hset' then
    redis.call('HSET', key, w[3], w[4])
  elseif op == 'hincrby' then
    redis.call('HINCRBY', key, w[3], w[4])
  elseif op == 'hincrbyfloat' then
    redis.call('HINCRBYFLOAT', key, w[3], w[4])
  elseif op == 'max' then
    if tonumber(w[3]) > tonumber(redis.call('GET', key) or '-1') then
      redis.call('SET', key, w[3])
    end
  end
end
return 1
"""


@dataclass(slots=True)
class _Snapshot:
    """What a step read, as Redis holds it (raw strings; None: absent)."""

    claimed: dict[EventKey, bool] = dataclasses.field(default_factory=dict)
    cells: dict[UnitKey, str | None] = dataclasses.field(default_factory=dict)
    exposed: dict[UnitKey, bool] = dataclasses.field(default_factory=dict)
    unit_totals: dict[UnitMetricKey, tuple[str | None, str | None]] = dataclasses.field(
        default_factory=dict
    )


class _RedisStep:
    """The counting primitives answered from a snapshot: each answer is recorded as a check and
    each change as a write, both sent to ``_COMMIT`` at the end."""

    def __init__(self, store: RedisIntake, snapshot: _Snapshot) -> None:
        self._store, self._snapshot = store, snapshot
        self._keys: dict[str, int] = {}
        self.checks: list[list[object]] = []
        self.writes: list[list[object]] = []

    def _k(self, experiment_id: str, name: str) -> int:
        return self._keys.setdefault(self._store._key(experiment_id, name), len(self._keys) + 1)

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def claim_event_ids(self, ids: Sequence[EventKey]) -> set[EventKey]:
        new: set[EventKey] = set()
        for exp, event_id in ids:
            claimed = self._snapshot.claimed.get((exp, event_id), False)
            self.checks.append(["s", self._k(exp, "events"), event_id, int(claimed)])
            if not claimed:
                self.writes.append(["sadd", self._k(exp, "events"), event_id])
                self._snapshot.claimed[(exp, event_id)] = True
                new.add((exp, event_id))
        return new

    def store_assignments(self, first: Mapping[UnitKey, StoredAssignment]) -> set[UnitKey]:
        stored = self.read_assignments(sorted(first))
        new: set[UnitKey] = set()
        for unit, (variant, period) in first.items():
            if unit not in stored:
                cell = _cell(variant, period)
                self.writes.append(["hset", self._k(unit[0], "assign"), unit[1], cell])
                self._snapshot.cells[unit] = cell
                new.add(unit)
        return new

    def read_assignments(self, units: Sequence[UnitKey]) -> dict[UnitKey, StoredAssignment]:
        found: dict[UnitKey, StoredAssignment] = {}
        for unit in units:
            cell = self._snapshot.cells.get(unit)
            self.checks.append(["h", self._k(unit[0], "assign"), unit[1], cell])
            if cell is not None:
                found[unit] = stored_assignment(cell)
        return found

    def mark_exposed(self, units: Sequence[UnitKey]) -> set[UnitKey]:
        new: set[UnitKey] = set()
        for unit in units:
            exposed = self._snapshot.exposed.get(unit, False)
            self.checks.append(["s", self._k(unit[0], "exposed"), unit[1], int(exposed)])
            if not exposed:
                self.writes.append(["sadd", self._k(unit[0], "exposed"), unit[1]])
                self._snapshot.exposed[unit] = True
                new.add(unit)
        return new

    def add_unit_totals(
        self, deltas: Mapping[UnitMetricKey, UnitTotals]
    ) -> dict[UnitMetricKey, UnitTotals]:
        before: dict[UnitMetricKey, UnitTotals] = {}
        for key, delta in deltas.items():
            exp, unit, metric = key
            count, total = self._snapshot.unit_totals.get(key, (None, None))
            k = self._k(exp, "units")
            c_field, t_field = _unit_fields(metric, unit)
            self.checks.append(["h", k, c_field, count])
            self.checks.append(["h", k, t_field, total])
            self.writes.append(["hincrby", k, c_field, str(delta.count)])
            self.writes.append(["hincrbyfloat", k, t_field, repr(delta.total)])
            before[key] = UnitTotals(int(count or 0), float(total or 0.0))
        return before

    def add_counters(self, increments: CounterIncrements) -> None:
        for (exp, variant, period), counts in increments.variants.items():
            k, cell = self._k(exp, "counters"), _cell(variant, period)
            for name in ("assigned_units", "exposures", "unique_units"):
                n = getattr(counts, name)
                if n:
                    self.writes.append(["hincrby", k, f"{cell}|{name}", str(n)])
        for (exp, variant, period, metric), t in increments.metrics.items():
            k, prefix = self._k(exp, "metrics"), f"{_cell(variant, period)}|{metric}|"
            self.writes.append(["hincrby", k, prefix + "count", str(t.count)])
            self.writes.append(["hincrby", k, prefix + "units", str(t.units)])
            self.writes.append(["hincrbyfloat", k, prefix + "sum", repr(t.sum)])
            self.writes.append(["hincrbyfloat", k, prefix + "sum_squares", repr(t.sum_squares)])
        for exp, moment in increments.latest.items():
            self.writes.append(["max", self._k(exp, "activity"), str(microseconds(moment))])

    def payload(self) -> str:
        return json.dumps([self.checks, self.writes], ensure_ascii=False, separators=(",", ":"))


def _by_experiment(
    keys: BatchKeys,
) -> list[tuple[str, list[str], list[str], list[tuple[str, str]]]]:
    """Per experiment (in order): its event ids, its units and its (metric, unit) pairs."""
    grouped: dict[str, tuple[list[str], list[str], list[tuple[str, str]]]] = {}
    for exp, event_id in keys.event_ids:
        grouped.setdefault(exp, ([], [], []))[0].append(event_id)
    for exp, unit in keys.units:
        grouped.setdefault(exp, ([], [], []))[1].append(unit)
    for exp, unit, metric in keys.unit_metrics:
        grouped.setdefault(exp, ([], [], []))[2].append((metric, unit))
    return [(exp, *lists) for exp, lists in sorted(grouped.items())]


def _unit_fields(metric: str, unit: str) -> tuple[str, str]:
    """The ``units`` hash fields of a unit's count and total for a metric."""
    return f"c|{metric}|{unit}", f"t|{metric}|{unit}"


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
    _commit: Script

    def _register_intake_scripts(self) -> None:
        self._commit = self._client.register_script(_COMMIT)

    @reachable
    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        first = StoredAssignment(variant, period)
        keys = BatchKeys((), ((experiment_id, unit_id),), ())

        def count(step: CountingStep) -> AssignResult:
            stored, created = count_assignment(step, experiment_id, unit_id, first)
            return AssignResult(stored.variant, created, stored.period)

        return self._count(keys, count, guess=True)

    @reachable
    def assign_and_expose(self, event: EventRecord) -> AssignResult:
        def count(step: CountingStep) -> AssignResult:
            stored, created, counted = count_exposure(step, event)
            return AssignResult(stored.variant, created, stored.period, exposed=counted)

        return self._count(batch_keys([event]), count, guess=True)

    @reachable
    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        if not events:
            return ApplyResult(applied=0, duplicates=0)

        def count(step: CountingStep) -> ApplyResult:
            counted = count_events(step, events)
            return ApplyResult(applied=counted.applied, duplicates=counted.duplicates)

        exposures_only = all(e.kind is EventKind.EXPOSURE for e in events)
        return self._count(batch_keys(events), count, guess=exposures_only)

    def _count(self, keys: BatchKeys, count: Callable[[CountingStep], T], *, guess: bool) -> T:
        """Run ``count`` on a snapshot of ``keys`` and commit its writes if nothing it read has
        changed; otherwise count again on a fresh snapshot. With ``guess`` the first attempt
        assumes nothing is stored yet (a new unit, a new event id: the common case of an
        exposure) and reads the snapshot in the same round trip as its commit, for the next
        attempt if the guess was wrong; otherwise a first round trip reads the snapshot."""
        snapshot = None if guess else self._read(keys)
        for attempt in range(MAX_ATTEMPTS):
            if attempt > 1:  # repeated conflicts on hot units: spread the retries out
                time.sleep(random.uniform(0.0, min(0.05, 0.0005 * 2**attempt)))
            step = _RedisStep(self, snapshot or _Snapshot())
            result = count(step)
            if not step.writes and snapshot is not None:
                # Nothing to change, and nothing read can change back (ids stay claimed,
                # assignments stay stored): the read is the answer.
                return result
            pipe = self._client.pipeline(transaction=False)
            if snapshot is None:
                self._queue_reads(pipe, keys)
            # EVALSHA queued by hand: a Script object in a pipeline costs a SCRIPT EXISTS round
            # trip on every execute. A server that lost the script answers NOSCRIPT, which
            # wrote nothing: load it and count again.
            pipe.evalsha(self._commit.sha, len(step.keys), *step.keys, step.payload())
            *reads, committed = pipe.execute(raise_on_error=False)
            for reply in reads:
                if isinstance(reply, Exception):
                    raise reply
            if committed == 1:
                return result
            if isinstance(committed, redis.exceptions.NoScriptError):
                self._client.script_load(_COMMIT)
                if snapshot is None:
                    snapshot = self._snapshot(keys, reads)
                continue
            if isinstance(committed, Exception):
                raise committed
            snapshot = self._snapshot(keys, reads) if snapshot is None else self._read(keys)
        raise StoreUnavailable(
            f"Redis at {self.location}: too many concurrent changes to the same units; "
            "send the batch again (its event ids make that safe)"
        )

    def _read(self, keys: BatchKeys) -> _Snapshot:
        pipe = self._client.pipeline(transaction=False)
        self._queue_reads(pipe, keys)
        return self._snapshot(keys, pipe.execute())

    def _queue_reads(self, pipe: Any, keys: BatchKeys) -> None:
        """Queue the reads of a snapshot: per experiment, which ids are claimed, the units'
        assignments, which units are exposed, the units' totals; ``_snapshot`` reads the
        replies in the same order."""
        for exp, ids, units, unit_metrics in _by_experiment(keys):
            if ids:
                pipe.smismember(self._key(exp, "events"), ids)
            if units:
                pipe.hmget(self._key(exp, "assign"), units)
                pipe.smismember(self._key(exp, "exposed"), units)
            if unit_metrics:
                fields = [f for m, u in unit_metrics for f in _unit_fields(m, u)]
                pipe.hmget(self._key(exp, "units"), fields)

    def _snapshot(self, keys: BatchKeys, replies: Sequence[Any]) -> _Snapshot:
        snapshot, at = _Snapshot(), iter(replies)
        for exp, ids, units, unit_metrics in _by_experiment(keys):
            if ids:
                for event_id, member in zip(ids, next(at), strict=True):
                    snapshot.claimed[(exp, event_id)] = bool(member)
            if units:
                for unit, cell in zip(units, next(at), strict=True):
                    snapshot.cells[(exp, unit)] = None if cell is None else text(cell)
                for unit, member in zip(units, next(at), strict=True):
                    snapshot.exposed[(exp, unit)] = bool(member)
            if unit_metrics:
                values = [None if v is None else text(v) for v in next(at)]
                for i, (metric, unit) in enumerate(unit_metrics):
                    key = (exp, unit, metric)
                    snapshot.unit_totals[key] = (values[2 * i], values[2 * i + 1])
        return snapshot

    @reachable
    def get_assignments(
        self, experiment_id: str, unit_ids: Iterable[str]
    ) -> dict[str, StoredAssignment]:
        units = list(dict.fromkeys(unit_ids))
        if not units:
            return {}
        cells = self._client.hmget(self._key(experiment_id, "assign"), units)
        return {u: stored_assignment(c) for u, c in zip(units, cells, strict=True) if c is not None}

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
        return EPOCH + timedelta(microseconds=int(cast(str, found)))
