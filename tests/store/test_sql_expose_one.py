"""PostgreSQL counts one plain exposure in one statement (``EXPOSE_ONE``), beside the general
counting path (``count_events`` in a transaction). The two must leave the same rows: these tests
run the same exposures through both, and force the one race a single statement cannot answer."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from abpilot.store.base import EventKind, EventRecord
from abpilot.store.factory import open_store
from abpilot.store.sql import SqlStore, intake
from tests.conftest import backend_url
from tests.factories import make_experiment

TABLES = {
    "assignments": "experiment_id, unit_id, variant, period",
    "exposed_units": "experiment_id, unit_id",
    "processed_events": "experiment_id, event_id",
    "variant_counters": "experiment_id, variant, period, assigned_units, exposures, "
    "unique_units, last_event_at",
}


@pytest.fixture
def two_postgres(tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore]]:
    with (
        backend_url("postgres", tmp_path) as (url, options),
        backend_url("postgres", tmp_path) as (other_url, other_options),
    ):
        one, two = open_store(url, **options), open_store(other_url, **other_options)
        assert isinstance(one, SqlStore)
        assert isinstance(two, SqlStore)
        try:
            yield one, two
        finally:
            one.close()
            two.close()


def rows(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        return {
            table: sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT {cols} FROM {table}")))
            for table, cols in TABLES.items()
        }


def test_one_statement_and_the_general_path_leave_the_same_rows(
    two_postgres: tuple[SqlStore, SqlStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, general = two_postgres
    exp = make_experiment("expose-one")
    for store in (fast, general):
        store.create_experiment(exp)
    used = []
    one_statement = intake._expose_in_one_statement
    monkeypatch.setattr(
        intake,
        "_expose_in_one_statement",
        lambda *args: used.append(1) or one_statement(*args),
    )
    draw = random.Random(19)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    for step in range(300):
        unit = f"u{draw.randrange(40)}"
        if draw.random() < 0.1:  # assigned first, maybe to another variant (counts under it)
            variant, period = draw.choice(["control", "treatment"]), draw.randrange(2)
            for store in (fast, general):
                store.assign(exp.id, unit, variant, period=period)
            continue
        event = EventRecord(
            EventKind.EXPOSURE,
            exp.id,
            draw.choice(["control", "treatment"]),
            unit,
            event_id=draw.choice([None, f"e{draw.randrange(60)}"]),  # repeats are duplicates
            period=draw.randrange(2),
            received_at=start + timedelta(seconds=draw.randrange(-50, 400)),  # out of order too
        )
        answers = [
            fast.apply_current_events([event], {exp.id: exp.version}),
            general.apply_events([event]),
        ]
        assert answers[0] == answers[1], step
    assert len(used) > 200  # the one statement did count them
    assert rows(fast) == rows(general)
    assert rows(fast)["processed_events"]  # and the cases were there: duplicates, reassignment
    counters = fast.get_counters(exp.id)
    assert sum(c.exposures for c in counters.values()) < 270  # some were duplicates


def test_an_assignment_committed_meanwhile_is_counted_through_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another transaction stores the unit's first assignment (to ``treatment``) while the
    statement runs: its insert waits for that commit and skips, its snapshot cannot show the
    row, so nothing of it may stay; the general path then counts under ``treatment``."""
    with backend_url("postgres", tmp_path) as (url, options):
        store = open_store(url, **options)
        assert isinstance(store, SqlStore)
        exp = make_experiment("raced")
        store.create_experiment(exp)
        answers: list[object] = []
        one_statement = intake._expose_in_one_statement
        monkeypatch.setattr(
            intake,
            "_expose_in_one_statement",
            lambda *args: answers.append(one_statement(*args)) or answers[-1],
        )
        other = store.engine.connect()
        other_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        other.exec_driver_sql(
            "INSERT INTO assignments (experiment_id, unit_id, variant, period, assigned_at) "
            "VALUES (%(e)s, 'raced-unit', 'treatment', 0, now())",
            {"e": exp.id},
        )
        other.exec_driver_sql(
            "INSERT INTO variant_counters (experiment_id, variant, period, assigned_units, "
            "exposures, unique_units) VALUES (%(e)s, 'treatment', 0, 1, 0, 0)",
            {"e": exp.id},
        )
        event = EventRecord(EventKind.EXPOSURE, exp.id, "control", "raced-unit", event_id="x1")
        done: list[object] = []
        worker = threading.Thread(
            target=lambda: done.append(store.apply_current_events([event], {exp.id: 1}))
        )
        worker.start()
        with store.engine.connect() as watch:  # until the statement waits on the other's row
            for _ in range(600):
                blocked = watch.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE %(p)s = ANY("
                    "pg_blocking_pids(pid))",
                    {"p": other_pid},
                ).scalar()
                if blocked:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the statement never waited for the other transaction")
        other.commit()
        other.close()
        worker.join(timeout=60)
        assert answers == [None]  # the statement stood back, and wrote nothing
        assert [(d.applied, d.duplicates) for d in done] == [(1, 0)]  # type: ignore[attr-defined]
        counters = store.get_counters(exp.id)
        assert (counters["treatment"].assigned_units, counters["treatment"].exposures) == (1, 1)
        assert counters["treatment"].unique_units == 1
        assert "control" not in counters or counters["control"].exposures == 0
        assert rows(store)["processed_events"] == [(exp.id, "x1")]
        store.close()
