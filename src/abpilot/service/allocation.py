"""Adaptive allocation of bandit experiments: daily intake, Thompson weights, recalculation and
history. Used by ``ExperimentService``; every rule lives in ``abpilot.bandits`` (pure)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from abpilot import notebook
from abpilot.bandits.config import BanditOptions, Method, bandit_options
from abpilot.bandits.thompson import ArmData, allocate
from abpilot.bandits.windows import Fallback, WindowedArm, windowed_counts
from abpilot.domain.errors import (
    AbpilotError,
    ConcurrentModification,
    ValidationError,
    WrongStatus,
)
from abpilot.domain.experiment import Experiment, ExperimentStatus, ExperimentType
from abpilot.domain.inputs import DailyInput as DailyInput  # re-exported: its old home
from abpilot.stats.summary import summarise_metric
from abpilot.store.base import AllocationRecord, DailyRow, Store, VariantCounters

if TYPE_CHECKING:
    from pandas import DataFrame

log = logging.getLogger("abpilot.allocation")
MAX_DAILY_ROWS = 1_000
RECALCULATION_CHUNK = 500  # running bandits read and written together by ``recalculate_all``
# What a failing recalculation raises; these are reported for that experiment, anything else
# propagates (as a bug should).
FAILURES = (AbpilotError, ArithmeticError, ValueError)


@dataclass(frozen=True, slots=True)
class ArmAllocation:
    key: str
    is_control: bool
    weight: float
    probability_best: float | None
    trials: int
    successes: int
    window_days: int | None
    fallback: str


@dataclass(frozen=True, slots=True)
class AllocationResult:
    experiment_id: str
    experiment_name: str
    computed_at: datetime
    method: str
    seed: int | None
    source: str
    window_days: int | None
    burn_in: bool
    arms: tuple[ArmAllocation, ...]
    period: int | None = None
    samples: int | None = None  # Monte Carlo draws (THOMPSON_SAMPLES or settings.bandit.samples)

    @property
    def weights(self) -> dict[str, float]:
        return {a.key: a.weight for a in self.arms}

    def _repr_html_(self) -> str:
        """The arms' weights as a table, in a notebook (``abpilot.notebook``)."""
        burn_in = ", burn-in: the configured weights stay" if self.burn_in else ""
        return notebook.table(
            f"Allocation of {self.experiment_name}",
            [notebook.record(arm, rename={"key": "variant"}) for arm in self.arms],
            note=f"Thompson weights ({self.method}, from {self.source}){burn_in}",
            details=notebook.record(self),
        )

    def to_frame(self) -> DataFrame:
        """One row per arm, indexed by its key (``variant``), a column per field of
        ``ArmAllocation``. Needs pandas."""
        rows = [notebook.record(arm, rename={"key": "variant"}) for arm in self.arms]
        return notebook.frame(rows, index="variant")


@dataclass(frozen=True, slots=True)
class RecalculationOutcome:
    experiment_id: str
    key: str
    status: str  # updated, unchanged, failed
    period: int | None = None
    error: str | None = None


def require_bandit(experiment: Experiment, action: str) -> None:
    if experiment.type is not ExperimentType.BANDIT:
        raise WrongStatus(
            f"{action} is for bandit experiments; '{experiment.key}' is {experiment.type}",
            field="type",
        )


