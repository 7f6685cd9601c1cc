"""The app of ``abpilot serve`` when ``STREAM_CONSUMERS`` is set: the REST API of
``abpilot.api.create_app`` whose start-up also starts the configured stream consumers, in
threads of each worker, on the worker's own service (stopped before the store closes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from abpilot.api.app import create_app as create_api
from abpilot.settings import Settings, get_settings
from abpilot.streams import sources
from abpilot.streams.consumer import ConsumerThreads


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = create_api(settings)
    api_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with api_lifespan(app):
            consumers = ConsumerThreads(
                app.state.service, sources(settings, settings.stream_consumers)
            )
            consumers.start()
            try:
                yield
            finally:  # each consumer ends its batch (acknowledged) or leaves it unacknowledged
                await asyncio.to_thread(consumers.stop)

    app.router.lifespan_context = lifespan
    return app
