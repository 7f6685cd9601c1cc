"""The composition root: where a process opens its store and builds its services, once.

``create_app`` (the API's lifespan) and the CLI build ``Services`` here from the settings;
``abpilot.open`` builds the ``ExperimentService`` here from its options. Nothing is started:
the caller starts the schedulers and the datafile watcher, and closes ``services.experiments``
(which closes the store) when it is done.

``ExperimentService`` wires what it exposes itself (its allocator, the ``ExperimentLookup`` and
the contextual, interleaving and transfer services on that lookup), so that a service built
directly on a store, as tests and simulations build it, is complete; everything else a process
runs on the same store is built in ``build``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abpilot.scheduler import Repeater, Scheduler
from abpilot.service.companion import Companion
from abpilot.service.core import ExperimentService
from abpilot.service.monitoring import Monitor
from abpilot.service.monitoring_daily import DailyMonitor, parse_time_of_day
from abpilot.service.snapshots import SNAPSHOT_TICK_SECONDS, Snapshots
from abpilot.settings import Settings
from abpilot.store.base import Store
from abpilot.store.factory import check_options
from abpilot.store.factory import open_store as open_url

MONITOR_TICK_SECONDS = 60.0  # how often the leader asks whether the daily run is due
PRUNE_INTERVAL_SECONDS = 3600.0  # how often the leader prunes event ids out of the window
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})


@dataclass(frozen=True, slots=True)
class Services:
    """Every service a process runs on one store, and the jobs that call them (not started)."""

    experiments: ExperimentService  # with .contextual, .interleaving and .transfer
    companion: Companion  # FeatureVisor datafiles with learned weights
    monitor: Monitor  # health checks now, with the service-wide thresholds
    daily: DailyMonitor  # the daily monitoring run (MONITOR_*)
    snapshots: Snapshots  # daily snapshots of the running experiments' counters
    recalculation: Scheduler  # bandit weights every UPDATE_INTERVAL_MINUTES, on the leader
    warehouse: Scheduler | None  # warehouse refreshes every WAREHOUSE_REFRESH_MINUTES (leader)
    monitoring: Scheduler  # the daily run, on the leader of the ``monitor`` lease
    snapshotting: Scheduler  # today's snapshots, on the leader of the ``snapshot`` lease
    pruning: Scheduler  # event ids out of the dedupe window, hourly, on the leader
    datafiles: Repeater | None  # polls DATAFILES_DIR (None without one)


def build(store: Store, settings: Settings) -> Services:
    """The services on ``store``, configured by ``settings``."""
    experiments = ExperimentService(
        store,
        cache_seconds=settings.experiment_cache_seconds,
        max_batch_events=settings.max_batch_events,
        bandit_defaults=settings.bandit_defaults(),
        warehouse_url=(
            settings.warehouse_url.get_secret_value() if settings.warehouse_url else None
        ),
        warehouse_timeout_seconds=settings.warehouse_timeout_seconds,
    )
    companion = Companion(
        experiments, settings.datafiles_dir, cache_seconds=settings.experiment_cache_seconds
    )
    monitor = Monitor(
        experiments,
        defaults=settings.monitoring_defaults(),
        contextual_defaults=experiments.contextual.defaults,
        warehouse_refresh_minutes=settings.warehouse_refresh_minutes,
    )
    daily = DailyMonitor(
        monitor,
        at=parse_time_of_day(settings.monitor_at),
        keep=settings.monitor_keep,
        webhook_url=settings.monitor_webhook_url,
    )
    snapshots = Snapshots(experiments)
    experiments.on_delete(snapshots.forget)
    return Services(
        experiments=experiments,
        companion=companion,
        monitor=monitor,
        daily=daily,
        snapshots=snapshots,
        recalculation=Scheduler(
            store,
            experiments.recalculate_all,
            name="recalculate",
            interval_seconds=settings.update_interval_minutes * 60,
        ),
        warehouse=(
            Scheduler(
                store,
                experiments.warehouse.refresh_running,
                name="warehouse",
                interval_seconds=settings.warehouse_refresh_minutes * 60,
            )
            if settings.warehouse_url
            else None
        ),
        monitoring=Scheduler(
            store, daily.run_if_due, name="monitor", interval_seconds=MONITOR_TICK_SECONDS
        ),
        snapshotting=Scheduler(
            store, snapshots.take_if_due, name="snapshot", interval_seconds=SNAPSHOT_TICK_SECONDS
        ),
        pruning=Scheduler(
            store,
            experiments.prune_event_ids,
            name="prune-event-ids",
            interval_seconds=PRUNE_INTERVAL_SECONDS,
        ),
        datafiles=(
            Repeater(
                companion.sync,
                name="datafiles",
                interval_seconds=settings.datafiles_poll_seconds,
            )
            if settings.datafiles_dir is not None
            else None
        ),
    )


def open_store(settings: Settings, url: str | None = None) -> Store:
    """The configured store, or the one at ``url``; ``REDIS_PREFIX`` applies to any Redis
    URL, ``EVENT_ID_RETENTION_DAYS`` to every store. Opening a SQL store runs its migrations
    (blocking: the app calls this in a thread)."""
    url = url or settings.store_url()
    retention = settings.event_id_retention_days
    if url.split(":", 1)[0].lower() in REDIS_SCHEMES:
        return open_url(
            url,
            prefix=settings.redis_prefix,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
            event_id_retention_days=retention,
        )
    if url.split(":", 1)[0].lower().startswith("postgres"):
        return open_url(
            url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            event_id_retention_days=retention,
        )
    return open_url(url, event_id_retention_days=retention)


def open_service(url: str, **options: Any) -> ExperimentService:
    """``abpilot.open``: the service on the store at ``url``. ``cache_seconds``,
    ``bandit_defaults`` and ``warehouse_url`` go to the service, other options to the store; an
    option neither takes is a TypeError that lists the accepted ones."""
    check_options(
        url,
        options,
        caller="abpilot.open()",
        also=("cache_seconds", "bandit_defaults", "warehouse_url"),
    )
    cache_seconds = options.pop("cache_seconds", 1.0)
    bandit_defaults = options.pop("bandit_defaults", None)
    warehouse_url = options.pop("warehouse_url", None)
    return ExperimentService(
        open_url(url, **options),
        cache_seconds=cache_seconds,
        bandit_defaults=bandit_defaults,
        warehouse_url=warehouse_url,
    )
