"""The plain records clients hand to the service: an event (``EventInput``, of an ``EventKind``)
and a day's bandit counts (``DailyInput``).

They import nothing but the standard library, so the HTTP client (``abpilot.client``) can use
them without loading NumPy, SciPy or statsmodels. ``abpilot.store.base``,
``abpilot.service.events`` and ``abpilot.service.allocation`` re-export them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


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


@dataclass(frozen=True, slots=True)
class DailyInput:
    """One variant's impressions and clicks on a day (bandit daily metrics)."""

    variant: str
    impressions: int
    clicks: int
