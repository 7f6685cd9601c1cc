"""Daily snapshots of each running experiment's cumulative counters, for results over time.

``Snapshots.take_if_due`` is the job of a ``Scheduler`` (leadership by the store's ``snapshot``
lease), called every ``SNAPSHOT_TICK_SECONDS``: each running A/B test or event-fed bandit gets one
document per UTC day, written at the first call of that day (so the first within a tick of the
experiment starting, then one at the start of every day after). A document holds, per variant,
the units and, per metric, the population, converting units, sum and sum of squares, as
``get_metrics`` counts them at that moment: cumulative since the start. Nothing else is written
and nothing is read back on the hot path; the documents live in the store's shared documents
under ``snapshots/<experiment id>`` (``snapshot_documents.py``: the encoding, which export and
import share).

``Snapshots.read`` returns them oldest first, each variant compared with the control on every
metric at that day (``stats.frequentist``: the rate or mean difference's lift with its interval,
the same unadjusted comparison the analysis starts from), and the units that came that day.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from abpilot.domain.experiment import Experiment, ExperimentStatus, ExperimentType, MetricKind
from abpilot.service.core import ExperimentService
from abpilot.service.snapshot_documents import encode, namespace
from abpilot.stats.frequentist import Comparison, compare_means, compare_proportions

log = logging.getLogger("abpilot.snapshots")

SNAPSHOT_TICK_SECONDS = 900.0  # how often the leader asks whether today's snapshots are taken
SNAPSHOTTED = frozenset({ExperimentType.AB_TEST, ExperimentType.BANDIT})


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One variant on one metric at one snapshot: cumulative figures, and the comparison with
    the control (None on the control, and where it is undefined)."""

    n: int
    conversions: int
    sum: float
    sum_squares: float
    rate: float | None
    mean: float | None
    lift: float | None
    lift_ci: tuple[float, float] | None
    difference: float | None
    difference_ci: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class VariantPoint:
    key: str
    is_control: bool
    units: int
    new_units: int  # units that came since the previous snapshot (all of them in the first)
    metrics: Mapping[str, MetricPoint]


@dataclass(frozen=True, slots=True)
class Snapshot:
    day: date
    taken_at: datetime
    variants: tuple[VariantPoint, ...]


class Snapshots:
    def __init__(self, service: ExperimentService, *, alpha: float = 0.05) -> None:
        self.service = service
        self.store = service.store
        self.alpha = alpha
        self.runs = 0

    def take(self, experiment: str) -> bool:
        """Write today's snapshot of ``experiment`` (by id or key) unless one exists; True when
        it wrote one."""
        found = self.service.get_experiment(experiment)
        now = self.service.clock().astimezone(UTC)
        day = now.date().isoformat()
        if self.store.get_document(namespace(found.id), day) is not None:
            return False
        metrics = self.service.get_metrics(found.id)
        content, digest = encode(
            day=now.date(),
            taken_at=now,
            variants=[
                {
                    "key": v.key,
                    "units": v.unique_units,
                    "metrics": {
                        name: {
                            "n": s.n,
                            "conversions": s.conversions,
                            "sum": s.sum,
                            "sum_squares": s.sum_squares,
                        }
                        for name, s in v.metrics.items()
                    },
                }
                for v in metrics.variants
            ],
        )
        self.store.put_document(namespace(found.id), day, content, digest, now)
        return True

    def take_if_due(self) -> int:
        """The scheduler's job: today's snapshot of every running A/B test and bandit that has
        none yet; the number written. One experiment failing does not stop the others."""
        written = 0
        for experiment in self.service.list_experiments(ExperimentStatus.RUNNING):
            if experiment.type not in SNAPSHOTTED:
                continue
            try:
                written += self.take(experiment.id)
            except Exception:  # the job must go on to the next experiment and the next day
                log.exception("the snapshot of %s failed", experiment.key)
        self.runs += 1
        return written

    def read(self, experiment: str) -> tuple[Experiment, list[Snapshot]]:
        """Every snapshot of ``experiment`` (by id or key), oldest first, with each variant
        compared with the control on every metric."""
        found = self.service.get_experiment(experiment)
        snapshots: list[Snapshot] = []
        previous: dict[str, int] = {}
        for document in self.store.list_documents(namespace(found.id)):
            try:
                raw = json.loads(document.content)
                snapshot = _snapshot(found, raw, previous, self.alpha)
            except (ValueError, KeyError, TypeError):
                log.warning("snapshot %s of %s is unreadable; skipped", document.key, found.key)
                continue
            previous = {v.key: v.units for v in snapshot.variants}
            snapshots.append(snapshot)
        return found, snapshots

    def forget(self, experiment_id: str) -> int:
        """Delete every snapshot of an experiment (by id); the number deleted."""
        documents = self.store.list_documents(namespace(experiment_id))
        return sum(self.store.delete_document(d.namespace, d.key) for d in documents)


def _snapshot(
    experiment: Experiment, raw: Mapping[str, Any], previous: Mapping[str, int], alpha: float
) -> Snapshot:
    counted = {v["key"]: v for v in raw["variants"]}
    control = experiment.control.key
    kinds = {m.key: m.kind for m in experiment.metrics}
    variants = []
    for variant in experiment.variants:
        own = counted.get(variant.key, {"units": 0, "metrics": {}})
        base = counted.get(control, {"units": 0, "metrics": {}})
        units = int(own["units"])
        metrics = {
            key: _point(
                own["metrics"].get(key),
                None if variant.key == control else base["metrics"].get(key),
                binary=kind is MetricKind.BINARY,
                alpha=alpha,
            )
            for key, kind in kinds.items()
        }
        variants.append(
            VariantPoint(
                key=variant.key,
                is_control=variant.key == control,
                units=units,
                new_units=units - previous.get(variant.key, 0),
                metrics=metrics,
            )
        )
    return Snapshot(
        day=date.fromisoformat(raw["date"]),
        taken_at=datetime.fromisoformat(raw["taken_at"]),
        variants=tuple(variants),
    )


def _moments(figures: Mapping[str, Any] | None) -> tuple[int, int, float, float]:
    if not figures:
        return 0, 0, 0.0, 0.0
    return (
        int(figures["n"]),
        int(figures["conversions"]),
        float(figures["sum"]),
        float(figures["sum_squares"]),
    )


def _mean_variance(n: int, total: float, squares: float) -> tuple[float | None, float]:
    if n == 0:
        return None, 0.0
    mean = total / n
    variance = max(0.0, (squares - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    return mean, variance


def _point(
    own: Mapping[str, Any] | None,
    control: Mapping[str, Any] | None,
    *,
    binary: bool,
    alpha: float,
) -> MetricPoint:
    n, conversions, total, squares = _moments(own)
    mean, variance = _mean_variance(n, total, squares)
    comparison = Comparison(None, None, None, None, None, "none")
    if control is not None:
        n_c, conversions_c, total_c, squares_c = _moments(control)
        if binary:
            comparison = compare_proportions(conversions, n, conversions_c, n_c, alpha)
        else:
            mean_c, variance_c = _mean_variance(n_c, total_c, squares_c)
            comparison = compare_means(
                mean or 0.0, variance, n, mean_c or 0.0, variance_c, n_c, alpha
            )
    return MetricPoint(
        n=n,
        conversions=conversions,
        sum=total,
        sum_squares=squares,
        rate=conversions / n if binary and n else None,
        mean=mean,
        lift=comparison.lift,
        lift_ci=comparison.lift_ci,
        difference=comparison.difference,
        difference_ci=comparison.difference_ci,
    )
