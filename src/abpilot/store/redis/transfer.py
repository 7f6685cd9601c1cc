"""Export and import for the Redis store: read the per-unit keys, restore a whole experiment in
one MULTI/EXEC (see ``abpilot.store.state`` and the key layout in ``abpilot.store.redis``).

The restore WATCHes the experiment's definition and the key index, checks that neither the id
nor the key is taken, then queues every write; EXEC applies all of it or, when someone else
touched a watched key in between, none. Contextual cells and feedback members are JSON encoded
by Lua's cjson everywhere else, so a small script queued in the same transaction writes those,
byte for byte as the scripts that count them later will look them up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from abpilot.domain.derived import covariate_cell
from abpilot.domain.errors import ConcurrentModification
from abpilot.domain.records import UnitMetricTotals
from abpilot.store.base import experiment_taken
from abpilot.store.codec import as_utc, experiment_to_dict
from abpilot.store.counters import stored_cells
from abpilot.store.redis.event_ids import RedisEventIds
from abpilot.store.redis.history import _document as allocation_document
from abpilot.store.redis.history import microseconds, reachable, text
from abpilot.store.redis.step import stored_assignment
from abpilot.store.state import ExperimentState, UnitState

T = TypeVar("T")
PAGE = 10_000  # units per HMGET of the per-unit read
SCAN = 50_000  # fields HSCAN looks at per call of the per-unit read (a hint to the server)
_CHUNK = 1000

# KEYS: feedback, states. ARGV[1]: JSON [[decision id, event], ...]; ARGV[2]: JSON
# [[context key, arm, pulls, successes, failures, updated_at or null], ...] (counts as strings).
_RESTORE_CONTEXTUAL = """
for _, pair in ipairs(cjson.decode(ARGV[1])) do
  redis.call('SADD', KEYS[1], cjson.encode({pair[1], pair[2]}))
end
for _, s in ipairs(cjson.decode(ARGV[2])) do
  local cell = cjson.encode({s[1], s[2]})
  redis.call('HSET', KEYS[2], 'pulls|' .. cell, s[3], 'successes|' .. cell, s[4],
             'failures|' .. cell, s[5])
  if s[6] ~= cjson.null then redis.call('HSET', KEYS[2], 'updated_at|' .. cell, s[6]) end