class Allocator:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        defaults: BanditOptions,
        chunk_size: int = RECALCULATION_CHUNK,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 (got {chunk_size})")
        self.store, self.clock, self.defaults = store, clock, defaults
        self.chunk_size = chunk_size

    def options(self, experiment: Experiment) -> BanditOptions:
        return bandit_options(experiment.settings, self.defaults, arms=len(experiment.variants))

    def weights_in_force(self, experiment: Experiment) -> tuple[int, tuple[float, ...]]:
        """(period, weights in variant order): the latest recalculation, else the configured."""
        if experiment.type is not ExperimentType.BANDIT:
            return 0, tuple(v.weight for v in experiment.variants)
        return _in_force(experiment, self.store.latest_allocation(experiment.id))

    def compute(
        self,
        experiment: Experiment,
        counters: Mapping[str, VariantCounters],
        daily: Sequence[DailyRow] | None = None,
    ) -> AllocationResult:
        """Thompson weights from the data now (nothing is stored). ``daily`` is the
        experiment's daily intake when the caller has read it already."""
        require_bandit(experiment, "adaptive allocation")
        options = self.options(experiment)
        now = self.clock()
        if daily is None:
            daily = self.store.get_daily_metrics(experiment.id)
        keys = [v.key for v in experiment.variants]
        if daily:
            arms = windowed_counts(
                daily,
                keys,
                today=now.date(),
                window_days=options.window_days,
                max_window_days=options.max_window_days,
                min_impressions=options.min_impressions,
            )
            config = replace(options.thompson(len(keys)), min_trials=0)
            source, window = "daily", options.window_days
        else:
            metric = options.metric or experiment.primary_metric.key
            summaries = summarise_metric(metric, keys, counters).summaries
            arms = [
                WindowedArm(v, s.n, min(s.conversions, s.n), None, Fallback.NONE)
                for v, s in zip(keys, summaries, strict=True)
            ]
            config = options.thompson(len(keys))
            source, window = "events", None
        data = [ArmData(a.key, a.impressions, min(a.clicks, a.impressions)) for a in arms]
        configured = [v.weight for v in experiment.variants]
        result = allocate(data, config, configured=configured)
        return AllocationResult(
            experiment_id=experiment.id,
            experiment_name=experiment.name,
            computed_at=now,
            method=result.method,
            seed=result.seed,
            source=source,
            window_days=window,
            burn_in=result.burn_in,
            samples=config.samples if result.method == Method.MONTE_CARLO.value else None,
            arms=tuple(
                ArmAllocation(
                    key=variant.key,
                    is_control=variant.is_control,
                    weight=result.weights[i],
                    probability_best=(
                        result.probability_best[i] if result.probability_best else None
                    ),
                    trials=arms[i].impressions,
                    successes=arms[i].clicks,
                    window_days=arms[i].window_days,
                    fallback=arms[i].fallback.value,
                )
                for i, variant in enumerate(experiment.variants)
            ),
        )

    def recalculate(
        self, experiment: Experiment, counters: Mapping[str, VariantCounters]
    ) -> RecalculationOutcome:
        """Compute and, when the weights changed, store them as the next period: the period
        after the latest one read here, and only if it is still the latest (a compare-and-set),
        so two workers recalculating at once store one period. The other reports
        ``unchanged``: the weights it would have stored came from the same data."""
        result = self.compute(experiment, counters)
        latest = self.store.latest_allocation(experiment.id)
        change = _change(experiment, result, latest)
        if change is None:
            return _unchanged(experiment)
        try:
            stored = self.store.add_allocation(change, expected_period=_period(latest))
        except ConcurrentModification:
            return _lost_race(experiment)
        return _updated(experiment, stored)

    def recalculate_all(self) -> list[RecalculationOutcome]:
        """Every running bandit, ``chunk_size`` at a time: one batched read of each kind per
        chunk, then one batched write of the changes. The outcomes are those of ``recalculate``
        one by one, and one failing experiment does not stop the others."""
        chunk_size = self.chunk_size
        bandits = [
            e
            for e in self.store.list_experiments(ExperimentStatus.RUNNING)
            if e.type is ExperimentType.BANDIT
        ]
        outcomes: list[RecalculationOutcome] = []
        for start in range(0, len(bandits), chunk_size):
            outcomes.extend(self._recalculate_chunk(bandits[start : start + chunk_size]))
        return outcomes

    def _recalculate_chunk(self, chunk: Sequence[Experiment]) -> list[RecalculationOutcome]:
        ids = [e.id for e in chunk]
        try:
            counters = self.store.get_counters_many(ids)
            daily = self.store.get_daily_metrics_many(ids)
            latest = self.store.latest_allocations(ids)
        except Exception:
            # Read each experiment on its own instead, so that a failure names the one it hit.
            log.exception("batched read of %d experiments failed; one by one instead", len(ids))
            return [self._recalculate_isolated(e) for e in chunk]
        outcomes: list[RecalculationOutcome | None] = []
        changes: list[tuple[int, Experiment, AllocationRecord]] = []
        expected = {e.id: _period(latest.get(e.id)) for e in chunk}
        for experiment in chunk:
            try:
                result = self.compute(
                    experiment, counters.get(experiment.id, {}), daily.get(experiment.id, [])
                )
                change = _change(experiment, result, latest.get(experiment.id))
            except FAILURES as error:
                outcomes.append(_failed(experiment, error))
                continue
            if change is None:
                outcomes.append(_unchanged(experiment))
            else:
                changes.append((len(outcomes), experiment, change))
                outcomes.append(None)  # filled in once the change is stored
        if changes:
            try:
                stored = self.store.add_allocations(
                    [change for _, _, change in changes],
                    expected_periods={e.id: expected[e.id] for _, e, _ in changes},
                )
            except Exception as error:
                # Store each change on its own instead, so that a failure (or a period another
                # process stored first) is reported for the experiment it belongs to.
                if isinstance(error, ConcurrentModification):
                    log.info("another process stored weights meanwhile; one by one instead")
                else:
                    log.exception("batched write of %d weight changes failed", len(changes))
                for i, experiment, change in changes:
                    outcomes[i] = self._store_isolated(experiment, change, expected[experiment.id])
            else:
                for (i, experiment, _), record in zip(changes, stored, strict=True):
                    outcomes[i] = _updated(experiment, record)
        return [o for o in outcomes if o is not None]

    def _recalculate_isolated(self, experiment: Experiment) -> RecalculationOutcome:
        try:
            return self.recalculate(experiment, self.store.get_counters(experiment.id))
        except FAILURES as error:
            return _failed(experiment, error)

    def _store_isolated(
        self, experiment: Experiment, change: AllocationRecord, expected_period: int
    ) -> RecalculationOutcome:
        """Store one change after its batch failed, if its experiment is still at
        ``expected_period``. If the batch was stored after all (only its answer was lost),
        report the stored record rather than store the change twice."""
        try:
            latest = self.store.latest_allocation(experiment.id)
            if latest is not None and _same_change(latest, change):
                return _updated(experiment, latest)
            stored = self.store.add_allocation(change, expected_period=expected_period)
        except ConcurrentModification:
            return _lost_race(experiment)
        except FAILURES as error:
            return _failed(experiment, error)
        return _updated(experiment, stored)

    def record_daily(
        self, experiment: Experiment, day: date, metrics: Sequence[DailyInput], payload: Any
    ) -> list[DailyRow]:
        """Validate a day's aggregates, then store the raw payload and the clean rows together."""
        require_bandit(experiment, "daily metrics intake")
        if experiment.status is not ExperimentStatus.RUNNING:
            raise WrongStatus(
                f"experiment '{experiment.key}' is {experiment.status}; daily metrics are "
                "accepted only while it is running",
                field="status",
            )
        if day > self.clock().date():
            raise ValidationError(f"date {day.isoformat()} is in the future", field="date")
        if len(metrics) > MAX_DAILY_ROWS:
            raise ValidationError(f"at most {MAX_DAILY_ROWS} rows per post", field="metrics")
        seen: set[str] = set()
        rows = []
        for i, m in enumerate(metrics):
            where = f"metrics[{i}]"
            if experiment.variant(m.variant) is None:
                allowed = ", ".join(v.key for v in experiment.variants)
                raise ValidationError(
                    f"experiment '{experiment.key}' has no variant '{m.variant[:100]}' "
                    f"(variants: {allowed})",
                    field=f"{where}.variant_name",
                )
            if m.variant in seen:
                raise ValidationError(
                    f"variant '{m.variant}' is listed twice for {day.isoformat()}",
                    field=f"{where}.variant_name",
                )
            seen.add(m.variant)
            if m.impressions < 0 or m.clicks < 0:
                raise ValidationError(
                    "impressions and clicks must not be negative",
                    field=f"{where}.clicks" if m.clicks < 0 else f"{where}.impressions",
                )
            if m.clicks > m.impressions:
                raise ValidationError(
                    f"clicks ({m.clicks}) exceed impressions ({m.impressions}) for '{m.variant}'",
                    field=f"{where}.clicks",
                )
            rows.append(DailyRow(day, m.variant, m.impressions, m.clicks))
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        self.store.record_daily_metrics(experiment.id, day, rows, text, self.clock())
        return rows


