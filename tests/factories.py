"""Small builders for test data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    MetricKind,
    Variant,
)


def make_experiment(
    key: str = "checkout",
    *,
    weights: tuple[float, ...] = (0.5, 0.5),
    status: ExperimentStatus = ExperimentStatus.RUNNING,
    traffic_allocation: float = 1.0,
    **overrides: Any,
) -> Experiment:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    variants = tuple(
        Variant(
            key="control" if i == 0 else f"v{i}",
            name="Control" if i == 0 else f"Variant {i}",
            weight=w,
            is_control=i == 0,
            config={"colour": "blue" if i == 0 else f"shade-{i}", "n": i},
        )
        for i, w in enumerate(weights)
    )
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "key": key,
        "name": key.title(),
        "type": ExperimentType.AB_TEST,
        "status": status,
        "traffic_allocation": traffic_allocation,
        "salt": key,
        "variants": variants,
        "metrics": (Metric("conversion"), Metric("revenue", MetricKind.VALUE)),
        "created_at": now,
        "updated_at": now,
        "settings": {"note": "ünïcode ✓"},
    }
    fields.update(overrides)
    return Experiment(**fields)
