"""The Store methods that follow from others, written once for every backend.

A batch read defaults to the single read of each experiment, and ``get_counters`` to the sum
over periods of ``get_period_counters``. Every backend subclasses ``StoreDefaults`` and inherits
these; it overrides one only where it has a genuinely faster (or, for
``apply_current_events``, an atomic) path (one SQL query per chunk of
ids, one Redis pipeline, one pass under the memory store's lock), and says so beside the
override. A copy that merely loops is not an override.

The bandit recalculation reads thousands of experiments at once through the batch reads
(docs/architecture.md §3), so every backend overrides ``get_counters_many`` today, and SQL and
Redis ``get_daily_metrics_many`` and ``latest_allocations``. Memory, Redis and SQL override
``apply_current_events`` to check the definitions inside their counting step (on a Redis
Cluster, where the definitions live on another slot, just before it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from abpilot.domain.errors import DefinitionChanged
from abpilot.domain.records import (
    AllocationRecord,
    ApplyResult,
    DailyRow,
    EventRecord,
    VariantCounters,
)
from abpilot.store.base import EventStore, ExperimentStore, HistoryStore, Store
from abpilot.store.counters import sum_periods


class EventDefaults(EventStore):
    """``EventStore`` with its counter reads derived from ``get_period_counters``."""

    def get_counters(self, experiment_id: str) -> dict[str, VariantCounters]:
        return sum_periods(self.get_period_counters(experiment_id))

    def get_counters_many(
        self, experiment_ids: Iterable[str]
    ) -> dict[str, dict[str, VariantCounters]]:
        found = {e: self.get_counters(e) for e in dict.fromkeys(experiment_ids)}
        return {e: counters for e, counters in found.items() if counters}


class IntakeDefaults(ExperimentStore, EventStore):
    """``apply_current_events`` from the definitions read just before ``apply_events`` (a
    definition stored between the read and the count is not seen: a backend that can check
    inside its atomic step replaces this)."""

    def apply_current_events(
        self, events: Sequence[EventRecord], versions: Mapping[str, int]
    ) -> ApplyResult:
        for experiment_id, version in versions.items():
            stored = self.get_experiment(experiment_id)
            if stored is None or stored.version != version:
                raise DefinitionChanged(experiment_id)
        return self.apply_events(events)


class HistoryDefaults(HistoryStore):
    """``HistoryStore`` with its batch reads derived from the single reads."""

    def get_daily_metrics_many(self, experiment_ids: Iterable[str]) -> dict[str, list[DailyRow]]:
        found = {e: self.get_daily_metrics(e) for e in dict.fromkeys(experiment_ids)}
        return {e: rows for e, rows in found.items() if rows}

    def latest_allocations(self, experiment_ids: Iterable[str]) -> dict[str, AllocationRecord]:
        found = {e: self.latest_allocation(e) for e in dict.fromkeys(experiment_ids)}
        return {e: record for e, record in found.items() if record is not None}


class StoreDefaults(EventDefaults, IntakeDefaults, HistoryDefaults, Store):
    """What a backend subclasses: the whole ``Store`` contract with the defaults above. mypy
    checks the backend's methods against every role, and refuses to build a backend that
    leaves one out."""