end
return 1
"""


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class RedisTransfer(RedisEventIds):
    """Mixed into ``RedisStore``: needs ``_client``, ``_prefix`` and ``location``."""

    _client: redis.Redis
    location: str
    _restore_contextual: Script
    _create: Script

    def _experiment_keys(self, experiment_id: str) -> list[str]:
        raise NotImplementedError  # RedisStore's

    def _register_transfer_scripts(self) -> None:
        self._restore_contextual = self._client.register_script(_RESTORE_CONTEXTUAL)

    @reachable
    def get_unit_state(self, experiment_id: str) -> UnitState:
        pipe = self._client.pipeline(transaction=True)  # one snapshot of the three keys
        pipe.hgetall(self._key(experiment_id, "assign"))
        pipe.smembers(self._key(experiment_id, "exposed"))
        pipe.hgetall(self._key(experiment_id, "units"))
        assign, exposed, units = pipe.execute()
        totals: dict[tuple[str, str], list[Any]] = {}
        for field, value in units.items():
            kind, metric, unit = text(field).split("|", 2)
            found = totals.setdefault((unit, metric), [0, 0.0])
            if kind == "c":
                found[0] = int(value)
            else:
                found[1] = float(value)
        return UnitState(
            assignments={text(u): stored_assignment(c) for u, c in assign.items()},
            exposed=frozenset(text(u) for u in exposed),
            totals={key: (int(c), float(t)) for key, (c, t) in totals.items()},
            event_ids=self._read_event_ids(experiment_id),
        )

    @reachable
    def get_unit_totals(
        self, experiment_id: str, metric: str, covariate: str | None = None
    ) -> UnitMetricTotals:
        """One walk of the ``units`` hash (HSCAN of the metric's fields, large pages, each page
        read as a whole), then the units' assignments and covariates by HMGET pages sent in one
        pipeline: exact, though not one snapshot (what changes meanwhile may be in or out)."""
        key = self._key(experiment_id, "units")
        skip = len(f"c|{metric}|")  # a field is <c or t>|<metric>|<unit>
        counts: dict[str, int] = {}
        sums: dict[str, float] = {}
        cursor: int = 0
        while True:
            cursor, page = self._client.hscan(key, cursor, match=f"?|{metric}|*", count=SCAN)
            assert isinstance(page, dict)  # fields with their values (no ``no_values``)
            for field, value in page.items():
                name = text(field)
                if name[0] == "c":
                    counts[name[skip:]] = int(value)
                else:
                    sums[name[skip:]] = float(value)
            if not cursor:
                break
        units = [u for u, count in counts.items() if count > 0]
        if not units:
            return UnitMetricTotals()
        pages = [units[start : start + PAGE] for start in range(0, len(units), PAGE)]
        fact = None if covariate is None else covariate_cell(covariate)
        with self._client.pipeline(transaction=False) as pipe:
            for page_units in pages:
                pipe.hmget(self._key(experiment_id, "assign"), page_units)
                if fact is not None:
                    pipe.hmget(key, [f"t|{fact}|{u}" for u in page_units])
            replies: list[Any] = pipe.execute()
        step = 1 if fact is None else 2
        cells = [cell for reply in replies[::step] for cell in reply]
        xs = [x for reply in replies[1::2] for x in reply] if fact is not None else None
        kept = [i for i, cell in enumerate(cells) if cell is not None]
        assigned = [stored_assignment(cells[i]) for i in kept]
        return UnitMetricTotals(
            units=[units[i] for i in kept],
            variants=[a.variant for a in assigned],
            periods=[a.period for a in assigned],
            counts=[counts[units[i]] for i in kept],
            totals=[sums.get(units[i], 0.0) for i in kept],
            covariates=[0.0] * len(kept) if xs is None else [float(xs[i] or 0.0) for i in kept],
        )

    @reachable
    def restore_experiment(self, state: ExperimentState) -> None:
        if self._cluster:
            self._restore_in_steps(state)
            return
        experiment = state.experiment
        definition = self._key(experiment.id, "def")
        with self._client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(definition, self._index_keys)  # type: ignore[no-untyped-call]
                if pipe.exists(definition):
                    raise experiment_taken("id", experiment.id)
                if pipe.hexists(self._index_keys, experiment.key):
                    raise experiment_taken("key", experiment.key)
                pipe.multi()
                pipe.hset(
                    definition,
                    mapping={
                        "doc": _json(experiment_to_dict(experiment)),
                        "version": experiment.version,
                        "key": experiment.key,
                    },
                )
                pipe.hset(self._index_keys, experiment.key, experiment.id)
                pipe.zadd(
                    self._index_ids, {experiment.id: as_utc(experiment.created_at).timestamp()}
                )
                self._queue_state(pipe, state)
                pipe.execute()
            except redis.WatchError as error:
                raise ConcurrentModification(
                    f"experiment '{experiment.key}' was written while it was being imported; retry"
                ) from error

    def _restore_in_steps(self, state: ExperimentState) -> None:
        """On a cluster the definition (global tag) and the recorded state (the experiment's
        tag) sit on two slots: the state is written first, in one MULTI/EXEC that also clears
        what an interrupted import may have left, and the definition last, by the create
        script, which checks the id and key. Until then nothing refers to the state; if the
        id or key was taken meanwhile, the state written is removed again."""
        experiment = state.experiment
        if self._client.exists(self._definition(experiment.id)):
            raise experiment_taken("id", experiment.id)
        if self._client.hexists(self._index_keys, experiment.key):
            raise experiment_taken("key", experiment.key)
        self._client.script_load(_RESTORE_CONTEXTUAL)  # on every primary: EVALSHA in MULTI
        keys = self._experiment_keys(experiment.id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.unlink(*keys)
            self._queue_state(pipe, state)
            pipe.execute()
        outcome = text(
            self._create(
                keys=[self._definition(experiment.id), self._index_keys, self._index_ids],
                args=[
                    experiment.id,
                    experiment.key,
                    _json(experiment_to_dict(experiment)),
                    experiment.version,
                    as_utc(experiment.created_at).timestamp(),
                ],
            )
        )
        if outcome != "ok":
            self._client.unlink(*keys)
            if outcome == "id_taken":
                raise experiment_taken("id", experiment.id)
            raise experiment_taken("key", experiment.key)

    def _queue_state(self, pipe: Any, state: ExperimentState) -> None:
        """Queue every write of the experiment's recorded state on ``pipe`` (in MULTI)."""
        exp = state.experiment.id

        def hset(name: str, fields: Mapping[str, object]) -> None:
            items = list(fields.items())
            for batch in _batches(items):
                pipe.hset(self._key(exp, name), mapping=dict(batch))

        def add(name: str, members: Sequence[str], command: str = "sadd") -> None:
            for batch in _batches(members):
                getattr(pipe, command)(self._key(exp, name), *batch)

        units = state.units
        hset("assign", {u: f"{a.variant}|{a.period:d}" for u, a in units.assignments.items()})
        add("exposed", sorted(units.exposed))
        unit_fields: dict[str, object] = {}
        for (unit, metric), (count, total) in units.totals.items():
            unit_fields[f"c|{metric}|{unit}"] = count
            unit_fields[f"t|{metric}|{unit}"] = repr(float(total))
        hset("units", unit_fields)
        self._queue_event_ids(pipe, exp, units.event_ids)
        counters: dict[str, object] = {}
        metrics: dict[str, object] = {}
        for period, by_variant in state.counters.items():
            for variant, c in by_variant.items():
                cell = f"{variant}|{period:d}"
                for name in ("assigned_units", "exposures", "unique_units"):
                    if getattr(c, name):
                        counters[f"{cell}|{name}"] = getattr(c, name)
                for metric, t in stored_cells(c).items():
                    f = f"{cell}|{metric}|"
                    metrics.update({f"{f}count": t.count, f"{f}units": t.units})
                    metrics.update({f"{f}sum": repr(t.sum), f"{f}sum_squares": repr(t.sum_squares)})
        hset("counters", counters)
        hset("metrics", metrics)
        if state.last_event_at is not None:
            pipe.set(self._key(exp, "activity"), str(microseconds(state.last_event_at)))
        hset(
            "daily",
            {
                f"{r.day.isoformat()}|{r.variant}": _json([r.impressions, r.clicks])
                for r in state.daily
            },
        )
        raw = [
            _json(
                {
                    "received_at": as_utc(r.received_at).isoformat(),
                    "day": r.day.isoformat(),
                    "payload": r.payload,
                }
            )
            for r in state.raw
        ]
        add("raw", raw, "rpush")
        add("allocations", [_json(allocation_document(r)) for r in state.allocations], "rpush")
        self._queue_decisions(pipe, state)

    def _queue_decisions(self, pipe: Any, state: ExperimentState) -> None:
        exp = state.experiment.id
        documents: dict[str, str] = {}
        counts: dict[str, int | str] = {}
        times: dict[str, int] = {}
        latest: dict[str, Any] = {}  # unit -> its latest decision (by time, then id)
        for d in state.decisions:
            moment = as_utc(d.decided_at)
            documents[d.id] = _json(
                {
                    "unit_id": d.unit_id,
                    "context_key": d.context_key,
                    "context": dict(d.context),
                    "arm": d.arm,
                    "propensity": d.propensity,
                    "policy": d.policy,
                    "method": d.method,
                    "decided_at": moment.isoformat(),
                }
            )
            if d.successes:
                counts[f"{d.id}|s"] = d.successes
            if d.failures:
                counts[f"{d.id}|f"] = d.failures
            if d.rating is not None:
                counts[f"{d.id}|r"] = repr(float(d.rating))
            times[d.id] = microseconds(moment)
            if d.unit_id is not None:
                known = latest.get(d.unit_id)
                if known is None or (as_utc(known.decided_at), known.id) < (moment, d.id):
                    latest[d.unit_id] = d
        units = {unit: d.id for unit, d in latest.items()}
        for name, fields in (
            ("decisions", documents),
            ("decision_counts", counts),
            ("unit_decisions", units),
        ):
            for batch in _batches(list(fields.items())):
                pipe.hset(self._key(exp, name), mapping=dict(batch))
        for batch in _batches(list(times.items())):
            pipe.zadd(self._key(exp, "decision_times"), dict(batch))
        states = [
            [
                a.context_key,
                a.arm,
                str(a.pulls),
                str(a.successes),
                str(a.failures),
                None if a.updated_at is None else as_utc(a.updated_at).isoformat(),
            ]
            for a in state.arm_states
        ]
        feedback = [list(pair) for pair in state.feedback]
        for start in range(0, max(len(feedback), len(states), 1), _CHUNK):
            self._restore_contextual(
                keys=[self._key(exp, "feedback"), self._key(exp, "states")],
                args=[
                    _json(feedback[start : start + _CHUNK]),
                    _json(states[start : start + _CHUNK]),
                ],
                client=pipe,
            )
