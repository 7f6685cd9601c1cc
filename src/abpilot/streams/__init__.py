"""Intake from event streams: NATS JetStream and Redis Streams (issue 19, part 3).

A face like the REST API: messages in the JSON shape of ``POST /api/v1/events`` are checked by
the API's own event model and counted through ``ExperimentService.record_events``
(``intake.py``); ``nats_stream.py`` and ``redis_stream.py`` read, acknowledge and dead-letter on
each bus; ``consumer.py`` is what every consumer does around a batch and the threads they run
in; ``app.py`` is the app factory of ``abpilot serve`` with ``STREAM_CONSUMERS`` set; the verbs
``abpilot consume`` and ``abpilot replay`` live in ``abpilot/cli/streams.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from abpilot.settings import Settings
    from abpilot.streams.consumer import Source


def sources(
    settings: Settings, names: tuple[str, ...], *, batch: int | None = None
) -> list[Source]:
    """The consumers ``names`` (``nats``, ``redis``) configured by ``settings``."""
    found: list[Source] = []
    size = batch or settings.stream_batch
    for name in names:
        if name == "nats":
            from abpilot.streams.nats_stream import NatsSource

            found.append(
                NatsSource(
                    url=settings.nats_url,
                    stream=settings.nats_stream,
                    subject=settings.nats_subject,
                    durable=settings.nats_durable,
                    dead_letter_subject=settings.nats_dead_letter_subject,
                    batch=size,
                    ack_wait_seconds=settings.stream_ack_wait_seconds,
                    max_deliveries=settings.stream_max_deliveries,
                )
            )
        else:
            from abpilot.streams.redis_stream import RedisStreamSource

            found.append(
                RedisStreamSource(
                    url=settings.redis_stream_url or settings.resolved_redis_url(),
                    stream=settings.redis_stream,
                    group=settings.redis_stream_group,
                    dead_letter_stream=settings.redis_stream_dead_letter,
                    batch=size,
                    ack_wait_seconds=settings.stream_ack_wait_seconds,
                    max_deliveries=settings.stream_max_deliveries,
                )
            )
    return found
