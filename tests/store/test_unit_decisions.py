"""A unit's latest decision (feedback that names a unit, not a decision) is found through an
index, never by reading the experiment's other decisions: on SQL the query plan goes through
(experiment_id, unit_id, decided_at); on Redis it is one field of the experiment's
``unit_decisions`` hash, under its hash tag, then that one decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from redis.crc import key_slot

from abpilot.store.base import Decision, Store
from abpilot.store.redis import RedisStore
from abpilot.store.sql import SqlStore
from tests.conftest import REDIS_URL, backend_url
from tests.factories import make_experiment

INDEX = "ix_decisions_experiment_id_unit_id_decided_at"
T0 = datetime(2026, 4, 1, 18, 30, tzinfo=UTC)
UNITS = 300


def populate(store: Store) -> str:
    """An experiment with three decisions for each of UNITS units; returns its id."""
    exp = make_experiment()
    store.create_experiment(exp)
    for n in range(3 * UNITS):
        store.record_decision(
            Decision(
                id=f"d{n}",
                experiment_id=exp.id,
                unit_id=f"u{n % UNITS}",
                context_key="user_type=new",
                context={"user_type": "new"},
                arm="v1",
                propensity=0.5,
                policy="bandit",
                method="exact",
                decided_at=T0 + timedelta(seconds=n),
            )
        )
    return exp.id


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sql_finds_it_through_the_unit_index(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as (url, _):
        store = SqlStore.from_url(url)
        try:
            exp = populate(store)
            executed: list[tuple[str, Any]] = []

            def capture(*args: Any) -> None:
                if "decisions" in args[2]:  # not the connection's own set-up (PRAGMA, BEGIN)
                    executed.append((args[2], args[3]))  # statement, parameters

            sa.event.listen(store.engine, "before_cursor_execute", capture)
            found = store.latest_unit_decision(exp, "u7")
            sa.event.remove(store.engine, "before_cursor_execute", capture)
            assert found is not None
            assert found.id == f"d{2 * UNITS + 7}"
            ((statement, parameters),) = executed  # one query of the decisions
            with store.engine.connect() as conn:
                if backend == "sqlite":
                    plan = [
                        row[-1]
                        for row in conn.exec_driver_sql(
                            f"EXPLAIN QUERY PLAN {statement}", parameters
                        )
                    ]
                    reads = [step for step in plan if "decisions" in step]
                    assert reads, plan
                    assert all(INDEX in step for step in reads), plan
                else:
                    conn.exec_driver_sql("ANALYZE decisions")
                    rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                    plan = [row[0] for row in rows]
                    reads = [step for step in plan if " on decisions" in step]
                    assert reads, plan
                    assert all(INDEX in step for step in reads), plan
        finally:
            store.close()


@pytest.mark.redis
def test_redis_reads_one_field_of_the_units_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    with backend_url("redis", Path()) as (url, options):
        store = RedisStore.from_url(url, **options)
        try:
            exp = populate(store)
            tag = f"{options['prefix']}:{{{exp}}}"
            client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
            units = client.hgetall(f"{tag}:unit_decisions")
            client.close()
            assert len(units) == UNITS
            assert units["u7"] == f"d{2 * UNITS + 7}"
            assert key_slot(f"{tag}:unit_decisions".encode()) == key_slot(f"{tag}:def".encode())

            commands: list[tuple[str, str]] = []
            execute = store._client.execute_command
            queue = redis.client.Pipeline.pipeline_execute_command

            def direct(*args: Any, **kwargs: Any) -> Any:
                commands.append((str(args[0]), str(args[1])))
                return execute(*args, **kwargs)

            def queued(self: Any, *args: Any, **kwargs: Any) -> Any:
                commands.append((str(args[0]), str(args[1])))
                return queue(self, *args, **kwargs)

            monkeypatch.setattr(store._client, "execute_command", direct)
            monkeypatch.setattr(redis.client.Pipeline, "pipeline_execute_command", queued)
            found = store.latest_unit_decision(exp, "u7")
            monkeypatch.undo()
            assert found is not None
            assert found.id == f"d{2 * UNITS + 7}"
            assert commands == [
                ("HGET", f"{tag}:unit_decisions"),
                ("HMGET", f"{tag}:decisions"),
                ("HMGET", f"{tag}:decision_counts"),
            ]
        finally:
            store.close()
