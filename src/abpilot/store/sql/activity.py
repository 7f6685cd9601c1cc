"""When an experiment's last counted event was received, for the SQL store.

No statement of its own: each counter row (``variant_counters``, ``metric_counters``) carries
``last_event_at``, moved forward by the same ``INSERT .. ON CONFLICT DO UPDATE`` that adds to its
counts, with ``CASE WHEN newer ..`` (``bulk.adding``): an atomic maximum, so concurrent batches
never move it back. Every counted event touches at least one row of its experiment (an exposure
its variant row, a conversion its metric row), and each touched row gets the batch's latest time
for that experiment, so the latest over the experiment's rows is its last event time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa

from abpilot.store.codec import as_utc
from abpilot.store.sql.common import guarded
from abpilot.store.sql.schema import metric_counters, variant_counters


def stored_time(latest: Mapping[str, datetime], experiment_id: str) -> datetime | None:
    """The value to write: UTC (SQLite keeps no time zone, so stored text compares in time
    order and ``as_utc`` reads it back right), or None for a row no event touched."""
    moment = latest.get(experiment_id)
    return None if moment is None else as_utc(moment)


class SqlActivity:
    """Mixed into ``SqlStore``: needs ``engine``."""

    engine: sa.Engine

    @guarded
    def last_event_at(self, experiment_id: str) -> datetime | None:
        latest = [
            sa.select(sa.func.max(table.c.last_event_at))
            .where(table.c.experiment_id == experiment_id)
            .scalar_subquery()
            for table in (variant_counters, metric_counters)
        ]
        with self.engine.connect() as conn:
            found = [value for value in conn.execute(sa.select(*latest)).one() if value]
        return as_utc(max(found, key=as_utc)) if found else None
