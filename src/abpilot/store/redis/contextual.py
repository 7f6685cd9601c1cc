"""Contextual bandits for the Redis store: the decision log, feedback, and per-context arm states.

Keys, beside the experiment's others under its hash tag (``p`` is the store's prefix):

- ``p:{id}:decisions``        hash decision id -> JSON document (everything but the counts)
- ``p:{id}:decision_counts``  hash ``<decision id>|s`` and ``<decision id>|f`` -> successes and
                              failures applied to the decision; ``<decision id>|r`` -> the value
                              of its rating feedback
- ``p:{id}:unit_decisions``   hash unit id -> the id of the unit's latest decision (by
                              ``decided_at``, then id in byte order), kept by the record script:
                              feedback that names a unit finds its decision with one HGET
- ``p:{id}:decision_times``   sorted set of decision ids scored by ``decided_at`` in integer
                              microseconds since the epoch (exact in a double up to year 2255);
                              equal scores sort by id, as ``list_decisions`` wants
- ``p:{id}:feedback``         set of JSON ``[decision id, event]``: feedback already applied
- ``p:{id}:states``           hash ``<counter>|<cell>`` -> integer, for counter ``pulls``,
                              ``successes``, ``failures``, and ``updated_at|<cell>`` -> ISO time,
                              where the cell is the JSON array ``[context key, arm]``

Context keys contain ``|`` and ``=``, and events are free text, so pairs are JSON-encoded; the
counter name before the first ``|`` never contains one. Cells and feedback members are encoded
only by the scripts (cjson), never by Python, so the same pair always gives the same bytes;
Python only decodes them.

Recording a decision and applying feedback are one Lua script each: the duplicate check, the
log entry and every increment happen in one step. Feedback reads the decision's context and arm
from the stored document inside its script.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import redis
from redis.commands.core import Script

from abpilot.domain.errors import DuplicateKey, NotFound
from abpilot.store.base import (
    GLOBAL_CONTEXT,
    ArmState,
    Decision,
    FeedbackOutcome,
    check_context_key,
)
from abpilot.store.codec import as_utc
from abpilot.store.redis.history import microseconds, reachable, text

CONTEXTUAL_KEYS = (
    "decisions",
    "decision_counts",
    "decision_times",
    "feedback",
    "states",
    "unit_decisions",
)
_STATE_COUNTERS = ("pulls", "successes", "failures")
COUNT_FIELDS = ("s", "f", "r")  # decision_counts fields: successes, failures, rating

# KEYS: decisions, decision_times, states, unit_decisions.
# ARGV: decision id, document, score, context key, arm, updated_at (ISO), GLOBAL_CONTEXT,
# '1' and the unit id when the decision has a unit (else '0' and '').
# Returns 1 when recorded, 0 (writing nothing) when the id is taken. Ids are compared byte by
# byte (UTF-8 byte order is code point order; Lua's own comparison follows the server's locale).
_RECORD = """
local function after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
for _, context in ipairs({ARGV[4], ARGV[7]}) do
  local cell = cjson.encode({context, ARGV[5]})
  redis.call('HINCRBY', KEYS[3], 'pulls|' .. cell, 1)
  redis.call('HSET', KEYS[3], 'updated_at|' .. cell, ARGV[6])
end
if ARGV[8] == '1' then
  local current = redis.call('HGET', KEYS[4], ARGV[9])
  local latest = not current
  if current then
    local mine, theirs = tonumber(ARGV[3]), tonumber(redis.call('ZSCORE', KEYS[2], current))
    latest = theirs == nil or mine > theirs or (mine == theirs and after(ARGV[1], current))
  end
  if latest then redis.call('HSET', KEYS[4], ARGV[9], ARGV[1]) end
end
return 1
"""

# KEYS: decisions, decision_counts, feedback, states.
# ARGV: decision id, event, outcome, updated_at (ISO), GLOBAL_CONTEXT, rating ('' for none).
# Returns -1 (writing nothing) when the decision does not exist, 0 when this event was applied
# to it before, 1 when applied now.
_FEEDBACK = """
local doc = redis.call('HGET', KEYS[1], ARGV[1])
if not doc then return -1 end
if redis.call('SADD', KEYS[3], cjson.encode({ARGV[1], ARGV[2]})) == 0 then return 0 end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], ARGV[1] .. '|r', ARGV[6]) end
local counter, short
if ARGV[3] == 'success' then counter, short = 'successes', 's'
elseif ARGV[3] == 'failure' then counter, short = 'failures', 'f'
else return 1 end
local decision = cjson.decode(doc)
redis.call('HINCRBY', KEYS[2], ARGV[1] .. '|' .. short, 1)
for _, context in ipairs({decision.context_key, ARGV[5]}) do
  local cell = cjson.encode({context, decision.arm})
  redis.call('HINCRBY', KEYS[4], counter .. '|' .. cell, 1)
  redis.call('HSET', KEYS[4], 'updated_at|' .. cell, ARGV[4])
