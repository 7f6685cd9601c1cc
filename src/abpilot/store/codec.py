"""Experiment <-> plain JSON-able dict, shared by the stores that keep documents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from abpilot.domain.experiment import (
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Metric,
    MetricKind,
    MetricRole,
    Variant,
)
from abpilot.domain.records import as_utc as as_utc
from abpilot.domain.rules import cap_input  # re-exported: the stores read times


def _time(value: str | None) -> datetime | None:
    return None if value is None else _required_time(value)


def _required_time(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def variant_to_dict(variant: Variant) -> dict[str, Any]:
    return {
        "key": variant.key,
        "name": variant.name,
        "description": variant.description,
        "weight": variant.weight,
        "is_control": variant.is_control,
        "config": dict(variant.config),
    }


def variant_from_dict(raw: dict[str, Any]) -> Variant:
    return Variant(
        key=raw["key"],
        name=raw["name"],
        description=raw.get("description", ""),
        weight=float(raw["weight"]),
        is_control=bool(raw["is_control"]),
        config=raw.get("config") or {},
    )


def metrics_to_list(metrics: tuple[Metric, ...]) -> list[dict[str, Any]]:
    """Each metric as a dict; the guardrail fields only where they differ from their defaults,
    so that a metric without them reads as it always did."""
    found: list[dict[str, Any]] = []
    for m in metrics:
        raw: dict[str, Any] = {"key": m.key, "kind": m.kind.value, "description": m.description}
        if m.role is not MetricRole.GOAL:
            raw["role"] = m.role.value
        if not m.higher_is_better:
            raw["higher_is_better"] = False
        if m.margin is not None:
            raw["margin"] = m.margin
        if m.margin_relative:
            raw["margin_relative"] = True
        for name in ("covariate", "numerator", "denominator"):
            if getattr(m, name) is not None:
                raw[name] = getattr(m, name)
        if cap_input(m) is not None:
            raw["cap"] = cap_input(m)
        found.append(raw)
    return found


def metrics_from_list(raw: list[dict[str, Any]]) -> tuple[Metric, ...]:
    return tuple(
        Metric(
            key=m["key"],
            kind=MetricKind(m["kind"]),
            description=m.get("description", ""),
            role=MetricRole(m.get("role", MetricRole.GOAL)),
            higher_is_better=m.get("higher_is_better", True),
            margin=m.get("margin"),
            margin_relative=m.get("margin_relative", False),
            covariate=m.get("covariate"),
            cap_absolute=(m.get("cap") or {}).get("absolute"),
            cap_percentile=(m.get("cap") or {}).get("percentile"),
            numerator=m.get("numerator"),
            denominator=m.get("denominator"),
        )
        for m in raw
    )


def experiment_to_dict(experiment: Experiment) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else as_utc(moment).isoformat()

    return {
        "id": experiment.id,
        "key": experiment.key,
        "name": experiment.name,
        "description": experiment.description,
        "type": experiment.type.value,
        "status": experiment.status.value,
        "traffic_allocation": experiment.traffic_allocation,
        "salt": experiment.salt,
        "variants": [variant_to_dict(v) for v in experiment.variants],
        "metrics": metrics_to_list(experiment.metrics),
        "settings": dict(experiment.settings),
        "created_at": iso(experiment.created_at),
        "updated_at": iso(experiment.updated_at),
        "started_at": iso(experiment.started_at),
        "ended_at": iso(experiment.ended_at),
        "winner": experiment.winner,
        "version": experiment.version,
        "open_metrics": experiment.open_metrics,
        **({"dimensions": list(experiment.dimensions)} if experiment.dimensions else {}),
    }


def experiment_from_dict(raw: dict[str, Any]) -> Experiment:
    return Experiment(
        id=raw["id"],
        key=raw["key"],
        name=raw["name"],
        description=raw.get("description", ""),
        type=ExperimentType(raw["type"]),
        status=ExperimentStatus(raw["status"]),
        traffic_allocation=float(raw["traffic_allocation"]),
        salt=raw["salt"],
        variants=tuple(variant_from_dict(v) for v in raw["variants"]),
        metrics=metrics_from_list(raw["metrics"]),
        settings=raw.get("settings") or {},
        created_at=_required_time(raw["created_at"]),
        updated_at=_required_time(raw["updated_at"]),
        started_at=_time(raw.get("started_at")),
        ended_at=_time(raw.get("ended_at")),
        winner=raw.get("winner"),
        version=int(raw["version"]),
        open_metrics=bool(raw.get("open_metrics", False)),
        dimensions=tuple(raw.get("dimensions") or ()),
    )
