"""The FastAPI app factory: ``create_app(settings)``; nothing is created at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI

from abpilot.api import cors, errors
from abpilot.api.auth import API_PREFIX, Authenticator, authorize, route_template
from abpilot.api.http_semantics import HeadAsGet
from abpilot.api.limits import BodySizeLimit
from abpilot.api.routes import (
    analysis,
    bandits,
    contextual,
    dashboard,
    events,
    experiments,
    featurevisor,
    health,
    interleaving,
    monitoring,
    ofrep,
    warehouse,
)
from abpilot.observability import RequestMetrics, configure_logging
from abpilot.service import compose
from abpilot.settings import Settings, get_settings
from abpilot.store.base import Store
from abpilot.version import __version__

log = logging.getLogger("abpilot.api")


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """Build the app. The store is opened at start-up (or ``store`` is used as given)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything started is registered on the stack as it starts, so a start-up step that
        # fails (a datafile sync, a scheduler) still stops what came before it and closes an
        # opened store. Blocking start-up work (migrations, reading datafiles from disk) runs
        # in a worker thread, off the event loop.
        async with AsyncExitStack() as stack:
            if store is None:
                active = await asyncio.to_thread(_open, settings)
                stack.callback(active.close)
            else:
                active = store  # the caller's: the caller closes it
            services = compose.build(active, settings)
            app.state.service = services.experiments
            app.state.contextual = services.experiments.contextual
            app.state.companion = services.companion
            app.state.monitor = services.monitor
            app.state.monitoring = services.daily
            app.state.scheduler = services.recalculation
            app.state.snapshots = services.snapshots
            if settings.warehouse_sources_file is not None:
                await asyncio.to_thread(
                    services.experiments.warehouse.load_file, settings.warehouse_sources_file
                )
            if services.datafiles is not None:
                await asyncio.to_thread(services.companion.sync)
                services.datafiles.start()
                stack.callback(services.datafiles.stop)
            if settings.scheduler_enabled:
                for scheduler in (
                    services.recalculation,
                    services.monitoring,
                    services.snapshotting,
                    services.pruning,
                    services.warehouse,
                ):
                    if scheduler is not None:
                        scheduler.start()
                        stack.callback(scheduler.stop)
            yield

    app = FastAPI(
        title="abpilot",
        version=__version__,
        description="Experiments on live traffic, steered toward what works.",
        lifespan=lifespan,
        debug=settings.debug,
        dependencies=[Depends(authorize)],
    )
    app.state.settings = settings
    configure_logging(settings.log_format, debug=settings.debug)
    app.state.auth = Authenticator.from_settings(settings)
    if not app.state.auth.enabled:
        log.warning(
            "no API_KEYS or JWT_SECRET configured: the API is open to anyone who can reach %s:%s",
            settings.host,
            settings.port,
        )
    errors.install(app)
    app.include_router(experiments.router, prefix=API_PREFIX)
    app.include_router(events.router, prefix=API_PREFIX)
    app.include_router(analysis.router, prefix=API_PREFIX)
    app.include_router(bandits.router, prefix=API_PREFIX)
    app.include_router(contextual.router, prefix=API_PREFIX)
    app.include_router(interleaving.router, prefix=API_PREFIX)
    app.include_router(monitoring.router, prefix=API_PREFIX)
    app.include_router(warehouse.router, prefix=API_PREFIX)
    app.include_router(featurevisor.router)
    app.include_router(ofrep.router)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    app.include_router(dashboard.api_router, prefix=API_PREFIX)
    # The last added runs first: request ids and metrics, CORS (so that every answer, a 413
    # included, carries its headers), the body limit, then HEAD as GET.
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    cors.install(app, settings.cors_origins)
    app.add_middleware(RequestMetrics, route_of=route_template)
    return app


def _open(settings: Settings) -> Store:
    log.info("%s", settings.store_choice())
    return compose.open_store(settings)
