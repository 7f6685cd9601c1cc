"""Events from a Redis Stream: a consumer group that any number of consumer processes share.

Each entry holds the event JSON in its field ``event``. Per batch a consumer first takes over
entries left unacknowledged for ``ack_wait`` seconds (``XAUTOCLAIM``: a consumer that died, or
an entry left to retry), else reads new entries (``XREADGROUP ... >``); applies them; then in
one ``MULTI``/``EXEC`` adds their dead letters to the dead-letter stream and acknowledges them
(``XADD`` + ``XACK``), all but those left to retry. The group is created (at the stream's
start, the stream too) when missing. Message ids are ``redis:<stream>:<entry id>``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from abpilot.streams.consumer import apply_batch, counted, report_lag
from abpilot.streams.intake import EventSink, IntakeOutcome, StreamMessage, apply_messages

log = logging.getLogger("abpilot.streams")
FIELD = b"event"
BLOCK_MS = 1000
LAG_EVERY_SECONDS = 1.0


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class RedisStreamSource:
    url: str
    stream: str
    group: str
    dead_letter_stream: str
    batch: int = 500
    ack_wait_seconds: float = 30.0
    max_deliveries: int = 5
    consumer: str = field(default_factory=default_consumer_name)
    name: str = "redis"

    def message_id(self, entry_id: bytes | str) -> str:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return f"redis:{self.stream}:{entry}"

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=30)

    def ensure_group(self, client: redis.Redis) -> None:
        try:
            client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _messages(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]], deliveries: list[int] | None = None
    ) -> list[StreamMessage]:
        counts = deliveries or [1] * len(entries)
        return [
            StreamMessage(self.message_id(i), fields.get(FIELD, b""), count)
            for (i, fields), count in zip(entries, counts, strict=True)
        ]

    def _deliveries(self, client: redis.Redis, entries: list[Any]) -> list[int]:
        """How many times each entry taken over (``XAUTOCLAIM``) has been delivered."""
        with client.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
            found: list[Any] = pipe.execute()
        return [int(rows[0]["times_delivered"]) if rows else 1 for rows in found]

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        client = self._client()
        try:
            self.ensure_group(client)
            log.info(
                "redis %s: consuming as %s of group %s", self.stream, self.consumer, self.group
            )
            claim_from, lag_at = "0-0", 0.0
            idle_ms = int(self.ack_wait_seconds * 1000)
            while not stop.is_set():
                if time.monotonic() - lag_at >= LAG_EVERY_SECONDS:
                    self._report_lag(client)
                    lag_at = time.monotonic()
                # A dead consumer's entries first, then new ones.
                claimed: Any = client.xautoclaim(
                    self.stream, self.group, self.consumer, idle_ms, claim_from, count=self.batch
                )
                claim_from, entries = claimed[0], claimed[1]
                entries = [(i, f) for i, f in entries if f is not None]  # deleted meanwhile
                deliveries = self._deliveries(client, entries) if entries else None
                if not entries:
                    read: Any = client.xreadgroup(
                        self.group, self.consumer, {self.stream: ">"}, self.batch, BLOCK_MS
                    )
                    entries = read[0][1] if read else []
                if not entries:
                    continue
                messages = self._messages(entries, deliveries)
                outcome = apply_batch(sink, messages, stop, source=self)
                if outcome is None:
                    return
                with client.pipeline(transaction=True) as pipe:
                    for dead in outcome.dead_letters:
                        pipe.xadd(self.dead_letter_stream, {"dead_letter": dead.to_json()})
                    done = [
                        entry_id
                        for (entry_id, _), read in zip(entries, messages, strict=True)
                        if read.message_id not in outcome.retry
                    ]
                    if done:
                        pipe.xack(self.stream, self.group, *done)
                    pipe.execute()
                counted(outcome, source=self)
        finally:
            client.close()

    def _report_lag(self, client: redis.Redis) -> None:
        for group in client.xinfo_groups(self.stream):
            if group["name"] in (self.group, self.group.encode()):
                report_lag(self, lag=int(group.get("lag") or 0), pending=int(group["pending"]))

    def replay(self, sink: EventSink, *, first: str, last: str | None) -> IntakeOutcome:
        """Apply the entries ``first`` to ``last`` (entry ids, inclusive; ``-`` and ``+`` for
        the ends) again. Events counted before are duplicates by their ids; what is refused
        is returned, not added to the dead letters."""
        client = self._client()
        total = IntakeOutcome()
        try:
            start = first
            while True:  # pages of ``batch`` entries, each after the last one read
                entries: Any = client.xrange(self.stream, start, last or "+", count=self.batch)
                if not entries:
                    break
                outcome = apply_messages(sink, self._messages(entries))
                total.messages += outcome.messages
                total.events += outcome.events
                total.applied += outcome.applied
                total.duplicates += outcome.duplicates
                total.dead_letters.extend(outcome.dead_letters)
                start = "(" + entries[-1][0].decode()
        finally:
            client.close()
        return total
