"""Prometheus metrics, request ids and structured logs.

Metrics live in one registry for the process (``REGISTRY``); the service layer counts events and
recalculations, the HTTP middleware counts requests and their latency by route template (never by
raw path, so ids do not explode the label space). With several worker processes set
``PROMETHEUS_MULTIPROC_DIR`` to a writable directory and every worker's figures are summed at
scrape time (prometheus-client's multiprocess mode).

Each request gets an id (the caller's ``X-Request-ID`` if it sent a sane one, else a new one),
returned in the ``X-Request-ID`` header and written into every log line of the request. With
``LOG_FORMAT=json`` log lines are JSON objects.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "abpilot_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "abpilot_request_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS = Counter(
    "abpilot_events_total",
    "Events received by outcome (applied, duplicate, refused)",
    ["outcome"],
    registry=REGISTRY,
)
RECALCULATIONS = Counter(
    "abpilot_recalculations_total",
    "Bandit recalculations by status (updated, unchanged, failed)",
    ["status"],
    registry=REGISTRY,
)
RECALCULATION_SECONDS = Histogram(
    "abpilot_recalculation_seconds",
    "Time of one recalculation of every running bandit",
    registry=REGISTRY,
)
STORE_ERRORS = Counter(
    "abpilot_store_errors_total",
    "Requests that failed because the store could not be reached",
    registry=REGISTRY,
)

STREAM_LAG = Gauge(
    "abpilot_stream_lag",
    "Messages of an event stream not yet delivered to abpilot's consumers (NATS num_pending, "
    "Redis consumer-group lag)",
    ["source", "stream"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
STREAM_PENDING = Gauge(
    "abpilot_stream_pending",
    "Messages of an event stream delivered to a consumer and not yet acknowledged",
    ["source", "stream"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
STREAM_MESSAGES = Counter(
    "abpilot_stream_messages_total",
    "Stream messages applied and acknowledged by this process's consumers",
    ["source", "stream"],
    registry=REGISTRY,
)
STREAM_RETRIES = Counter(
    "abpilot_stream_retries_total",
    "Stream messages left unacknowledged to be delivered again: a conversion whose unit had no "
    "assignment yet (STREAM_MAX_DELIVERIES)",
    ["source", "stream"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "abpilot_stream_dead_letters_total",
    "Stream events set aside as dead letters, by reason (malformed, or the refusal's code)",
    ["source", "stream", "code"],
    registry=REGISTRY,
)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def metrics_body() -> tuple[bytes, str]:
    """The exposition text of every metric (summed over workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: a request id, and request count and latency by route template."""

    def __init__(self, app: ASGIApp, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = self.route_of(scope) if "route" in scope else "unmatched"
            method = str(scope.get("method", ""))
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
            request_id.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(log_format: str, *, debug: bool = False) -> None:
    """Log to stderr, as text with the request id or as JSON lines."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger("abpilot")
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