end
return 1
"""


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class RedisContextual:
    """Mixed into ``RedisStore``: needs ``_client``, ``_key`` and ``location``."""

    _client: redis.Redis
    location: str
    _key: Callable[[str, str], str]
    _record_decision: Script
    _apply_feedback: Script

    def _register_contextual_scripts(self) -> None:
        self._record_decision = self._client.register_script(_RECORD)
        self._apply_feedback = self._client.register_script(_FEEDBACK)

    @reachable
    def record_decision(self, decision: Decision) -> None:
        check_context_key(decision)
        exp, moment = decision.experiment_id, as_utc(decision.decided_at)
        document = {
            "unit_id": decision.unit_id,
            "context_key": decision.context_key,
            "context": dict(decision.context),
            "arm": decision.arm,
            "propensity": decision.propensity,
            "policy": decision.policy,
            "method": decision.method,
            "decided_at": moment.isoformat(),
        }
        recorded = self._record_decision(
            keys=[
                self._key(exp, "decisions"),
                self._key(exp, "decision_times"),
                self._key(exp, "states"),
                self._key(exp, "unit_decisions"),
            ],
            args=[
                decision.id,
                _json(document),
                microseconds(moment),
                decision.context_key,
                decision.arm,
                moment.isoformat(),
                GLOBAL_CONTEXT,
                "0" if decision.unit_id is None else "1",
                decision.unit_id or "",
            ],
        )
        if not int(recorded):
            raise DuplicateKey(
                f"decision '{decision.id}' already exists in experiment {exp}", field="id"
            )

    @reachable
    def get_decision(self, experiment_id: str, decision_id: str) -> Decision | None:
        found = self._load_decisions(experiment_id, [decision_id])
        return found[0] if found else None

    @reachable
    def apply_feedback(
        self,
        experiment_id: str,
        decision_id: str,
        event: str,
        outcome: FeedbackOutcome,
        at: datetime,
        rating: float | None = None,
    ) -> bool:
        applied = int(
            self._apply_feedback(
                keys=[
                    self._key(experiment_id, name)
                    for name in ("decisions", "decision_counts", "feedback", "states")
                ],
                args=[
                    decision_id,
                    event,
                    outcome.value,
                    as_utc(at).isoformat(),
                    GLOBAL_CONTEXT,
                    "" if rating is None else repr(float(rating)),
                ],
            )
        )
        if applied < 0:
            raise NotFound(
                f"decision '{decision_id}' does not exist in experiment {experiment_id}",
                field="decision_id",
            )
        return applied == 1

    @reachable
    def get_bandit_states(self, experiment_id: str) -> list[ArmState]:
        fields = self._client.hgetall(self._key(experiment_id, "states"))
        cells: dict[tuple[str, str], dict[str, str]] = {}
        for field, value in fields.items():
            name, cell = text(field).split("|", 1)
            context_key, arm = json.loads(cell)
            cells.setdefault((context_key, arm), {})[name] = text(value)
        return [
            ArmState(
                context_key=context_key,
                arm=arm,
                **{n: int(values.get(n, 0)) for n in _STATE_COUNTERS},
                updated_at=_time(values.get("updated_at")),
            )
            for (context_key, arm), values in sorted(cells.items())
        ]

    @reachable
    def list_feedback(self, experiment_id: str) -> list[tuple[str, str]]:
        members = self._client.smembers(self._key(experiment_id, "feedback"))
        pairs = (json.loads(text(m)) for m in members)
        return sorted((str(d), str(e)) for d, e in pairs)

    @reachable
    def latest_unit_decision(self, experiment_id: str, unit_id: str) -> Decision | None:
        found = self._client.hget(self._key(experiment_id, "unit_decisions"), unit_id)
        if found is None:
            return None
        loaded = self._load_decisions(experiment_id, [text(cast(str, found))])
        return loaded[0] if loaded else None

    @reachable
    def list_decisions(self, experiment_id: str, since: datetime | None = None) -> list[Decision]:
        low = "-inf" if since is None else microseconds(since)
        ids = self._client.zrangebyscore(self._key(experiment_id, "decision_times"), low, "+inf")
        found = self._load_decisions(experiment_id, [text(cast(str, i)) for i in ids])
        return sorted(found, key=lambda d: (d.decided_at, d.id))

    def _load_decisions(self, experiment_id: str, ids: Sequence[str]) -> list[Decision]:
        """The stored decisions among ``ids``, in that order, with their counts."""
        if not ids:
            return []
        pipe = self._client.pipeline(transaction=True)  # documents and counts in one snapshot
        pipe.hmget(self._key(experiment_id, "decisions"), ids)
        pipe.hmget(
            self._key(experiment_id, "decision_counts"),
            [f"{i}|{short}" for i in ids for short in COUNT_FIELDS],
        )
        documents, counts = pipe.execute()
        width = len(COUNT_FIELDS)
        return [
            _decision(
                experiment_id,
                decision_id,
                json.loads(text(doc)),
                counts[width * n : width * (n + 1)],
            )
            for n, (decision_id, doc) in enumerate(zip(ids, documents, strict=True))
            if doc is not None  # deleted since the ids were read
        ]


def _time(value: str | None) -> datetime | None:
    return None if value is None else as_utc(datetime.fromisoformat(value))


def _decision(
    experiment_id: str, decision_id: str, document: Mapping[str, Any], counts: Sequence[Any]
) -> Decision:
    successes, failures = (0 if c is None else int(c) for c in counts[:2])
    rating = None if counts[2] is None else float(text(counts[2]))
    return Decision(
        id=decision_id,
        experiment_id=experiment_id,
        unit_id=document["unit_id"],
        context_key=document["context_key"],
        context=document["context"],
        arm=document["arm"],
        propensity=float(document["propensity"]),
        policy=document["policy"],
        method=document["method"],
        decided_at=as_utc(datetime.fromisoformat(document["decided_at"])),
        successes=successes,
        failures=failures,
        rating=rating,
    )
