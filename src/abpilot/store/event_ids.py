"""The dedupe window: how long a store keeps the event ids it has counted.

An event id is claimed (recorded as counted) at its batch's ``received_at``, the service's clock,
so a test with an injected clock decides every claim time. With ``event_id_retention_days`` N > 0
a store recognises an id as a duplicate for at least N days after its claim and may forget it
after that: SQL and memory keep each id's claim time and prune those older than N days in small
batches (``prune_event_ids``, run by the scheduler's leader); Redis keeps ids in per-day sets that
expire. N = 0 keeps every id forever. Exports carry only the ids claimed in the last N days.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from abpilot.domain.records import EventRecord, as_utc

DAY_SECONDS = 86_400
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def claim_time(events: Iterable[EventRecord]) -> datetime:
    """When a batch's ids are claimed: the latest ``received_at`` of its events (the service
    sets one for the whole batch), or now for events that carry none (a store called
    directly)."""
    times = [e.received_at for e in events if e.received_at is not None]
    return as_utc(max(times)) if times else datetime.now(UTC)


def day_number(moment: datetime) -> int:
    """The UTC day of ``moment``, counted from 1970-01-01."""
    return int((as_utc(moment) - EPOCH).total_seconds() // DAY_SECONDS)


def day_end(day: int) -> datetime:
    """The last microsecond of a UTC day: the time a store that keeps ids per day gives an id
    (never earlier than its claim, so a store it is imported into keeps it long enough)."""
    return EPOCH + timedelta(days=day + 1, microseconds=-1)


def window_start(now: datetime, retention_days: int) -> datetime | None:
    """The earliest claim time still inside the window at ``now`` (None: the window is
    unbounded)."""
    if retention_days <= 0:
        return None
    return as_utc(now) - timedelta(days=retention_days)


def check_retention(days: object) -> int:
    """A store's ``event_id_retention_days``: a whole number of days, 0 or more."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"event_id_retention_days must be a whole number >= 0 (got {days!r})")
    return days
