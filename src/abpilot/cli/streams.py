"""``abpilot consume`` and ``abpilot replay``: intake from NATS JetStream and Redis Streams (thin
faces on ``abpilot.streams``)."""

from __future__ import annotations

import enum
import json
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from abpilot.cli.common import OpenServices, StoreUrl, cli_settings, console, fail, with_services

if TYPE_CHECKING:
    from abpilot.service.compose import Services
    from abpilot.streams.intake import IntakeOutcome


class SourceName(enum.StrEnum):
    NATS = "nats"
    REDIS = "redis"


def register(app: typer.Typer, open_services: OpenServices) -> None:
    """Add ``consume`` and ``replay`` to the ``abpilot`` CLI."""

    @app.command()
    def consume(
        source: Annotated[
            list[SourceName] | None,
            typer.Argument(help="nats and/or redis (default: STREAM_CONSUMERS)."),
        ] = None,
        batch: Annotated[
            int | None, typer.Option(min=1, max=10_000, help="Messages per batch (STREAM_BATCH).")
        ] = None,
        metrics_port: Annotated[
            int | None,
            typer.Option(min=1, max=65535, help="Serve Prometheus /metrics on this port (HOST)."),
        ] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Count the events of NATS JetStream and/or Redis Streams until SIGTERM or Ctrl-C.
        Any number of processes may consume the same stream: they share its messages."""
        from abpilot.observability import REGISTRY, configure_logging
        from abpilot.streams import sources
        from abpilot.streams.consumer import ConsumerThreads

        settings = cli_settings()
        names = tuple(str(s) for s in source) if source else settings.stream_consumers
        if not names:
            fail("name a stream to consume (nats, redis) or set STREAM_CONSUMERS")
        configure_logging(settings.log_format, debug=settings.debug)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=settings.host, registry=REGISTRY)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())

        def run(services: Services) -> None:
            consumers = ConsumerThreads(services.experiments, sources(settings, names, batch=batch))
            consumers.start()
            try:
                consumers.wait(until=stop.is_set)
            finally:
                consumers.stop()

        with_services(open_services, store_url, run)

    @app.command()
    def replay(
        source: Annotated[SourceName, typer.Argument(help="nats or redis.")],
        first: Annotated[
            str,
            typer.Option(
                "--from", help="First message: a stream sequence (nats) or entry id (redis, '-')."
            ),
        ],
        last: Annotated[
            str | None,
            typer.Option("--to", help="Last message, inclusive (default: the stream's end)."),
        ] = None,
        store_url: StoreUrl = None,
    ) -> None:
        """Apply a range of a stream's messages again (say after fixing the experiment their
        events were refused for): events counted before are duplicates by their event ids, so
        only what was not counted counts. Prints the outcome and the events refused, as JSON."""
        from abpilot.streams import sources

        settings = cli_settings()
        (found,) = sources(settings, (str(source),))

        def run(services: Services) -> IntakeOutcome:
            return found.replay(services.experiments, first=first, last=last)

        outcome = with_services(open_services, store_url, run)
        summary = outcome.as_dict()
        summary["refused"] = [json.loads(dead.to_json()) for dead in outcome.dead_letters]
        console.print_json(json.dumps(summary))
