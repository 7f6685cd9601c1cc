"""Assignments and event counting on Redis (see the key layout in ``abpilot.store.redis``).

The counting rules are ``abpilot.domain.counting``'s. Redis supplies their primitives with an
optimistic step (``abpilot.store.redis.step``): one call reads what the batch may touch (claimed
event ids, assignments, exposed units, unit totals: a snapshot), or the step guesses it, the
rules run in Python against it, and one generic script (``STEP``) checks that every value read
is still what it was and only then applies the writes, all or nothing. Counters change only
through HINCRBY/HINCRBYFLOAT inside that script. If another client changed a value read in
between, the script writes nothing and the step is counted again from a fresh snapshot
(conflicts need the same unit or event id in two concurrent batches). The script holds no
counting rule: it knows nothing of events, units or variants. One plain exposure, the hottest
write, is the exception: one small script (``abpilot.store.redis.expose_one``).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis

from abpilot.domain.counting import (
    BatchKeys,
    CountingStep,
    batch_keys,
    count_assignment,
    count_events,
    count_exposure,
    plain_exposure,
)
from abpilot.domain.errors import DefinitionChanged, StoreUnavailable, UnitNotAssigned
from abpilot.domain.records import METRIC_FIELDS
from abpilot.store.base import (
    ApplyResult,
    AssignResult,
    EventRecord,
    MetricTotals,
    StoredAssignment,
    VariantCounters,
)
from abpilot.store.counters import group_counters, sum_periods
from abpilot.store.event_ids import claim_time
from abpilot.store.redis.cluster import snapshot_pipeline
from abpilot.store.redis.event_ids import RedisEventIds
from abpilot.store.redis.expose_one import (
    EXPOSE_ONE,
    EXPOSE_ONE_SHA,
    expose_one_call,
    expose_one_result,
)
from abpilot.store.redis.history import EPOCH, reachable, text
from abpilot.store.redis.replication import run_and_wait
from abpilot.store.redis.step import (
    STEP,
    STEP_SHA,
    KnownUnits,
    Plan,
    RedisStep,
    Snapshot,
    snapshot,
    stored_assignment,
)

T = TypeVar("T")
log = logging.getLogger("abpilot.store")

# An experiment's keys that hold its assignments and counters (and the per-day sets of event
# ids ``events:<day>`` that ``event_days`` lists: see ``abpilot.store.redis.event_ids``).
EVENT_KEYS = (
    "events",
    "event_days",
    "assign",
    "exposed",
    "counters",
    "metrics",
    "units",
    "activity",
)

# Units whose stored assignment this process remembers for its guesses (about 200 bytes each).
KNOWN_UNITS = 100_000

# How many times a step is counted again after a conflict before the store gives up (a 503:
# the batch may be sent again, its event ids make that safe).
MAX_ATTEMPTS = 50

# What a Redis Cluster answers while a slot moves (the script did not run), and how many times
# a step is called again (about 10 s in all) before it gives up with a 503.
RESHARDING_ERRORS = (
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ClusterError,
)
RESHARDING_RETRIES = 25


def _per_experiment(events: Sequence[EventRecord]) -> list[list[EventRecord]]:
    """``events`` grouped by experiment (each group in the batch's order)."""
    groups: dict[str, list[EventRecord]] = {}
    for event in events:
        groups.setdefault(event.experiment_id, []).append(event)
    return list(groups.values())


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
        values[stat] = values.get(stat, 0) + METRIC_FIELDS.get(stat, float)(raw)
    return group_counters(
        (
            (p, v, c.get("assigned_units", 0), c.get("exposures", 0), c.get("unique_units", 0))
            for (p, v), c in plain.items()
        ),
        ((p, v, m, MetricTotals.from_stored(s)) for (p, v, m), s in stats.items()),
    )


class RedisIntake(RedisEventIds):
    """Mixed into ``RedisStore``: needs ``_client``, ``_prefix``, ``location`` and
    ``event_id_retention_days``."""

    _client: redis.Redis
    location: str
    _guess_rate = 1.0  # see _guess_nothing_stored
    # REDIS_WAIT_REPLICAS: replicas that must hold an intake step before it is acknowledged
    # (0: no WAIT), waiting at most _wait_timeout_ms (see ``replication``).
    _wait_replicas = 0
    _wait_timeout_ms = 100

    @functools.cached_property
    def _known(self) -> KnownUnits:
        return KnownUnits(KNOWN_UNITS)

    @reachable
    def assign(
        self, experiment_id: str, unit_id: str, variant: str, period: int = 0
    ) -> AssignResult:
        first = StoredAssignment(variant, period)

        def count(step: CountingStep) -> AssignResult:
            stored, created = count_assignment(step, experiment_id, unit_id, first)
            return AssignResult(stored.variant, created, stored.period)

        keys = BatchKeys((), ((experiment_id, unit_id),), ())
        return self._count(lambda: keys, count, guess=True, read_along=True, claimed_at=None)

    @reachable
    def assign_and_expose(self, event: EventRecord) -> AssignResult:
        def count(step: CountingStep) -> AssignResult:
            stored, created, counted = count_exposure(step, event)
            return AssignResult(stored.variant, created, stored.period, exposed=counted)

        at = claim_time([event])
        return self._count(
            lambda: batch_keys([event]), count, guess=True, read_along=True, claimed_at=at
        )

    @reachable
    def apply_events(self, events: Sequence[EventRecord]) -> ApplyResult:
        if not events:
            return ApplyResult(applied=0, duplicates=0)
        if self._cluster:
            # One script per experiment (its keys share one slot): each experiment's events
            # are counted all or nothing, the batch is not (sending it again is safe).
            applied = duplicates = 0
            groups = _per_experiment(events)
            for group in groups:
                done = self._apply_together(group)
                applied, duplicates = applied + done.applied, duplicates + done.duplicates
            return ApplyResult(applied, duplicates, per_experiment=len(groups) > 1)
        return self._apply_together(events)

    @reachable
    def apply_current_events(
        self, events: Sequence[EventRecord], versions: Mapping[str, int]
    ) -> ApplyResult:
        # Replaces the default: on one server the definition (``{id}:def``) shares the
        # experiment's slot, so the script checks its version before it writes, in the same
        # call as the counting. On a cluster the definitions live under ``{index}``: read first.
        if not self._cluster and plain_exposure(events, versions):
            keys, args = expose_one_call(self, events[0], versions)
            reply = self._call(EXPOSE_ONE, EXPOSE_ONE_SHA, keys, args)
            return expose_one_result(reply, events[0].experiment_id)
        if self._cluster or not events:
            for experiment_id, version in versions.items():
                stored = self._client.hget(self._definition(experiment_id), "version")
                if stored is None or int(stored) != version:
                    raise DefinitionChanged(experiment_id)
            return self.apply_events(events)
        return self._apply_together(events, versions)

    def _apply_together(
        self, events: Sequence[EventRecord], versions: Mapping[str, int] | None = None
    ) -> ApplyResult:
        def count(step: CountingStep) -> ApplyResult:
            counted = count_events(step, events)
            return ApplyResult(applied=counted.applied, duplicates=counted.duplicates)

        # A conversion that needs a stored assignment would prove a guess of "nothing stored"
        # wrong (or be refused): read first.
        guess = self._guess_nothing_stored() and not any(e.needs_assignment for e in events)
        at = claim_time(events)
        return self._count(
            lambda: batch_keys(events),
            count,
            guess=guess,
            read_along=False,
            claimed_at=at,
            versions=versions,
        )

    def _count(
        self,
        keys: Callable[[], BatchKeys],
        count: Callable[[CountingStep], T],
        *,
        guess: bool,
        read_along: bool,
        claimed_at: datetime | None,
        versions: Mapping[str, int] | None = None,
    ) -> T:
        """Run ``count`` on a snapshot of what it may touch (``keys``) and commit its writes if
        nothing it read has changed; otherwise count again on a fresh snapshot.

        With ``guess`` the first attempt assumes nothing is stored yet (new units, new event
        ids) and needs no read before it: a right guess is one round trip. A wrong guess writes
        nothing and costs one more call: the read, which ``read_along`` sends with the guess
        (one unit's few fields: a returning unit costs two calls, as reading first would) and
        which a batch makes only when needed, since a batch guesses only while recent batches'
        guesses held (``_guess_nothing_stored``).

        With ``versions`` the call also checks each experiment's definition version (the
        script, before any write) and raises ``DefinitionChanged`` when one differs. A refusal
        the counting raises (``UnitNotAssigned``) stands only when counted on what was read,
        never on a guess."""
        keys = functools.cache(keys)  # computed once, and only if needed
        at = claim_time([]) if claimed_at is None else claimed_at
        state = None if guess else self._read(keys(), at, versions)
        if state is not None and not read_along:
            self._note_guess(state.empty)
        for attempt in range(MAX_ATTEMPTS):
            if attempt > 1:  # repeated conflicts on hot units: spread the retries out
                time.sleep(random.uniform(0.0, min(0.05, 0.0005 * 2**attempt)))
            plan = Plan(self, at)
            # A single unit's call guesses with what this process has seen of the unit; a batch
            # (mostly new units, or it would not guess) with nothing: remembering a thousand
            # units per batch cost more than it saved.
            current = state or (self._known.guess(keys().units) if read_along else Snapshot())
            try:
                result = count(RedisStep(plan, current))
            except UnitNotAssigned:
                if state is not None:
                    raise
                state = self._read(keys(), at, versions)  # a guess refused: count on the store
                continue
            if versions:
                plan.guard(versions)
            elif not plan.writes and state is not None:
                # Nothing to change, and nothing read can change back (ids stay claimed,
                # assignments stay stored): the read is the answer.
                return result
            if state is None and read_along:
                plan.read_snapshot(keys())
            committed, found = self._run(plan)
            if state is None and not read_along:
                self._note_guess(committed)
            if committed:
                if read_along:
                    self._known.remember(current)  # now true: what was read and written
                return result
            changed = plan.changed(found)
            if changed is not None:
                raise DefinitionChanged(changed)
            if state is None and read_along:
                state = snapshot(keys(), found)
            else:
                state = self._read(keys(), at, versions)
            if read_along:
                self._known.remember(state)
        raise StoreUnavailable(
            f"Redis at {self.location}: too many concurrent changes to the same units; "
            "send the batch again (its event ids make that safe)"
        )

    def _guess_nothing_stored(self) -> bool:
        """Whether a batch should first guess that nothing it touches is stored: when that was
        true of most recent batches (an exponential average over batches of whether their
        guess held, or their read found nothing stored). A wrong guess costs a round trip and
        counting the batch twice in Python."""
        return self._guess_rate >= 0.5

    def _note_guess(self, nothing_stored: bool) -> None:
        self._guess_rate = 0.9 * self._guess_rate + (0.1 if nothing_stored else 0.0)

    def _read(
        self, keys: BatchKeys, claimed_at: datetime, versions: Mapping[str, int] | None = None
    ) -> Snapshot:
        """A snapshot of what ``keys`` name; with ``versions``, raises ``DefinitionChanged``
        when a definition has another version (a refusal is then never counted on)."""
        plan = Plan(self, claimed_at)
        plan.read_snapshot(keys)
        if versions:
            plan.guard(versions)
        found = self._run(plan)[1]
        changed = plan.changed(found)
        if changed is not None:
            raise DefinitionChanged(changed)
        return snapshot(keys, found)

    def _run(self, plan: Plan) -> tuple[bool, Any]:
        """Call ``STEP`` with ``plan``: whether it wrote, and what its reads found."""
        count, arguments = plan.arguments()
        reply = self._call(STEP, STEP_SHA, arguments[:count], arguments[count:], bool(plan.writes))
        committed, found = json.loads(reply)
        return committed == 1, found

    def _call(
        self, script: str, sha: str, keys: list[str], args: list[str], writes: bool = True
    ) -> Any:
        """EVALSHA an intake script: a server that lost the script (NOSCRIPT: nothing ran) gets
        it loaded and called again; a cluster moving the slot is waited for. With
        ``REDIS_WAIT_REPLICAS``, a call that ``writes`` is acknowledged only once the replicas
        hold it (or the wait timed out: logged)."""
        if self._wait_replicas and writes:
            reply, acknowledged = run_and_wait(
                self._client,
                script,
                sha,
                keys,
                args,
                replicas=self._wait_replicas,
                timeout_ms=self._wait_timeout_ms,
            )
            if acknowledged < self._wait_replicas:
                log.warning(
                    "Redis at %s: %d of %d replicas acknowledged an intake step within %d ms",
                    self.location,
                    acknowledged,
                    self._wait_replicas,
                    self._wait_timeout_ms,
                )
            return reply
        moves = 0
        while True:
            try:
                return self._client.evalsha(sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                self._client.script_load(script)  # on a cluster: on every primary
            except RESHARDING_ERRORS:
                # A cluster moving the slot: its keys are split between two nodes (TRYAGAIN)
                # or the slot has no owner for a moment. The script did not run; once redis-py
                # gave up following the move, wait and call it again.
                if moves >= RESHARDING_RETRIES:
                    raise
                time.sleep(min(0.5, 0.02 * 2**moves))
                moves += 1

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
    def get_counters_many(
        self, experiment_ids: Iterable[str]
    ) -> dict[str, dict[str, VariantCounters]]:
        # Faster than the default: one MULTI/EXEC pipeline for every experiment's hashes (one
        # round trip), not one per experiment.
        ids = list(dict.fromkeys(experiment_ids))
        pipe = snapshot_pipeline(self._client)  # one snapshot (per experiment on a cluster)
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
