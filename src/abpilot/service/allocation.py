"""Adaptive allocation of bandit experiments: daily intake, Thompson weights, recalculation and
history. Used by ``ExperimentService``; every rule lives in ``abpilot.bandits`` (pure)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from abpilot.bandits.config import BanditOptions, bandit_options
from abpilot.bandits.thompson import ArmData, allocate
from abpilot.bandits.windows import Fallback, WindowedArm, windowed_counts
from abpilot.domain.errors import AbpilotError, ValidationError, WrongStatus
from abpilot.domain.experiment import Experiment, ExperimentStatus, ExperimentType
from abpilot.stats.summary import Basis, summarise
from abpilot.store.base import AllocationRecord, DailyRow, MetricTotals, Store, VariantCounters

log = logging.getLogger("abpilot.allocation")
MAX_DAILY_ROWS = 1_000


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

    @property
    def weights(self) -> dict[str, float]:
        return {a.key: a.weight for a in self.arms}


@dataclass(frozen=True, slots=True)
class RecalculationOutcome:
    experiment_id: str
    key: str
    status: str  # updated, unchanged, failed
    period: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DailyInput:
    variant: str
    impressions: int
    clicks: int


def require_bandit(experiment: Experiment, action: str) -> None:
    if experiment.type is not ExperimentType.BANDIT:
        raise WrongStatus(
            f"{action} is for bandit experiments; '{experiment.key}' is {experiment.type}",
            field="type",
        )


class Allocator:
    def __init__(
        self, store: Store, *, clock: Callable[[], datetime], defaults: BanditOptions
    ) -> None:
        self.store, self.clock, self.defaults = store, clock, defaults

    def options(self, experiment: Experiment) -> BanditOptions:
        return bandit_options(experiment.settings, self.defaults, arms=len(experiment.variants))

    def weights_in_force(self, experiment: Experiment) -> tuple[int, tuple[float, ...]]:
        """(period, weights in variant order): the latest recalculation, else the configured."""
        configured = tuple(v.weight for v in experiment.variants)
        if experiment.type is not ExperimentType.BANDIT:
            return 0, configured
        latest = self.store.latest_allocation(experiment.id)
        if latest is None:
            return 0, configured
        return latest.period, tuple(latest.weights.get(v.key, 0.0) for v in experiment.variants)

    def compute(
        self, experiment: Experiment, counters: Mapping[str, VariantCounters]
    ) -> AllocationResult:
        """Thompson weights from the data now (nothing is stored)."""
        require_bandit(experiment, "adaptive allocation")
        options = self.options(experiment)
        now = self.clock()
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
            config = replace(options.thompson(), min_trials=0)
            source, window = "daily", options.window_days
        else:
            metric = options.metric or experiment.primary_metric.key
            arms = [_event_arm(v, counters.get(v, VariantCounters()), metric) for v in keys]
            config = options.thompson()
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
        """Compute and, when the weights changed, store them as the next period."""
        result = self.compute(experiment, counters)
        _, in_force = self.weights_in_force(experiment)
        if dict(zip((v.key for v in experiment.variants), in_force, strict=True)) == result.weights:
            return RecalculationOutcome(experiment.id, experiment.key, "unchanged")
        record = self.store.add_allocation(
            AllocationRecord(
                experiment_id=experiment.id,
                period=0,
                computed_at=result.computed_at,
                weights=result.weights,
                method=result.method,
                seed=result.seed,
                source=result.source,
                details={
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
        )
        log.info(
            "experiment %s: weights %s (period %d)", experiment.key, result.weights, record.period
        )
        return RecalculationOutcome(experiment.id, experiment.key, "updated", record.period)

    def recalculate_all(
        self, counters_of: Callable[[str], Mapping[str, VariantCounters]]
    ) -> list[RecalculationOutcome]:
        """Every running bandit; one failing experiment does not stop the others."""
        outcomes = []
        for experiment in self.store.list_experiments(ExperimentStatus.RUNNING):
            if experiment.type is not ExperimentType.BANDIT:
                continue
            try:
                outcomes.append(self.recalculate(experiment, counters_of(experiment.id)))
            except (AbpilotError, ArithmeticError, ValueError) as error:
                log.exception("recalculation of %s failed", experiment.key)
                outcomes.append(
                    RecalculationOutcome(experiment.id, experiment.key, "failed", error=str(error))
                )
        return outcomes

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


def _event_arm(variant: str, counters: VariantCounters, metric: str) -> WindowedArm:
    summary = summarise(counters.metrics.get(metric, MetricTotals()), counters)
    successes = summary.count if summary.basis is Basis.EXPOSURES else summary.units
    return WindowedArm(variant, summary.n, min(successes, summary.n), None, Fallback.NONE)
