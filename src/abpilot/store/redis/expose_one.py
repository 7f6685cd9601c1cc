"""Redis: ``count_events`` for ONE plain exposure as one small script (``EXPOSE_ONE``).

A single exposure (``POST /api/v1/experiments/{id}/exposures``) is the hottest write of the
service. The general path builds a plan in Python (``abpilot.store.redis.step``), encodes it as
JSON and has the generic ``STEP`` script decode it, check it and write it: for one event most of
that is overhead. ``EXPOSE_ONE`` applies the rules ``abpilot.domain.counting`` states for this
case, with the definition's version checked first (``apply_current_events``), in one call with
plain arguments:

1. the event id, if any, is claimed (none of the sets of the dedupe window holds it), else the
   exposure is a duplicate and nothing changes;
2. the unit's assignment is stored if it has none (``assigned_units`` + 1);
3. the exposure counts under the assignment the unit has, whatever the event names;
4. ``exposures`` + 1, and ``unique_units`` + 1 if the unit was not exposed before;
7. the experiment's last event time keeps the later time.

It writes the keys and fields the general path writes (the same names, the same cells), and
``tests/store/test_redis_expose_one.py`` runs the same exposures through both and compares every
key. A rule changed in ``abpilot.domain.counting`` for this case is changed here too. Redis runs
a script alone, so it needs no retry: nothing can change between its reads and its writes.

It is used on one Redis server (not a cluster, where the definition lives in another slot) for
an exposure of a unit without the issue-18 facts (covariates, dimensions, derived counters).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from abpilot.domain.counting import latest_received
from abpilot.domain.errors import DefinitionChanged
from abpilot.store.base import ApplyResult, EventRecord
from abpilot.store.event_ids import claim_time, day_number
from abpilot.store.redis.event_ids import day_set, day_set_ttl
from abpilot.store.redis.history import microseconds

# KEYS: 1 the definition, 2 assign, 3 exposed, 4 counters, 5 activity, 6 event_days, then the
# sets of claimed ids a claim checks (``event_sets``), the last of them the one it adds to.
# ARGV: 1 the definition's version, 2 the event id ('' for none), 3 the unit, 4 the cell to
# store if the unit has none (``<variant>|<period>``), 5 the event time in microseconds ('' for
# none), 6 the seconds the set added to is kept (0: forever), 7 the day it holds (for
# event_days). Returns -1 (the definition changed: nothing written), 0 (a duplicate: nothing
# written) or 1 (counted).
EXPOSE_ONE = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return -1 end
local event = ARGV[2]
if event ~= '' then
  for k = 7, #KEYS do
    if redis.call('SISMEMBER', KEYS[k], event) == 1 then return 0 end
  end
  redis.call('SADD', KEYS[#KEYS], event)
  if ARGV[6] ~= '0' then
    redis.call('EXPIRE', KEYS[#KEYS], ARGV[6])
    redis.call('SADD', KEYS[6], ARGV[7])
  end
end
local unit, cell = ARGV[3], redis.call('HGET', KEYS[2], ARGV[3])
if cell then
  if not string.find(cell, '|', 1, true) then cell = cell .. '|0' end  -- from before periods
else
  cell = ARGV[4]
  redis.call('HSET', KEYS[2], unit, cell)
  redis.call('HINCRBY', KEYS[4], cell .. '|assigned_units', 1)
end
redis.call('HINCRBY', KEYS[4], cell .. '|exposures', 1)
if redis.call('SADD', KEYS[3], unit) == 1 then
  redis.call('HINCRBY', KEYS[4], cell .. '|unique_units', 1)
end
if ARGV[5] ~= '' and tonumber(ARGV[5]) > tonumber(redis.call('GET', KEYS[5]) or '-1') then
  redis.call('SET', KEYS[5], ARGV[5])
end
return 1
"""
EXPOSE_ONE_SHA = hashlib.sha1(EXPOSE_ONE.encode(), usedforsecurity=False).hexdigest()


class ExposeStore(Protocol):
    """What the call needs of the store: its key names and its dedupe window."""

    event_id_retention_days: int

    def event_sets(self, day: int) -> list[str]: ...

    def _key(self, experiment_id: str, name: str) -> str: ...


def expose_one_call(
    store: ExposeStore, event: EventRecord, versions: Mapping[str, int]
) -> tuple[list[str], list[str]]:
    """``EXPOSE_ONE``'s keys and arguments for ``event``."""
    exp = event.experiment_id
    at = claim_time([event])
    day = day_number(at)
    retention = store.event_id_retention_days
    keep = day_set_ttl(day, retention, at) if retention > 0 else 0
    names = ["def", "assign", "exposed", "counters", "activity", "event_days"]
    keys = [store._key(exp, name) for name in (*names, *store.event_sets(day))]
    latest = latest_received([event]).get(exp)
    args = [
        str(versions[exp]),
        event.event_id or "",
        event.unit_id or "",
        f"{event.variant}|{event.period:d}",
        "" if latest is None else str(microseconds(latest)),
        str(keep),
        str(day) if retention > 0 else "",
    ]
    assert retention <= 0 or keys[-1] == store._key(exp, day_set(day))
    return keys, args


def expose_one_result(reply: object, experiment_id: str) -> ApplyResult:
    """The answer of ``EXPOSE_ONE``'s reply; ``DefinitionChanged`` when it wrote nothing because
    the definition changed."""
    if reply == -1:
        raise DefinitionChanged(experiment_id)
    return ApplyResult(applied=1, duplicates=0) if reply == 1 else ApplyResult(0, 1)
