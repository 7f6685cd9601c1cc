"""Stream intake on the service, whatever the bus (``abpilot.streams.intake``): derived event ids,
dead letters that never block the events behind them, and a batch refused whole split until the
good events land."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import pytest

import abpilot
from abpilot.domain.errors import StoreUnavailable, WrongStatus
from abpilot.domain.inputs import EventInput
from abpilot.domain.records import ApplyResult
from abpilot.service import ExperimentService
from abpilot.streams.consumer import apply_batch
from abpilot.streams.intake import StreamMessage, apply_messages
from abpilot.streams.redis_stream import RedisStreamSource
from tests.streams.workload import create_experiment

KEY = "checkout"


@pytest.fixture
def service() -> ExperimentService:
    opened = abpilot.open("memory://")
    create_experiment(opened, KEY)
    return opened


def message(message_id: str, body: object) -> StreamMessage:
    return StreamMessage(message_id, body if isinstance(body, bytes) else json.dumps(body).encode())


def exposure(unit: str, **extra: object) -> dict[str, object]:
    return {"type": "exposure", "experiment_id": KEY, "unit_id": unit, "variant": "a", **extra}


def exposures(service: ExperimentService) -> dict[str, int]:
    return {v.key: v.exposures for v in service.get_metrics(KEY).variants}


def test_a_redelivered_message_counts_once_by_its_derived_event_id(
    service: ExperimentService,
) -> None:
    batch = {"events": [exposure("u2"), {**exposure("u2"), "variant": None}]}
    messages = [message("nats:S:1", exposure("u1")), message("nats:S:2", batch)]
    first = apply_messages(service, messages)
    assert (first.messages, first.events, first.applied, first.duplicates) == (2, 3, 3, 0)
    again = apply_messages(service, messages)  # the bus delivers both again
    assert (again.applied, again.duplicates) == (0, 3)
    assert exposures(service) == {"a": 3, "b": 0}
    # The same event in another message is another event: it counts.
    assert apply_messages(service, [message("nats:S:3", exposure("u1"))]).applied == 1


def test_an_event_id_sent_with_the_event_wins_over_the_derived_one(
    service: ExperimentService,
) -> None:
    sent = [message("redis:s:1-0", exposure("u1", event_id="x1"))]
    resent = [message("redis:s:9-0", exposure("u1", event_id="x1"))]  # a producer's retry
    assert apply_messages(service, sent).applied == 1
    outcome = apply_messages(service, resent)
    assert (outcome.applied, outcome.duplicates) == (0, 1)


def test_malformed_messages_and_events_become_dead_letters_with_the_reason(
    service: ExperimentService,
) -> None:
    outcome = apply_messages(
        service,
        [
            message("m:1", b"{not json"),
            message("m:2", b"\xff\xfe"),
            message("m:3", {"events": "many"}),
            message("m:4", {"events": [exposure("u1"), {"type": "click", "experiment_id": KEY}]}),
            message("m:5", {**exposure("u2"), "value": "lots"}),
            message("m:6", exposure("u3")),
        ],
    )
    assert (outcome.applied, outcome.events) == (2, 7)
    dead = {(d.message_id, d.index): d for d in outcome.dead_letters}
    assert set(dead) == {("m:1", None), ("m:2", None), ("m:3", None), ("m:4", 1), ("m:5", None)}
    assert all(d.code == "malformed" for d in dead.values())
    assert dead[("m:1", None)].reason.startswith("not JSON")
    assert dead[("m:1", None)].event == "{not json"
    assert dead[("m:3", None)].field == "events"
    assert dead[("m:4", 1)].field == "type"
    assert dead[("m:4", 1)].event == {"type": "click", "experiment_id": KEY}
    assert dead[("m:5", None)].field == "value"
    assert json.loads(dead[("m:5", None)].to_json())["message_id"] == "m:5"


def test_a_refused_event_never_blocks_the_events_behind_it(service: ExperimentService) -> None:
    service.create_experiment(key="paused", variants=[{"key": "a"}, {"key": "b"}])
    service.start_experiment("paused")
    service.pause_experiment("paused")
    refused = [
        {"type": "conversion", "experiment_id": KEY, "unit_id": "nobody", "metric": "buy"},
        {"type": "exposure", "experiment_id": "paused", "unit_id": "u9"},
        exposure("u5", variant="zzz"),
        {"type": "conversion", "experiment_id": KEY, "unit_id": "u1", "metric": "unknown"},
    ]
    messages = [message(f"m:{i}", exposure(f"u{i}")) for i in range(1, 5)]
    for i, event in enumerate(refused):
        messages.insert(2 * i, message(f"bad:{i}", event))
    outcome = apply_messages(service, messages)
    assert outcome.applied == 4
    assert exposures(service) == {"a": 4, "b": 0}
    codes = {d.message_id: (d.code, d.field) for d in outcome.dead_letters}
    assert codes == {
        "bad:0": ("unit_not_assigned", "unit_id"),
        "bad:1": ("wrong_status", "status"),
        "bad:2": ("validation_error", "variant"),
        "bad:3": ("validation_error", "metric"),
    }


class RefusesWholeBatches:
    """The service, behind a store step that refuses a whole batch holding an event of a
    ``frozen`` unit without saying which event (as a store's atomic check of the experiment's
    status refuses a batch); the split must isolate that event and apply the rest."""

    def __init__(self, service: ExperimentService) -> None:
        self.service = service
        self.max_batch_events = service.max_batch_events
        self.calls = 0

    def record_events(self, events: Sequence[EventInput], *, field_prefix: str = "") -> ApplyResult:
        self.calls += 1
        if any((e.unit_id or "").startswith("frozen") for e in events):
            raise WrongStatus("the experiment completed while the batch was counted")
        return self.service.record_events(events, field_prefix=field_prefix)


def test_a_batch_refused_whole_is_split_until_the_good_events_land(
    service: ExperimentService,
) -> None:
    sink = RefusesWholeBatches(service)
    units = [f"u{i}" for i in range(30)]
    units[7], units[21] = "frozen-1", "frozen-2"
    messages = [message(f"m:{i}", exposure(u)) for i, u in enumerate(units)]
    outcome = apply_messages(sink, messages)
    assert outcome.applied == 28
    assert sorted(d.message_id for d in outcome.dead_letters) == ["m:21", "m:7"]
    assert {d.code for d in outcome.dead_letters} == {"wrong_status"}
    assert exposures(service) == {"a": 28, "b": 0}
    assert sink.calls < 30  # halves, not one call per event


def test_a_batch_larger_than_the_service_takes_goes_in_pieces() -> None:
    small = ExperimentService(abpilot.open("memory://").store, max_batch_events=3)
    create_experiment(small, KEY)
    messages = [message("m:1", {"events": [exposure(f"u{i}") for i in range(10)]})]
    assert apply_messages(small, messages).applied == 10


class Unreachable:
    """A store out of reach for the first ``failures`` calls."""

    def __init__(self, service: ExperimentService, failures: int) -> None:
        self.service, self.failures = service, failures
        self.max_batch_events = service.max_batch_events

    def record_events(self, events: Sequence[EventInput], *, field_prefix: str = "") -> ApplyResult:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the store cannot be reached")
        return self.service.record_events(events, field_prefix=field_prefix)


def test_a_store_out_of_reach_dead_letters_nothing_and_the_batch_is_tried_again(
    service: ExperimentService,
) -> None:
    messages = [message("m:1", exposure("u1")), message("m:2", exposure("u2"))]
    with pytest.raises(StoreUnavailable):
        apply_messages(Unreachable(service, 1), messages)
    source = RedisStreamSource(url="redis://unused", stream="s", group="g", dead_letter_stream="d")
    outcome = apply_batch(Unreachable(service, 2), messages, threading.Event(), source=source)
    assert outcome is not None
    assert (outcome.applied, outcome.dead_letters) == (2, [])
    stopped = threading.Event()
    stopped.set()  # stopping while the store is out of reach: nothing applied, nothing acked
    assert apply_batch(Unreachable(service, 1), messages, stopped, source=source) is None


def test_a_conversion_before_its_exposure_is_retried_until_the_last_delivery(
    service: ExperimentService,
) -> None:
    early = {"type": "conversion", "experiment_id": KEY, "unit_id": "u1", "metric": "buy"}
    batch = {"events": [exposure("u2"), early]}
    first = apply_messages(service, [message("m:1", batch)], max_deliveries=3)
    assert (first.applied, first.dead_letters, first.retry) == (1, [], {"m:1"})
    # Delivered again (the exposure of u2 is a duplicate now), still before u1's exposure.
    second = [StreamMessage("m:1", json.dumps(batch).encode(), deliveries=2)]
    again = apply_messages(service, second, max_deliveries=3)
    assert (again.duplicates, again.retry) == (1, {"m:1"})
    apply_messages(service, [message("m:0", exposure("u1"))])
    third = [StreamMessage("m:1", json.dumps(batch).encode(), deliveries=3)]
    counted = apply_messages(service, third, max_deliveries=3)
    assert (counted.applied, counted.duplicates, counted.retry) == (1, 1, set())
    assert service.get_metrics(KEY).variants[0].metrics["buy"].count == 1
    # At the last delivery a conversion still without its unit is a dead letter.
    orphan = {"type": "conversion", "experiment_id": KEY, "unit_id": "u7", "metric": "buy"}
    last = [StreamMessage("m:9", json.dumps(orphan).encode(), deliveries=3)]
    dead = apply_messages(service, last, max_deliveries=3)
    assert (dead.retry, [d.code for d in dead.dead_letters]) == (set(), ["unit_not_assigned"])
