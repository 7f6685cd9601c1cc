"""The optimistic counting step on Redis: one generic script (``STEP``: read, check, write),
the plan of one call of it, the snapshot a step answers from and the guesses of what is stored.

``RedisIntake`` (``abpilot.store.redis.intake``) runs the counting core on a ``RedisStep``: each
primitive is answered from a ``Snapshot`` (read, or guessed empty) and recorded in the ``Plan``
as a check and a write; the script applies the writes only if every check still holds. The
script holds no counting rule: it knows nothing of events, units or variants. (One plain
exposure takes a script of its own that does restate the rules for that case:
``abpilot.store.redis.expose_one``.)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import operator
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from abpilot.domain.counting import (
    BatchKeys,
    CounterIncrements,
    EventKey,
    UnitKey,
    UnitMetricKey,
    UnitTotals,
    VariantCounts,
)
from abpilot.domain.records import METRIC_FIELDS
from abpilot.store.base import StoredAssignment
from abpilot.store.event_ids import day_number
from abpilot.store.redis.event_ids import day_set, day_set_ttl
from abpilot.store.redis.history import microseconds, text


class PlanStore(Protocol):
    """What a plan asks of the store: its key names and its dedupe window."""

    event_id_retention_days: int

    def event_sets(self, day: int) -> list[str]: ...

    def _key(self, experiment_id: str, name: str) -> str: ...


# Read, check, then write: the one script of the event path, and it holds no counting rule.
# KEYS: the keys the step touches. ARGV[1]: JSON [reads, checks, writes]. A read is [kind, key
# index, members]: 'h' (HMGET of the fields) or 's' (SMISMEMBER of the members), or ['S', [key
# indexes], members] (1 where any of the sets holds the member). A check is a read with the values
# expected ([kind, key index, members, expected], null: no field), or ['n', [key indexes],
# members, []]: none of the sets holds any of the members. A write
# is [op, key index, args]: 'sadd' members, 'hset' field value ..., 'hincrby' or 'hincrbyfloat'
# field increment ..., 'max' value (SET the key if the value is larger than the number it
# holds) or 'expire' seconds (after the key's other writes). Returns JSON [1 if written else 0
# (a check failed: nothing written), what the reads found (before any write)].
STEP = """
local plan, step = cjson.decode(ARGV[1]), 1000
local memo = {}  -- key -> member -> what the reads found (nothing is written before the checks end)
local function fetch(kind, key, members, remember)
  local out, seen = {}, nil
  if remember then
    seen = memo[key] or {}
    memo[key] = seen
  end
  for i = 1, #members, step do
    local last = math.min(i + step - 1, #members)
    local command = kind == 'h' and 'HMGET' or 'SMISMEMBER'
    local got = redis.call(command, key, unpack(members, i, last))
    if i == 1 and last == #members then
      out = got
    else
      for j = 1, #got do out[i + j - 1] = got[j] end
    end
    if remember then
      for j = 1, #got do seen[members[i + j - 1]] = got[j] end
    end
  end
  return out
end
local function lookup(kind, key, members)  -- what the reads found, else read now
  local seen, out = memo[key], {}
  if not seen then return fetch(kind, key, members, false) end
  for j = 1, #members do
    local value = seen[members[j]]
    if value == nil then return fetch(kind, key, members, false) end
    out[j] = value
  end
  return out
end
local function any_of(keys, members, remember)  -- per member: 1 if any of the sets holds it
  local out = {}
  for j = 1, #members do out[j] = 0 end
  for _, k in ipairs(keys) do
    local got = fetch('s', KEYS[k], members, remember)
    for j = 1, #got do if got[j] == 1 then out[j] = 1 end end
  end
  return out
end
local found = {}
for n, r in ipairs(plan[1]) do
  if r[1] == 'S' then
    found[n] = any_of(r[2], r[3], true)
  else
    found[n] = fetch(r[1], KEYS[r[2]], r[3], true)
  end
end
for _, c in ipairs(plan[2]) do
  if c[1] == 'n' then
    for _, held in ipairs(any_of(c[2], c[3], false)) do
      if held == 1 then return cjson.encode({0, found}) end
    end
  else
    local got, want = lookup(c[1], KEYS[c[2]], c[3]), c[4]
    for j = 1, #want do
      local g, w = got[j], want[j]
      if (w == cjson.null and g) or (w ~= cjson.null and g ~= w) then
        return cjson.encode({0, found})
      end
    end
  end
end
for _, w in ipairs(plan[3]) do
  local op, key, args = w[1], KEYS[w[2]], w[3]
  if op == 'sadd' or op == 'hset' then
    for i = 1, #args, step do
      redis.call(op, key, unpack(args, i, math.min(i + step - 1, #args)))
    end
  elseif op == 'expire' then
    redis.call('EXPIRE', key, args[1])
  elseif op == 'max' then
    if tonumber(args[1]) > tonumber(redis.call('GET', key) or '-1') then
      redis.call('SET', key, args[1])
    end
  else
    for i = 1, #args, 2 do
      redis.call(op, key, args[i], args[i + 1])
    end
  end
end
return cjson.encode({1, found})
"""
STEP_SHA = hashlib.sha1(STEP.encode(), usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class Snapshot:
    """What a step read, as Redis holds it (raw strings; None: absent)."""

    claimed: dict[EventKey, bool] = dataclasses.field(default_factory=dict)
    cells: dict[UnitKey, str | None] = dataclasses.field(default_factory=dict)
    exposed: dict[UnitKey, bool] = dataclasses.field(default_factory=dict)
    unit_totals: dict[UnitMetricKey, tuple[str | None, str | None]] = dataclasses.field(
        default_factory=dict
    )

    @property
    def empty(self) -> bool:
        """Nothing the step reads is stored yet."""
        return not (
            any(self.claimed.values())
            or any(c is not None for c in self.cells.values())
            or any(self.exposed.values())
            or any(t != (None, None) for t in self.unit_totals.values())
        )


class KnownUnits:
    """What this process has seen of units, for better guesses: a unit's assignment cell and
    that it was exposed never change once stored, so a returning unit is guessed right and
    counted in one call. Only guesses use this: the script checks every value guessed, so a
    stale entry (an experiment deleted, a store restored) costs a retry, never a wrong count."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._units: OrderedDict[UnitKey, tuple[str, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def guess(self, units: Iterable[UnitKey]) -> Snapshot:
        """A snapshot with what is known of ``units`` and nothing stored for the rest."""
        guessed = Snapshot()
        for unit in units:
            found = self._units.get(unit)
            if found is not None:
                guessed.cells[unit] = found[0]
                if found[1]:
                    guessed.exposed[unit] = True
        return guessed

    def remember(self, state: Snapshot) -> None:
        """Remember the stored assignments (and exposure) of ``state``: a snapshot read, or
        one a successful commit made true."""
        with self._lock:
            for unit, cell in state.cells.items():
                if cell is not None:
                    self._units[unit] = (cell, state.exposed.get(unit, False))
            while len(self._units) > self._size:
                self._units.popitem(last=False)


class Plan:
    """One call of ``STEP``: its keys (numbered as they are first used), reads, checks and
    writes, grouped per key."""

    def __init__(self, store: PlanStore, claimed_at: datetime) -> None:
        self._store = store
        self.claimed_at, self.retention = claimed_at, store.event_id_retention_days
        self._keys: dict[tuple[str, str], int] = {}
        self.reads: list[list[object]] = []
        # (kind, key index or indexes) -> (members, expected); (op, key index) -> args
        self.checks: dict[tuple[str, int | tuple[int, ...]], tuple[list[str], list[object]]] = {}
        self.writes: dict[tuple[str, int], list[str]] = {}
        # Experiments whose stored definition must still have this version (read and checked).
        self.guards: dict[str, int] = {}

    @functools.cached_property
    def event_sets(self) -> list[str]:
        """The sets a claim reads: the one set of ids (window 0), or the window's day sets
        (found when a claim needs them: an assignment claims no id)."""
        return self._store.event_sets(day_number(self.claimed_at))

    def key(self, experiment_id: str, name: str) -> int:
        return self._keys.setdefault((experiment_id, name), len(self._keys) + 1)

    def event_keys(self, experiment_id: str) -> list[int]:
        """The indexes of the experiment's sets of claimed ids that a claim checks."""
        return [self.key(experiment_id, name) for name in self.event_sets]

    def check(self, kind: str, experiment_id: str, name: str) -> tuple[list[str], list[object]]:
        return self.checks.setdefault((kind, self.key(experiment_id, name)), ([], []))

    def write(self, op: str, experiment_id: str, name: str) -> list[str]:
        return self.writes.setdefault((op, self.key(experiment_id, name)), [])

    def read_snapshot(self, keys: BatchKeys) -> None:
        """Read what ``keys`` name: ``snapshot`` turns the answer into a ``Snapshot``."""
        for exp, ids, units, unit_metrics in by_experiment(keys):
            if ids:
                self.reads.append(["S", self.event_keys(exp), ids])
            if units:
                self.reads.append(["h", self.key(exp, "assign"), units])
                self.reads.append(["s", self.key(exp, "exposed"), units])
            if unit_metrics:
                fields = [f for metric, unit in unit_metrics for f in unit_fields(metric, unit)]
                self.reads.append(["h", self.key(exp, "units"), fields])

    def guard(self, versions: Mapping[str, int]) -> None:
        """Write nothing unless each experiment's definition still has its version: read (so a
        refusal tells which changed) and checked by the script before any write."""
        self.guards = dict(versions)
        for exp, version in self.guards.items():
            self.checks[("h", self.key(exp, "def"))] = (["version"], [str(version)])

    def changed(self, found: Any) -> str | None:
        """After a refused call: an experiment whose definition is not the guarded version."""
        if not self.guards or not isinstance(found, list):
            return None
        tail = found[len(found) - len(self.guards) :]
        for (exp, version), got in zip(self.guards.items(), tail, strict=True):
            if got != [str(version)]:
                return exp
        return None

    def arguments(self) -> tuple[int, list[str]]:
        """The number of keys, and the keys followed by the JSON plan: EVALSHA's arguments."""
        reads = self.reads + [["h", self.key(exp, "def"), ["version"]] for exp in self.guards]
        checks = [[kind, k, *lists] for (kind, k), lists in self.checks.items()]
        writes = [[op, k, args] for (op, k), args in self.writes.items()]
        plan = json.dumps([reads, checks, writes], ensure_ascii=False, separators=(",", ":"))
        keys = [self._store._key(exp, name) for exp, name in self._keys]
        return len(keys), [*keys, plan]


def snapshot(keys: BatchKeys, found: Any) -> Snapshot:
    """The snapshot from what ``Plan.read_snapshot``'s reads found, in their order."""
    result, at = Snapshot(), iter(found if isinstance(found, list) else [])
    for exp, ids, units, unit_metrics in by_experiment(keys):
        if ids:
            result.claimed.update(((exp, i), bool(m)) for i, m in zip(ids, next(at), strict=True))
        if units:
            result.cells.update(((exp, u), c or None) for u, c in zip(units, next(at), strict=True))
            result.exposed.update(((exp, u), bool(m)) for u, m in zip(units, next(at), strict=True))
        if unit_metrics:
            values = [v or None for v in next(at)]
            for i, (metric, unit) in enumerate(unit_metrics):
                result.unit_totals[(exp, unit, metric)] = (values[2 * i], values[2 * i + 1])
    return result


class RedisStep:
    """The counting primitives answered from a snapshot: each answer is recorded in the plan
    as a check and each change as a write."""

    def __init__(self, plan: Plan, snapshot: Snapshot) -> None:
        self._plan, self._snapshot = plan, snapshot

    def claim_event_ids(self, ids: Sequence[EventKey]) -> set[EventKey]:
        if self._plan.event_sets == ["events"]:  # window 0: one set, kept forever
            return self._add_members(ids, "events", self._snapshot.claimed)
        # The window's day sets: a new id is in none of them (checked at commit) and goes into
        # the set of its claim's day, which expires once the window has passed. A duplicate
        # needs no check: an id read as claimed was claimed inside the window.
        plan, claimed, new = self._plan, self._snapshot.claimed, set()
        day = day_number(plan.claimed_at)
        for exp, group in itertools.groupby(ids, key=operator.itemgetter(0)):
            fresh = [pair for pair in group if not claimed.get(pair, False)]
            if not fresh:
                continue
            absent = plan.checks.setdefault(("n", tuple(plan.event_keys(exp))), ([], []))[0]
            absent.extend(pair[1] for pair in fresh)
            plan.write("sadd", exp, day_set(day)).extend(pair[1] for pair in fresh)
            plan.writes[("expire", plan.key(exp, day_set(day)))] = [
                str(day_set_ttl(day, plan.retention, plan.claimed_at))
            ]
            plan.writes[("sadd", plan.key(exp, "event_days"))] = [str(day)]
            for pair in fresh:
                claimed[pair] = True
                new.add(pair)
        return new

    def store_assignments(self, first: Mapping[UnitKey, StoredAssignment]) -> set[UnitKey]:
        units = sorted(first)  # by experiment
        cells = self._snapshot.cells
        if not cells:  # nothing read is stored (a guess): every unit is new, checked so
            return self._store_new(units, first)
        stored = self.read_assignments(units)
        new: set[UnitKey] = set()
        for exp, group in itertools.groupby(units, key=operator.itemgetter(0)):
            sets = self._plan.write("hset", exp, "assign")
            for unit in group:
                if unit not in stored:
                    variant, period = first[unit]
                    cell = cells[unit] = _cell(variant, period)
                    sets.extend((unit[1], cell))
                    new.add(unit)
        return new

    def _store_new(
        self, units: Sequence[UnitKey], first: Mapping[UnitKey, StoredAssignment]
    ) -> set[UnitKey]:
        """``store_assignments`` when the snapshot holds no assignment: each unit's cell is
        checked empty and written."""
        cells = self._snapshot.cells
        for exp, group in itertools.groupby(units, key=operator.itemgetter(0)):
            members, expected = self._plan.check("h", exp, "assign")
            sets = self._plan.write("hset", exp, "assign")
            for unit in group:
                variant, period = first[unit]
                cell = cells[unit] = f"{variant}|{period:d}"
                members.append(unit[1])
                sets.extend((unit[1], cell))
            expected.extend(itertools.repeat(None, len(members) - len(expected)))
        return set(units)

    def read_assignments(self, units: Sequence[UnitKey]) -> dict[UnitKey, StoredAssignment]:
        found: dict[UnitKey, StoredAssignment] = {}
        cells = self._snapshot.cells
        for exp, group in itertools.groupby(units, key=operator.itemgetter(0)):
            members, expected = self._plan.check("h", exp, "assign")
            for unit in group:
                cell = cells.get(unit)
                members.append(unit[1])
                expected.append(cell)
                if cell is not None:
                    found[unit] = stored_assignment(cell)
        return found

    def mark_exposed(self, units: Sequence[UnitKey]) -> set[UnitKey]:
        return self._add_members(units, "exposed", self._snapshot.exposed)

    def _add_members(
        self, pairs: Sequence[tuple[str, str]], name: str, known: dict[tuple[str, str], bool]
    ) -> set[tuple[str, str]]:
        """Add each (experiment, member) to the experiment's set ``name`` unless ``known``
        (what was read) has it; the pairs added. Each answer is checked at commit."""
        new: set[tuple[str, str]] = set()
        for exp, group in itertools.groupby(pairs, key=operator.itemgetter(0)):
            members, expected = self._plan.check("s", exp, name)
            adds = self._plan.write("sadd", exp, name)
            if not known:  # nothing read is held (a guess): every member is new
                fresh = list(group)
                names = [pair[1] for pair in fresh]
                members.extend(names)
                expected.extend(itertools.repeat(0, len(names)))
                adds.extend(names)
                new.update(fresh)
                continue
            for pair in group:
                found = known.get(pair, False)
                members.append(pair[1])
                expected.append(int(found))
                if not found:
                    adds.append(pair[1])
                    known[pair] = True
                    new.add(pair)
        known.update(dict.fromkeys(new, True))
        return new

    def add_unit_totals(
        self, deltas: Mapping[UnitMetricKey, UnitTotals]
    ) -> dict[UnitMetricKey, UnitTotals]:
        before: dict[UnitMetricKey, UnitTotals] = {}
        stored = self._snapshot.unit_totals
        for exp, group in itertools.groupby(sorted(deltas), key=operator.itemgetter(0)):
            members, expected = self._plan.check("h", exp, "units")
            counts = self._plan.write("hincrby", exp, "units")
            totals = self._plan.write("hincrbyfloat", exp, "units")
            for key in group:
                delta = deltas[key]
                count, total = stored.get(key, (None, None))
                c_field, t_field = unit_fields(key[2], key[1])
                members.extend((c_field, t_field))
                expected.extend((count, total))
                counts.extend((c_field, str(delta.count)))
                totals.extend((t_field, repr(delta.total)))
                before[key] = UnitTotals(int(count or 0), float(total or 0.0))
        return before

    def add_counters(self, increments: CounterIncrements) -> None:
        for (exp, variant, period), counts in increments.variants.items():
            args, cell = self._plan.write("hincrby", exp, "counters"), _cell(variant, period)
            for name, n in zip(VariantCounts._fields, counts, strict=True):
                if n:
                    args.extend((f"{cell}|{name}", str(n)))
        for (exp, variant, period, metric), t in increments.metrics.items():
            prefix = f"{_cell(variant, period)}|{metric}|"
            for name, kind in METRIC_FIELDS.items():
                op = "hincrby" if kind is int else "hincrbyfloat"
                self._plan.write(op, exp, "metrics").extend((prefix + name, repr(getattr(t, name))))
        for exp, moment in increments.latest.items():
            self._plan.writes[("max", self._plan.key(exp, "activity"))] = [
                str(microseconds(moment))
            ]


def by_experiment(
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


def unit_fields(metric: str, unit: str) -> tuple[str, str]:
    """The ``units`` hash fields of a unit's count and total for a metric."""
    return f"c|{metric}|{unit}", f"t|{metric}|{unit}"


def stored_assignment(cell: bytes | str) -> StoredAssignment:
    """A stored assignment ``<variant>|<period>``; a bare variant is from before periods: 0."""
    variant, _, period = text(cell).partition("|")
    return StoredAssignment(variant, int(period) if period else 0)


def _cell(variant: str, period: int) -> str:
    return f"{variant}|{period:d}"
