"""Guardrail metrics and the decision through the service, on every store: the metric fields
round-trip (the store, export and import), completing against the decision needs an override
that is recorded, and monitoring raises the guardrail's harm."""

from __future__ import annotations

from typing import Any

import pytest

from abpilot.domain.errors import ValidationError, WinnerNotSupported
from abpilot.domain.experiment import MetricRole
from abpilot.domain.inputs import EventInput
from abpilot.monitoring.checks import Status
from abpilot.service import ExperimentService
from abpilot.service.monitoring import Monitor
from abpilot.store.base import EventKind, Store

VARIANTS = [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}]
METRICS: list[dict[str, Any]] = [
    {"key": "conversion"},
    {
        "key": "latency",
        "kind": "value",
        "role": "guardrail",
        "higher_is_better": False,
        "margin": 0.05,
        "margin_relative": True,
    },
    {"key": "errors", "role": "guardrail", "margin": 0.01, "higher_is_better": False},
]


def run(
    service: ExperimentService,
    key: str,
    *,
    rates: tuple[float, float],
    latency: tuple[float, float],
    units: int = 3000,
) -> None:
    """``units`` per variant (the plan is 3,000): converting at ``rates``, 2% with an error,
    with latencies around ``latency``."""
    service.create_experiment(
        key=key,
        variants=VARIANTS,
        metrics=METRICS,
        settings={"analysis": {"sample_size_per_variant": 3000}},
    )
    service.start_experiment(key)
    events: list[EventInput] = []
    for v, variant in enumerate(("control", "green")):
        for i in range(units):
            unit = f"{variant}-{i}"
            events.append(EventInput(EventKind.EXPOSURE, key, unit, variant))
            if (i * 7919) % units < rates[v] * units:
                events.append(EventInput(EventKind.CONVERSION, key, unit, metric="conversion"))
            if (i * 104729) % units < 0.02 * units:
                events.append(EventInput(EventKind.CONVERSION, key, unit, metric="errors"))
            value = latency[v] + (i % 21 - 10)
            events.append(
                EventInput(EventKind.CONVERSION, key, unit, metric="latency", value=value)
            )
    for start in range(0, len(events), 5000):
        service.record_events(events[start : start + 5000])


def test_guardrail_fields_round_trip_through_the_store_and_the_export(store: Store) -> None:
    service = ExperimentService(store)
    made = service.create_experiment(key="kept", variants=VARIANTS, metrics=METRICS)
    service.lookup.forget(made.id)
    read = service.get_experiment("kept")
    assert read.metrics == made.metrics
    latency = read.metric("latency")
    assert latency is not None
    assert (latency.role, latency.higher_is_better, latency.margin, latency.margin_relative) == (
        MetricRole.GUARDRAIL, False, 0.05, True,
    )  # fmt: skip
    document = service.transfer.export(["kept"])
    service.delete_experiment("kept")
    service.transfer.import_(document)
    assert service.get_experiment("kept").metrics == made.metrics


def test_a_winner_the_decision_does_not_support_needs_an_override_that_is_recorded(
    store: Store,
) -> None:
    service = ExperimentService(store)
    run(service, "early", rates=(0.10, 0.10), latency=(300, 300), units=20)
    decision = service.analyze_experiment("early").decision
    assert decision is not None
    assert decision.action == "continue"
    with pytest.raises(WinnerNotSupported, match="does not support 'green'") as refused:
        service.end_experiment("early", winner="green")
    assert refused.value.status_code == 409
    assert service.get_experiment("early").status == "running"
    with pytest.raises(ValidationError, match="override applies only"):
        service.end_experiment("early", override=True)
    ended = service.end_experiment("early", winner="green", override=True)
    service.lookup.forget(ended.id)
    read = service.get_experiment("early")
    assert (read.status, read.winner) == ("completed", "green")
    record = read.settings["completion"]
    assert (record["winner"], record["override"]) == ("green", True)
    assert record["decision"]["action"] == "continue"
    assert record["decision"]["reasons"] == [r.code.value for r in decision.reasons]
    # The record is abpilot's: it goes through export and import, and no user may write it.
    document = service.transfer.export(["early"])
    service.delete_experiment("early")
    service.transfer.import_(document)
    assert service.get_experiment("early").settings["completion"] == record
    with pytest.raises(ValidationError, match=r"settings\.completion"):
        service.create_experiment(key="forged", variants=VARIANTS, settings={"completion": {}})


def test_completing_ships_what_the_decision_ships(store: Store) -> None:
    service = ExperimentService(store)
    run(service, "clear", rates=(0.10, 0.16), latency=(300, 300))
    analysis = service.analyze_experiment("clear")
    assert analysis.decision is not None
    assert (analysis.decision.action, analysis.decision.variant) == ("ship", "green")
    assert [r.code for r in analysis.decision.reasons] == ["primary_winner", "guardrails_safe"]
    assert {(g.metric, g.harm_ruled_out) for g in analysis.guardrails} == {
        ("latency", True), ("errors", True),
    }  # fmt: skip
    with pytest.raises(WinnerNotSupported):
        service.end_experiment("clear", winner="control")
    assert service.end_experiment("clear").winner == "green"


def test_a_winner_that_harms_a_guardrail_is_rolled_back_and_monitoring_says_so(
    store: Store,
) -> None:
    service = ExperimentService(store)
    run(service, "slow", rates=(0.10, 0.16), latency=(300, 340))
    analysis = service.analyze_experiment("slow", metric="latency")
    assert analysis.winner is None  # the latency metric has no winner; the decision is overall
    assert analysis.decision is not None
    assert (analysis.decision.action, analysis.decision.variant) == ("rollback", "green")
    green = next(v for v in analysis.variants if v.key == "green")
    assert green.guardrail is not None
    assert green.guardrail.harm_detected
    assert not green.guardrail.harm_ruled_out
    check = next(
        c for c in Monitor(service).check_experiment("slow").checks if c.name == "guardrail_harm"
    )
    assert check.status is Status.ALERT
    assert "'green' harms 'latency'" in check.message
    # Completing keeps the control: the decision supports it; no winner ships nothing.
    assert service.end_experiment("slow", winner="control").winner == "control"
