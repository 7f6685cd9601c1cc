"""Prometheus metrics, request ids and JSON logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from abpilot.api import create_app
from abpilot.observability import JsonFormatter, request_id
from abpilot.settings import Settings
from abpilot.store.memory import MemoryStore
from tests.api.conftest import API, running


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(Settings(store="memory", scheduler_enabled=False), store=MemoryStore())
    with TestClient(app) as test_client:
        yield test_client


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_events_and_latency_are_counted(client: TestClient) -> None:
    running(client, "cta")
    before = samples(client)
    url = f"{API}/experiments/cta/exposures"
    for _ in range(2):
        assert client.post(url, json={"unit_id": "u1", "event_id": "e1"}).status_code == 200
    assert client.post(url, json={"unit_id": "u1", "variant": "nope"}).status_code == 422
    after = samples(client)
    route = "/api/v1/experiments/{experiment_id}/exposures"  # the template, not the raw path
    for status, n in (("200", 2), ("422", 1)):
        key = {"method": "POST", "route": route, "status": status}
        assert (
            value(after, "abpilot_requests_total", **key)
            - value(before, "abpilot_requests_total", **key)
            == n
        )
    for outcome, n in (("applied", 1), ("duplicate", 1), ("refused", 1)):
        delta = value(after, "abpilot_events_total", outcome=outcome) - value(
            before, "abpilot_events_total", outcome=outcome
        )
        assert delta == n
    count = value(after, "abpilot_request_seconds_count", method="POST", route=route)
    assert count >= 3
    assert not any("/experiments/cta/" in str(k) for k in after)  # no raw paths as labels


def test_recalculations_are_counted(client: TestClient) -> None:
    before = samples(client)
    assert client.post(f"{API}/recalculate").status_code == 200
    after = samples(client)
    assert (
        value(after, "abpilot_recalculation_seconds_count")
        == value(before, "abpilot_recalculation_seconds_count") + 1
    )


def test_request_ids(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert given.headers["x-request-id"] == "req-123"
    fresh = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert fresh.headers["x-request-id"] != "bad id with spaces"
    assert len(fresh.headers["x-request-id"]) == 32


def test_json_log_lines_carry_the_request_id() -> None:
    token = request_id.set("req-9")
    try:
        record = logging.LogRecord(
            "abpilot.test", logging.WARNING, __file__, 1, "hello %s", ("x",), None
        )
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["message"] == "hello x"
    assert line["request_id"] == "req-9"
    assert line["level"] == "warning"
