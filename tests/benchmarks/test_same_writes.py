"""The batch-intake reference "the same writes by hand" writes what the service writes for the
same batch: the same rows in the same tables, and counters that agree with the service's."""

from __future__ import annotations

import contextlib
import sqlite3

from benchmarks.common import sqlite_url
from benchmarks.intake import BATCH, EXPOSURES_PER_BATCH, ServiceRun, same_writes

TABLES = ("processed_events", "assignments", "exposed_units", "unit_metrics")


def test_the_by_hand_sqlite_batch_writes_the_rows_the_service_writes() -> None:
    with contextlib.ExitStack() as stack:
        url, options = stack.enter_context(sqlite_url())
        run = ServiceRun(url, options)  # the service's experiment, and one batch through it
        stack.callback(run.close)
        by_hand = stack.enter_context(same_writes("SQLite", url, options, run))
        assert by_hand(0, 1) > 0

        service_id = run.service.get_experiment("intake-bench").id
        reference_id = run.service.get_experiment("intake-bench-by-hand").id
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:

            def rows(table: str, experiment_id: str) -> int:
                sql = f"SELECT count(*) FROM {table} WHERE experiment_id = ?"
                return int(db.execute(sql, (experiment_id,)).fetchone()[0])

            for table in TABLES:
                assert rows(table, reference_id) == rows(table, service_id) > 0, table
            assert rows("processed_events", reference_id) == BATCH
            assert rows("assignments", reference_id) == EXPOSURES_PER_BATCH

        counted = run.service.get_metrics("intake-bench-by-hand").variants
        assert sum(v.exposures for v in counted) == EXPOSURES_PER_BATCH
