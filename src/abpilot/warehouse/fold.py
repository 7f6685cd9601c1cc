"""How the faces' fields of a warehouse experiment are stored (pure): ``fold`` moves the
``"source": "warehouse"`` fields of an experiment and its metrics into ``settings.warehouse``
(``spec.warehouse_options`` checks them there), ``fold_changes`` those of changed metrics, and
``dimensions_alias`` reads ``"dimension"`` as the alias of ``"dimensions"`` with one column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from abpilot.domain.errors import ValidationError
from abpilot.warehouse.spec import EVENTS, METRIC_FIELDS, SETTINGS_KEY, WAREHOUSE, is_warehouse


def fold(
    *,
    source: str | None,
    assignment_source: str | None,
    dimension: str | None = None,
    daily_source: str | None = None,
    metrics: Sequence[Any],
    settings: Mapping[str, Any],
) -> tuple[list[Any], dict[str, Any]]:
    """The metrics without their warehouse fields, and the settings with ``warehouse`` holding
    them: how the faces' ``"source": "warehouse"`` experiments are stored. An experiment of
    the events (no source, or ``"events"``) must not name warehouse fields."""
    if source not in (None, EVENTS, WAREHOUSE):
        raise ValidationError(
            f"source must be 'events' or 'warehouse' (got {source!r:.60})", field="source"
        )
    plain: list[Any] = []
    specs: dict[str, Any] = {}
    for i, metric in enumerate(metrics):
        if not isinstance(metric, Mapping):
            plain.append(metric)
            continue
        given = {f: metric[f] for f in METRIC_FIELDS if metric.get(f) is not None}
        if given and source != WAREHOUSE:
            name = next(iter(given))
            raise ValidationError(
                f"metrics[{i}].{name} applies to an experiment with source 'warehouse'",
                field=f"metrics[{i}].{name}",
            )
        plain.append({k: v for k, v in metric.items() if k not in METRIC_FIELDS})
        if given:
            specs[str(metric.get("key"))] = given
    if source != WAREHOUSE:
        given = {
            "assignment_source": assignment_source,
            "dimension": dimension,
            "daily_source": daily_source,
        }
        for name, value in given.items():
            if value is not None:
                raise ValidationError(
                    f"{name} applies to an experiment with source 'warehouse'", field=name
                )
        return plain, dict(settings)
    if SETTINGS_KEY in settings:
        raise ValidationError(
            f"give the warehouse fields on the experiment and its metrics, not in "
            f"settings.{SETTINGS_KEY} too",
            field=f"settings.{SETTINGS_KEY}",
        )
    section: dict[str, Any] = {"assignment_source": assignment_source, "metrics": specs}
    if daily_source is not None:
        section["daily_source"] = daily_source
    return plain, {**settings, SETTINGS_KEY: section}


def dimensions_alias(
    dimension: str | None, dimensions: Sequence[str] | None
) -> Sequence[str] | None:
    """A warehouse experiment's dimensions: ``dimensions`` (a list), or ``dimension``, the
    alias of one (giving both is a 422 unless they agree)."""
    if dimension is None:
        return dimensions
    if dimensions is not None and list(dimensions) != [dimension]:
        raise ValidationError(
            "give dimensions (a list of columns); dimension is an alias of one, not both",
            field="dimension",
        )
    return [dimension]


def fold_changes(
    metrics: Sequence[Any], settings: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any] | None]:
    """Changed metrics of an experiment whose settings are ``settings``: for a warehouse
    experiment the metrics' warehouse fields move into ``settings.warehouse.metrics`` (the new
    settings are returned, else None); an experiment of the events refuses them."""
    if not is_warehouse(settings):
        plain, _ = fold(source=None, assignment_source=None, metrics=metrics, settings=settings)
        return plain, None
    section = dict(settings[SETTINGS_KEY])
    plain, folded = fold(
        source=WAREHOUSE,
        assignment_source=section.get("assignment_source"),
        metrics=metrics,
        settings={},
    )
    given = folded[SETTINGS_KEY]["metrics"]
    section["metrics"] = {**dict(section.get("metrics") or {}), **given}
    return plain, {**settings, SETTINGS_KEY: section}
