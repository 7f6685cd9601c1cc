"""Everything a store keeps for one experiment, in plain records: what export and import move.

A store's public reads give most of it (counters, history, decisions); ``UnitState`` is the rest,
the per-unit bookkeeping that makes later events count right after a move: which units are
assigned and exposed, each unit's running total per metric (sums of squares grow from it), and
the event ids already counted with when each was claimed (a retry after the move still counts
once, and the dedupe window keeps counting from the original claim).

Write-only audit columns that no read returns (SQL's ``assigned_at``, a
daily row's ``updated_at``, a feedback's outcome and time) are not part of the state: a restore
sets the times to the moment of the restore and the outcome to ``"restored"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from abpilot.domain.experiment import Experiment
from abpilot.domain.records import (
    AllocationRecord,
    ArmState,
    DailyRow,
    Decision,
    RawMetrics,
    StoredAssignment,
    VariantCounters,
)

UnitMetric = tuple[str, str]  # (unit id, metric)


@dataclass(frozen=True, slots=True)
class UnitState:
    """Per-unit bookkeeping of one experiment."""

    assignments: Mapping[str, StoredAssignment]
    exposed: frozenset[str]
    totals: Mapping[UnitMetric, tuple[int, float]]  # conversions and running total
    event_ids: Mapping[str, datetime]  # event id -> when it was claimed (UTC)


@dataclass(frozen=True, slots=True)
class ExperimentState:
    """One experiment and everything recorded for it."""

    experiment: Experiment
    units: UnitState
    counters: Mapping[int, Mapping[str, VariantCounters]]  # per period, per variant
    last_event_at: datetime | None
    daily: Sequence[DailyRow]
    raw: Sequence[RawMetrics]
    allocations: Sequence[AllocationRecord]  # periods 1, 2, ... in order
    decisions: Sequence[Decision]  # with the feedback counted on each
    feedback: Sequence[tuple[str, str]]  # (decision id, event) applied
    arm_states: Sequence[ArmState]
