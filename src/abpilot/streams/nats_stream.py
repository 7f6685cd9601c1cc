"""Events from NATS JetStream: a durable pull consumer that any number of consumer processes
share (each message goes to one of them; one that dies without acknowledging has its messages
delivered to another after ``ack_wait``).

The stream (``NATS_STREAM``, capturing ``NATS_SUBJECT``) and a dead-letter stream
(``<NATS_STREAM>_DEAD``, capturing ``NATS_DEAD_LETTER_SUBJECT``) are created when missing. Per
batch: fetch up to ``batch`` messages, apply them, publish their dead letters (each publish waits
for JetStream's acknowledgement, so they are stored), then acknowledge the messages, but for
those left to retry: a negative acknowledgement delays their redelivery by ``ack_wait``. Message ids
are ``nats:<stream>:<stream sequence>``: give a recreated stream a new name, or send event ids.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from abpilot.domain.errors import ValidationError
from abpilot.streams.consumer import apply_batch, counted, report_lag
from abpilot.streams.intake import EventSink, IntakeOutcome, StreamMessage, apply_messages
from abpilot.streams.nats_pull import Puller

log = logging.getLogger("abpilot.streams")
LAG_EVERY_SECONDS = 1.0
FETCH_SECONDS = 1.0


@dataclass(frozen=True)
class NatsSource:
    url: str
    stream: str
    subject: str
    durable: str
    dead_letter_subject: str
    batch: int = 500
    ack_wait_seconds: float = 30.0
    max_deliveries: int = 5
    name: str = "nats"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.stream}_DEAD"

    def message_id(self, sequence: int) -> str:
        return f"nats:{self.stream}:{sequence}"

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        asyncio.run(self._run(sink, stop))

    def replay(self, sink: EventSink, *, first: str, last: str | None) -> IntakeOutcome:
        """Apply the stream's messages ``first`` to ``last`` (sequences, inclusive; ``last``
        None: to the end) again. Events counted before are duplicates by their ids; what is
        refused is returned, not published."""
        for name, value in (("from", first), ("to", last)):
            if value is not None and not (value.isascii() and value.isdigit()):
                raise ValidationError(
                    f"a NATS stream's messages are numbered 1, 2, ...; --{name} {value!r} is not",
                    field=name,
                )
        return asyncio.run(self._replay(sink, int(first), None if last is None else int(last)))

    async def _connect(self) -> NatsClient:
        return await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=-1)

    async def ensure_streams(self, js: nats.js.JetStreamContext) -> None:
        for name, subject in (
            (self.stream, self.subject),
            (self.dead_letter_stream, self.dead_letter_subject),
        ):
            try:
                await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                try:
                    await js.add_stream(StreamConfig(name=name, subjects=[subject]))
                except nats.js.errors.BadRequestError:  # another consumer created it first
                    await js.stream_info(name)

    async def _run(self, sink: EventSink, stop: threading.Event) -> None:
        nc = await self._connect()
        try:
            js = nc.jetstream()
            await self.ensure_streams(js)
            config = ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_seconds,
                filter_subject=self.subject,
            )
            try:
                await js.consumer_info(self.stream, self.durable)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(self.stream, config)
            puller = Puller(nc, stream=self.stream, consumer=self.durable)
            await puller.start()
            log.info("nats %s: consuming %s as %s", self.stream, self.subject, self.durable)
            lag_at = 0.0
            while not stop.is_set():
                if time.monotonic() - lag_at >= LAG_EVERY_SECONDS:
                    info = await js.consumer_info(self.stream, self.durable)
                    report_lag(self, lag=info.num_pending or 0, pending=info.num_ack_pending or 0)
                    lag_at = time.monotonic()
                fetched = await puller.fetch(self.batch, FETCH_SECONDS)
                if not fetched:
                    continue
                messages = [
                    StreamMessage(
                        self.message_id(m.metadata.sequence.stream),
                        m.data,
                        m.metadata.num_delivered or 1,
                    )
                    for m in fetched
                ]
                outcome = await asyncio.to_thread(apply_batch, sink, messages, stop, source=self)
                if outcome is None:
                    return  # stopping: unacknowledged, they are delivered again
                for dead in outcome.dead_letters:  # deduplicated by JetStream within 2 min
                    await js.publish(
                        self.dead_letter_subject, dead.to_json(), headers={"Nats-Msg-Id": dead.key}
                    )
                for message, read in zip(fetched, messages, strict=True):
                    if read.message_id in outcome.retry:
                        await message.nak(delay=self.ack_wait_seconds)
                    else:
                        await message.ack()
                await nc.flush()
                counted(outcome, source=self)
        finally:
            await nc.close()

    async def _replay(self, sink: EventSink, first: int, last: int | None) -> IntakeOutcome:
        nc = await self._connect()
        total = IntakeOutcome()
        try:
            js = nc.jetstream()
            info = await js.stream_info(self.stream)
            end = info.state.last_seq if last is None else min(last, info.state.last_seq)
            start = max(first, info.state.first_seq)
            for chunk in range(start, end + 1, self.batch):
                messages = []
                for sequence in range(chunk, min(chunk + self.batch, end + 1)):
                    try:
                        found = await js.get_msg(self.stream, sequence)
                    except nats.js.errors.NotFoundError:  # deleted from the stream
                        continue
                    messages.append(StreamMessage(self.message_id(sequence), found.data or b""))
                outcome = await asyncio.to_thread(apply_messages, sink, messages)
                total.messages += outcome.messages
                total.events += outcome.events
                total.applied += outcome.applied
                total.duplicates += outcome.duplicates
                total.dead_letters.extend(outcome.dead_letters)
        finally:
            await nc.close()
        return total
