"""Monitoring of an experiment analysed from the warehouse (with an injected clock): its checks
read the latest refresh (SRM on the refreshed units), and ``warehouse_refresh`` stands in for
``stale``: an alert when the latest refresh failed (the previous one still analysed) or is
older than twice the refresh interval."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from abpilot.domain.errors import AbpilotError
from abpilot.monitoring.checks import Check, Status
from abpilot.service import ExperimentService
from abpilot.service.monitoring import Monitor
from abpilot.store.memory import MemoryStore
from tests.warehouse.engines import warehouse
from tests.warehouse.simulated import ORDERS_SQL, VARIANTS, simulate
from tests.warehouse.test_equivalence import sources

REFRESH_MINUTES = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with warehouse("duckdb", simulate(units=400, seed=8), tmp_path) as found:
        yield found


def checks(monitor: Monitor) -> dict[str, Check]:
    return {c.name: c for c in monitor.check_experiment("checkout").checks}


def test_the_monitor_reads_the_refresh_and_alerts_when_it_is_stale_or_failed(url: str) -> None:
    clock = Clock()
    service = ExperimentService(MemoryStore(), warehouse_url=url, clock=clock)
    sources(service)
    service.create_experiment(
        key="checkout",
        variants=[{"key": v} for v in VARIANTS],
        metrics=[{"key": "purchase", "fact_source": "orders", "window_hours": 72}],
        source="warehouse",
        assignment_source="exposures",
    )
    service.start_experiment("checkout")
    monitor = Monitor(service, warehouse_refresh_minutes=REFRESH_MINUTES)

    found = checks(monitor)
    assert "stale" not in found  # no event ever comes: the refresh is what goes stale
    assert found["warehouse_refresh"].status is Status.OK
    assert found["warehouse_refresh"].figures["refreshed_at"] is None
    clock.advance(61)
    assert checks(monitor)["warehouse_refresh"].status is Status.ALERT  # none in 2 intervals

    done = service.warehouse.refresh("checkout")
    clock.advance(45)
    found = checks(monitor)
    assert found["warehouse_refresh"].status is Status.OK
    assert found["warehouse_refresh"].figures["minutes_since"] == pytest.approx(45)
    # SRM judges the refreshed units, as the analysis does
    observed = dict.fromkeys(VARIANTS, 0)
    for row in done.rows:
        if row.metric == "" and row.variant:
            observed[row.variant] += row.units
    assert sum(observed.values()) == 400
    assert found["srm"].figures["observed"] == observed

    clock.advance(16)  # 61 minutes: older than two intervals
    stale = checks(monitor)["warehouse_refresh"]
    assert stale.status is Status.ALERT
    assert "61 minutes old" in stale.message

    # a failing refresh: the source it reads is gone
    service.warehouse.delete_source("orders")
    with pytest.raises(AbpilotError):
        service.warehouse.refresh("checkout")
    failed = checks(monitor)["warehouse_refresh"]
    assert failed.status is Status.ALERT
    assert "failed" in failed.message
    assert "orders" in failed.figures["failure"]
    assert failed.figures["refreshed_at"] == done.refreshed_at.isoformat()  # still analysed
    assert checks(monitor)["srm"].figures["observed"] == observed

    service.warehouse.put_source({"name": "orders", "kind": "fact", "sql": ORDERS_SQL})
    service.warehouse.refresh("checkout")
    assert checks(monitor)["warehouse_refresh"].status is Status.OK
