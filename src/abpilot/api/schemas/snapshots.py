"""Response bodies of the results over time: daily snapshots, and who the caller is."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

from abpilot.domain.experiment import Experiment
from abpilot.service.snapshots import MetricPoint, Snapshot


class MetricPointRead(BaseModel):
    """Cumulative figures of one variant on one metric, and its lift over the control with the
    interval (unadjusted, level 1 - alpha; None on the control)."""

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

    @classmethod
    def of(cls, point: MetricPoint) -> MetricPointRead:
        return cls.model_validate(point, from_attributes=True)


class VariantPointRead(BaseModel):
    key: str
    is_control: bool
    units: int
    new_units: int
    metrics: dict[str, MetricPointRead]


class SnapshotRead(BaseModel):
    date: date
    taken_at: datetime
    variants: list[VariantPointRead]


class SnapshotsRead(BaseModel):
    experiment_id: str
    key: str
    alpha: float
    metrics: list[str]
    snapshots: list[SnapshotRead]

    @classmethod
    def of(cls, experiment: Experiment, snapshots: list[Snapshot], alpha: float) -> SnapshotsRead:
        return cls(
            experiment_id=experiment.id,
            key=experiment.key,
            alpha=alpha,
            metrics=[m.key for m in experiment.metrics],
            snapshots=[
                SnapshotRead(
                    date=s.day,
                    taken_at=s.taken_at,
                    variants=[
                        VariantPointRead(
                            key=v.key,
                            is_control=v.is_control,
                            units=v.units,
                            new_units=v.new_units,
                            metrics={k: MetricPointRead.of(p) for k, p in v.metrics.items()},
                        )
                        for v in s.variants
                    ],
                )
                for s in snapshots
            ],
        )


class SessionRead(BaseModel):
    """What the caller's key may do: ``role`` is the key's (``admin`` when the service needs no
    key), ``keys_required`` whether the service asks for one."""

    role: Literal["read", "write", "admin"]
    keys_required: bool