def _in_force(
    experiment: Experiment, latest: AllocationRecord | None
) -> tuple[int, tuple[float, ...]]:
    if latest is None:
        return 0, tuple(v.weight for v in experiment.variants)
    return latest.period, tuple(latest.weights.get(v.key, 0.0) for v in experiment.variants)


def _change(
    experiment: Experiment, result: AllocationResult, latest: AllocationRecord | None
) -> AllocationRecord | None:
    """The record to store for ``result``, or None when it leaves the weights in force as they
    are (``latest`` is the experiment's latest stored change)."""
    _, in_force = _in_force(experiment, latest)
    if dict(zip((v.key for v in experiment.variants), in_force, strict=True)) == result.weights:
        return None
    return AllocationRecord(
        experiment_id=experiment.id,
        period=0,
        computed_at=result.computed_at,
        weights=result.weights,
        method=result.method,
        seed=result.seed,
        source=result.source,
        details={
            **({} if result.samples is None else {"samples": result.samples}),
            "window_days": result.window_days,
            "burn_in": result.burn_in,
            "arms": {
                a.key: {
                    "trials": a.trials,
                    "successes": a.successes,
                    "probability_best": a.probability_best,
                    "window_days": a.window_days,
                    "fallback": a.fallback,
                }
                for a in result.arms
            },
        },
    )


def _period(latest: AllocationRecord | None) -> int:
    """The latest period (0 before the first recalculation stored one)."""
    return 0 if latest is None else latest.period


def _same_change(stored: AllocationRecord, change: AllocationRecord) -> bool:
    def identity(record: AllocationRecord) -> tuple[object, ...]:
        return (record.computed_at, dict(record.weights), record.method, record.seed)

    return identity(stored) == identity(change)


def _updated(experiment: Experiment, record: AllocationRecord) -> RecalculationOutcome:
    log.info("experiment %s: weights %s (period %d)", experiment.key, record.weights, record.period)
    return RecalculationOutcome(experiment.id, experiment.key, "updated", record.period)


def _unchanged(experiment: Experiment) -> RecalculationOutcome:
    return RecalculationOutcome(experiment.id, experiment.key, "unchanged")


def _lost_race(experiment: Experiment) -> RecalculationOutcome:
    """Another process stored new weights between this one's read and its write."""
    log.info("experiment %s: another process recalculated it first", experiment.key)
    return _unchanged(experiment)


def _failed(experiment: Experiment, error: Exception) -> RecalculationOutcome:
    log.exception("recalculation of %s failed", experiment.key)
    return RecalculationOutcome(experiment.id, experiment.key, "failed", error=str(error))
