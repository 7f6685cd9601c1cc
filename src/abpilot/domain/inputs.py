"""The plain records clients hand to the service: an event (``EventInput``, of an ``EventKind``)
and a day's bandit counts (``DailyInput``), and ``aliased``, which reads a field given under
another system's name.

They import nothing but the standard library and the domain's errors, so the HTTP client
(``abpilot.client``) can use them without loading NumPy, SciPy or statsmodels.
``abpilot.store.base``, ``abpilot.service.events`` and ``abpilot.service.allocation`` re-export
them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload

from abpilot.domain.errors import ValidationError


class EventKind(enum.StrEnum):
    EXPOSURE = "exposure"
    CONVERSION = "conversion"


@dataclass(frozen=True, slots=True)
class EventInput:
    """An exposure or conversion as a client sends it; ``experiment`` is an id or a key."""

    kind: EventKind
    experiment: str
    unit_id: str | None = None
    variant: str | None = None
    metric: str | None = None
    value: float | None = None
    event_id: str | None = None
    timestamp: datetime | None = None
    # An exposure's unit facts (issue 18): checked by ``abpilot.domain.rules``.
    covariates: Mapping[str, Any] | None = None
    dimensions: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DailyInput:
    """One variant's impressions and clicks on a day (bandit daily metrics)."""

    variant: str
    impressions: int
    clicks: int


@overload
def aliased(
    value: str | None, alias: str | None, name: str, alias_name: str, *, required: Literal[True]
) -> str: ...


@overload
def aliased(
    value: str | None, alias: str | None, name: str, alias_name: str, *, required: bool = False
) -> str | None: ...


def aliased(
    value: str | None, alias: str | None, name: str, alias_name: str, *, required: bool = False
) -> str | None:
    """``value``, or ``alias`` (another system's name for the same field: ``user_id`` for
    ``unit_id``); a 422 when both are given and disagree, or (``required``) when neither is."""
    if alias is not None and value is not None and value != alias:
        raise ValidationError(
            f"{name} and {alias_name} name the same thing and disagree; give one of them",
            field=alias_name,
        )
    found = value if value is not None else alias
    if found is None and required:
        raise ValidationError(f"{name} (or {alias_name}) is required", field=name)
    return found
