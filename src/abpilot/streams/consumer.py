"""What every stream consumer does around a batch, whatever the bus: apply it (again and again
while the store is out of reach, never acknowledging what is not applied), count it on
``/metrics``, and log it; and the thread each consumer runs in."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from abpilot.domain.errors import StoreUnavailable
from abpilot.observability import (
    DEAD_LETTERS,
    STREAM_LAG,
    STREAM_MESSAGES,
    STREAM_PENDING,
    STREAM_RETRIES,
)
from abpilot.streams.intake import EventSink, IntakeOutcome, StreamMessage, apply_messages

log = logging.getLogger("abpilot.streams")
MAX_BACKOFF_SECONDS = 5.0


class Source(Protocol):
    """A consumer of one stream: ``run`` reads, applies and acknowledges until ``stop`` is set."""

    @property
    def name(self) -> str: ...

    @property
    def stream(self) -> str: ...

    @property
    def max_deliveries(self) -> int: ...

    def run(self, sink: EventSink, stop: threading.Event) -> None: ...

    def replay(self, sink: EventSink, *, first: str, last: str | None) -> IntakeOutcome: ...


def apply_batch(
    sink: EventSink, messages: Sequence[StreamMessage], stop: threading.Event, *, source: Source
) -> IntakeOutcome | None:
    """``apply_messages``, tried again while the store is out of reach; None when ``stop`` was
    set first (the messages stay unacknowledged, so the stream delivers them again)."""
    delay = 0.1
    while not stop.is_set():
        try:
            return apply_messages(sink, messages, max_deliveries=source.max_deliveries)
        except StoreUnavailable as error:
            log.warning(
                "%s %s: %s; trying the batch again in %.1f s",
                source.name,
                source.stream,
                error.message,
                delay,
            )
            stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
    return None


def counted(outcome: IntakeOutcome, *, source: Source) -> None:
    """Put a batch that was applied and acknowledged on /metrics and in the log."""
    STREAM_MESSAGES.labels(source.name, source.stream).inc(outcome.messages - len(outcome.retry))
    STREAM_RETRIES.labels(source.name, source.stream).inc(len(outcome.retry))
    for dead in outcome.dead_letters:
        DEAD_LETTERS.labels(source.name, source.stream, dead.code).inc()
    log.info(
        "%s %s: batch of %d messages, %d events: applied %d, duplicates %d, dead letters %d, "
        "left to retry %d",
        source.name,
        source.stream,
        outcome.messages,
        outcome.events,
        outcome.applied,
        outcome.duplicates,
        len(outcome.dead_letters),
        len(outcome.retry),
    )


def report_lag(source: Source, *, lag: int, pending: int) -> None:
    STREAM_LAG.labels(source.name, source.stream).set(lag)
    STREAM_PENDING.labels(source.name, source.stream).set(pending)


class ConsumerThreads:
    """Run each source in a thread of this process until ``stop``; a source that fails (the bus
    out of reach) is logged and started again after a pause."""

    def __init__(self, sink: EventSink, sources: Sequence[Source]) -> None:
        self.sink, self.sources = sink, list(sources)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for source in self.sources:
            thread = threading.Thread(
                target=self._loop, args=(source,), name=f"abpilot-{source.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait(self, until: Callable[[], bool] = lambda: False) -> None:
        """Block until every thread has ended or ``until()`` (checked twice a second)."""
        while any(t.is_alive() for t in self._threads) and not until():
            self._stop.wait(0.5)

    def _loop(self, source: Source) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                source.run(self.sink, self._stop)
                delay = 0.5
            except Exception:  # the thread lives on: the bus may come back
                log.exception(
                    "%s %s failed; starting again in %.1f s", source.name, source.stream, delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
