"""Events posted to an experiment analysed from the warehouse are refused: its analysis reads
the latest refresh, so an exposure or conversion stored in abpilot would never count. A 409
``events_not_ingested`` naming the field ``source`` (and the assignment source in its message),
on every path: REST (exposures, conversions, the batch, assign with expose), the Python API and
a stream consumer (``abpilot consume``); a batch with such an event is refused whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from abpilot.domain.errors import EventsNotIngested
from abpilot.domain.inputs import EventInput, EventKind
from abpilot.service import ExperimentService
from abpilot.store.memory import MemoryStore
from abpilot.streams.intake import StreamMessage, apply_messages
from tests.warehouse.engines import warehouse
from tests.warehouse.simulated import VARIANTS, simulate
from tests.warehouse.test_api import ADMIN, API, client_for, error, ready
from tests.warehouse.test_equivalence import sources

PLAIN = "plain"  # an experiment of the events, beside the warehouse one


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with warehouse("duckdb", simulate(units=50, seed=4), tmp_path) as found:
        yield found


def _service(url: str) -> ExperimentService:
    service = ExperimentService(MemoryStore(), warehouse_url=url)
    sources(service)
    service.create_experiment(
        key="checkout",
        variants=[{"key": v} for v in VARIANTS],
        metrics=[{"key": "revenue", "kind": "value", "fact_source": "orders", "column": "amount"}],
        source="warehouse",
        assignment_source="exposures",
    )
    service.create_experiment(key=PLAIN, variants=[{"key": v} for v in VARIANTS])
    for key in ("checkout", PLAIN):
        service.start_experiment(key)
    return service


def _refused(raised: pytest.ExceptionInfo[EventsNotIngested], field: str = "source") -> None:
    assert raised.value.code == "events_not_ingested"
    assert raised.value.field == field
    assert "warehouse" in raised.value.message
    assert "'exposures'" in raised.value.message  # the assignment source


def test_the_python_api_refuses_events_and_a_batch_whole(url: str) -> None:
    service = _service(url)
    with pytest.raises(EventsNotIngested) as raised:
        service.record_exposure(experiment="checkout", unit_id="u1", variant="control")
    _refused(raised)
    with pytest.raises(EventsNotIngested) as raised:
        service.record_conversion(experiment="checkout", unit_id="u1", metric="revenue", value=2)
    _refused(raised)
    with pytest.raises(EventsNotIngested) as raised:
        service.get_variant_for_user("checkout", "u1", expose=True)
    _refused(raised)
    batch = [
        EventInput(EventKind.EXPOSURE, PLAIN, "u1", "control"),
        EventInput(EventKind.EXPOSURE, "checkout", "u1", "control"),
    ]
    with pytest.raises(EventsNotIngested) as raised:
        service.record_events(batch, field_prefix="events")
    _refused(raised, "events[1].source")
    assert service.store.get_counters(service.get_experiment(PLAIN).id) == {}  # nothing counted
    assert service.store.get_assignments(service.get_experiment("checkout").id, ["u1"]) == {}
    # The hash still answers (a warehouse experiment may use abpilot's assignment).
    assert service.get_variant_for_user("checkout", "u1").variant is not None


def test_rest_refuses_every_event_path_with_a_409(url: str) -> None:
    with client_for(url) as client:
        ready(client)
        created = client.post(
            f"{API}/experiments", json={"key": PLAIN, "variants": [{"key": "a"}, {"key": "b"}]},
            headers=ADMIN,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        started = client.put(
            f"{API}/experiments/{PLAIN}/status", json={"status": "running"}, headers=ADMIN
        )
        assert started.status_code == 200, started.text
        posts = [
            (f"{API}/experiments/checkout/exposures", {"unit_id": "u1", "variant": "control"}),
            (
                f"{API}/experiments/checkout/conversions",
                {"unit_id": "u1", "metric": "purchase"},
            ),
            (f"{API}/experiments/checkout/assign", {"unit_id": "u1", "expose": True}),
            (
                f"{API}/events",
                {
                    "events": [
                        {"type": "exposure", "experiment_id": PLAIN, "unit_id": "u1"},
                        {"type": "exposure", "experiment_id": "checkout", "unit_id": "u1"},
                    ]
                },
            ),
        ]
        for path, body in posts:
            answer = client.post(path, json=body, headers=ADMIN)
            assert answer.status_code == 409, (path, answer.text)
            found = error(answer)
            assert found["code"] == "events_not_ingested", path
            assert found["field"].endswith("source"), path
            assert "'exposures'" in found["message"], path
        metrics = client.get(f"{API}/experiments/{PLAIN}/metrics", headers=ADMIN).json()
        assert sum(v["exposures"] for v in metrics["variants"]) == 0  # the batch was refused whole
        assigned = client.post(
            f"{API}/experiments/checkout/assign", json={"unit_id": "u1"}, headers=ADMIN
        )
        assert assigned.status_code == 200, assigned.text  # the hash still answers


def test_a_stream_consumer_dead_letters_them_with_the_reason(url: str) -> None:
    service = _service(url)
    body = {"events": [
        {"type": "exposure", "experiment_id": PLAIN, "unit_id": "u1", "variant": "control"},
        {"type": "exposure", "experiment_id": "checkout", "unit_id": "u1", "variant": "control"},
    ]}  # fmt: skip
    outcome = apply_messages(service, [StreamMessage("nats:S:1", json.dumps(body).encode())])
    assert outcome.applied == 1  # the plain experiment's exposure
    (dead,) = outcome.dead_letters
    assert (dead.index, dead.code, dead.field) == (1, "events_not_ingested", "source")
