"""The experiment lookup every service on a store shares: experiments by id or key, read from the
store or from this process's cache, with the clock the services date their records by.

Services receive the lookup (and, where they need more, a narrow protocol of the operations they
call), never the whole ``ExperimentService`` (docs/architecture.md §1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from abpilot.domain.assignment import Bucketing
from abpilot.domain.errors import ExperimentNotFound
from abpilot.domain.experiment import UUID_PATTERN, Experiment, ExperimentStatus, ExperimentType
from abpilot.domain.rules import ExperimentRules, experiment_rules
from abpilot.service.allocation import Allocator
from abpilot.service.specs import check_reference
from abpilot.store.base import Store

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CachedExperiment:
    """An experiment as the assignment path uses it: its bucketing on the weights in force, the
    period of those weights, and whether bandit units keep their first variant."""

    experiment: Experiment
    bucketing: Bucketing
    loaded_at: float
    period: int = 0
    sticky: bool = False
    # The counting rules of issue 18 (covariates, caps, ratios, dimensions), or None.
    rules: ExperimentRules | None = None
    # Running and not a FeatureVisor feature: units may be assigned by the hash (the checks
    # ``check_running`` and ``check_hash_assigned`` make, answered once per definition).
    hash_assignable: bool = False


class ExperimentCache:
    """Cached experiments by id, key and the reference they were asked by, shared by the
    threads of a worker (routes run in a threadpool while the scheduler thread recalculates).

    Every write holds the lock, and ``forget`` and ``clear`` swap in a new dict rather than
    emptying the one a reader may hold. A lookup is one ``dict.get`` without the lock (never a
    check, then an index that another thread's ``clear`` may have emptied in between): a single
    dict operation is atomic, and the assignment path makes one on every call.

    Each ``forget`` and ``clear`` starts a new generation; an entry built
    from a read that began in an older generation is not stored (``put`` answers False), so a
    slow load never puts back what this process has just changed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, CachedExperiment] = {}
        self._generation = 0

    def get(self, name: str) -> CachedExperiment | None:
        return self._entries.get(name)

    def generation(self) -> int:
        """Take this before reading the store for an entry, and give it to ``put``."""
        with self._lock:
            return self._generation

    def put(self, names: Iterable[str], entry: CachedExperiment, generation: int) -> bool:
        with self._lock:
            if generation != self._generation:
                return False
            for name in names:
                self._entries[name] = entry
            return True

    def forget(self, experiment_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries = {
                n: c for n, c in self._entries.items() if c.experiment.id != experiment_id
            }

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries = {}


class ExperimentLookup:
    """Experiments by id or key on ``store``. ``get`` reads the store; ``cached`` answers from
    this process's cache when the entry is at most ``cache_seconds`` old, so the assignment path
    does not read the store on every call (this process sees its own changes at once, other
    workers' within ``cache_seconds``)."""

    def __init__(
        self,
        store: Store,
        allocator: Allocator,
        *,
        clock: Clock = utc_now,
        cache_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.allocator = allocator
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._cache = ExperimentCache()

    def get(self, experiment_ref: str) -> Experiment:
        """The experiment with this id or key, read from the store."""
        return self.load(experiment_ref).experiment

    def load(self, experiment_ref: str) -> CachedExperiment:
        """Read the experiment with this id or key from the store, and cache it."""
        check_reference(experiment_ref)
        generation = self._cache.generation()
        found = None
        if UUID_PATTERN.match(experiment_ref):
            found = self.store.get_experiment(experiment_ref)
        if found is None:
            experiment_id = self.store.get_experiment_id(experiment_ref)
            found = self.store.get_experiment(experiment_id) if experiment_id else None
        if found is None:
            raise ExperimentNotFound(
                f"no experiment with id or key '{experiment_ref[:100]}'", field="experiment_id"
            )
        return self._remember(experiment_ref, found, generation)

    def cached(self, experiment_ref: str) -> CachedExperiment:
        """The experiment with this id or key from the cache, at most ``cache_seconds`` old
        (read from the store when it is older)."""
        hit = self._cache.get(experiment_ref)
        if hit is not None and time.monotonic() - hit.loaded_at < self.cache_seconds:
            return hit
        return self.load(experiment_ref)

    def saved(self, previous: Experiment, current: Experiment) -> None:
        """This process has just stored ``current`` over ``previous``: cache the new one."""
        self.forget(previous.id)
        self._remember(current.id, current, self._cache.generation())

    def forget(self, experiment_id: str) -> None:
        """Read this experiment from the store on its next use."""
        self._cache.forget(experiment_id)

    def clear(self) -> None:
        """Read every experiment from the store on its next use."""
        self._cache.clear()

    def _remember(
        self, experiment_ref: str, experiment: Experiment, generation: int
    ) -> CachedExperiment:
        """The cache entry of ``experiment`` (as read from the store once ``generation`` was
        taken), stored under ``experiment_ref``, its id and its key unless the cache was
        invalidated since."""
        period, weights = self.allocator.weights_in_force(experiment)
        sticky = False
        if experiment.type is ExperimentType.BANDIT:
            sticky = self.allocator.options(experiment).sticky
        entry = CachedExperiment(
            experiment,
            Bucketing.for_experiment(experiment, weights),
            time.monotonic(),
            period,
            sticky,
            experiment_rules(experiment),
            experiment.status is ExperimentStatus.RUNNING and not experiment.featurevisor_feature,
        )
        self._cache.put({experiment_ref, experiment.id, experiment.key}, entry, generation)
        return entry
