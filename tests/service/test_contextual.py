"""Contextual bandits in the service: feedback rules, learning per context, the holdout, expiry,
and off-policy estimates against a simulated world whose truth is known."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from abpilot.domain.errors import NotFound, ValidationError
from abpilot.service.contextual import ContextualService, DecisionExpired
from abpilot.service.core import ExperimentService
from abpilot.store.base import FeedbackOutcome
from abpilot.store.memory import MemoryStore

ARMS = ("svd", "embeddings", "graph")
# True success rates per context: the best arm differs by context; the control arm is mediocre.
TRUTH = {
    "time_of_day=morning|user_type=new": (0.05, 0.25, 0.10),
    "time_of_day=morning|user_type=returning": (0.20, 0.05, 0.10),
    "time_of_day=night|user_type=new": (0.05, 0.10, 0.30),
    "time_of_day=night|user_type=returning": (0.25, 0.10, 0.10),
}
CONTEXT = {
    "attributes": {"time_of_day": ["morning", "night"], "user_type": ["new", "returning"]},
    "holdout": 0.2,
    "control": {"arm": "graph"},
    "min_context_pulls": 20,
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make(settings: dict[str, Any] | None = None) -> tuple[ContextualService, Clock]:
    clock = Clock()
    service = ExperimentService(MemoryStore(), clock=clock, cache_seconds=0)
    service.create_experiment(
        key="recs",
        type="contextual_bandit",
        variants=[{"key": a, "weight": 1 / 3, "config": {"model": a}} for a in ARMS],
        settings={"contextual": settings or CONTEXT},
    )
    service.start_experiment("recs")
    counter = itertools.count()
    return ContextualService(service.lookup, ids=lambda: f"d{next(counter):08d}"), clock


def parse(key: str) -> dict[str, str]:
    return dict(part.split("=") for part in key.split("|"))


def run_world(contextual: ContextualService, decisions: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = list(TRUTH)
    for i in range(decisions):
        key = keys[int(rng.integers(len(keys)))]
        decision = contextual.decide("recs", unit_id=f"user-{i % 1500}", context=parse(key))
        rate = TRUTH[key][ARMS.index(decision.arm.key)]
        if rng.random() < rate:
            contextual.feedback("recs", decision_id=decision.decision_id, event="click")


@pytest.mark.parametrize(
    ("event", "value", "outcome"),
    [
        ("rating", 2.0, FeedbackOutcome.FAILURE),
        ("rating", 1.0, FeedbackOutcome.FAILURE),
        ("rating", 2.5, FeedbackOutcome.NEUTRAL),
        ("rating", 3.0, FeedbackOutcome.NEUTRAL),
        ("rating", 3.99, FeedbackOutcome.NEUTRAL),
        ("rating", 4.0, FeedbackOutcome.SUCCESS),
        ("rating", 5.0, FeedbackOutcome.SUCCESS),
        ("click", None, FeedbackOutcome.SUCCESS),
        ("thumbs_up", None, FeedbackOutcome.SUCCESS),
        ("thumbs_down", None, FeedbackOutcome.FAILURE),
    ],
)
def test_feedback_rules(event: str, value: float | None, outcome: FeedbackOutcome) -> None:
    contextual, _ = make()
    decision = contextual.decide("recs", context={"time_of_day": "night", "user_type": "new"})
    result = contextual.feedback("recs", decision_id=decision.decision_id, event=event, value=value)
    assert (result.outcome, result.applied) == (outcome, True)
    again = contextual.feedback("recs", decision_id=decision.decision_id, event=event, value=value)
    assert again.applied is False  # once per event type
    stored = contextual.store.get_decision(decision.experiment_id, decision.decision_id)
    assert stored is not None
    assert (stored.successes, stored.failures) == (
        int(outcome is FeedbackOutcome.SUCCESS),
        int(outcome is FeedbackOutcome.FAILURE),
    )


def test_thresholds_are_configurable() -> None:
    contextual, _ = make({**CONTEXT, "rules": {"success_rating": 3.0, "failure_rating": 1.0}})
    decision = contextual.decide("recs", context={"time_of_day": "night", "user_type": "new"})
    result = contextual.feedback("recs", decision_id=decision.decision_id, event="rating", value=3)
    assert result.outcome is FeedbackOutcome.SUCCESS


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"event": "purchase"}, ValidationError, "event"),
        ({"event": "rating"}, ValidationError, "value"),
        ({"event": "click", "decision_id": "nope"}, NotFound, "decision_id"),
    ],
)
def test_bad_feedback_is_refused(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    contextual, _ = make()
    decision = contextual.decide("recs", context={"time_of_day": "night", "user_type": "new"})
    with pytest.raises(error) as caught:
        contextual.feedback("recs", **{"decision_id": decision.decision_id, **kwargs})
    assert caught.value.field == field  # type: ignore[attr-defined]


def test_expired_decisions_are_refused() -> None:
    contextual, clock = make({**CONTEXT, "decision_ttl_hours": 24})
    decision = contextual.decide("recs", context={"time_of_day": "night", "user_type": "new"})
    clock.now += timedelta(hours=25)
    with pytest.raises(DecisionExpired, match="expired after 24 hours"):
        contextual.feedback("recs", decision_id=decision.decision_id, event="click")


NIGHT_NEW = {"time_of_day": "night", "user_type": "new"}


class NoScans(MemoryStore):
    """A store that fails any read of a whole experiment's decisions."""

    def list_decisions(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("feedback by unit read every decision of the experiment")


def test_feedback_by_unit_goes_to_its_latest_decision() -> None:
    """Bandit Selector's clients say "user 1 gave thumbs up" (`thumbs-up`, no decision id)."""
    clock = Clock()
    service = ExperimentService(NoScans(), clock=clock, cache_seconds=0)
    service.create_experiment(
        key="recs",
        type="contextual_bandit",
        variants=[{"key": a, "weight": 1 / 3} for a in ARMS],
        settings={"contextual": {"attributes": CONTEXT["attributes"]}},
    )
    service.start_experiment("recs")
    first = service.contextual.decide("recs", unit_id="1", context=NIGHT_NEW)
    clock.now += timedelta(minutes=5)
    latest = service.contextual.decide("recs", unit_id="1", context=NIGHT_NEW)
    other = service.contextual.decide("recs", unit_id="2", context=NIGHT_NEW)
    result = service.contextual.feedback("recs", unit_id="1", event="thumbs-up")
    assert (result.decision_id, result.event) == (latest.decision_id, "thumbs_up")
    assert (result.outcome, result.applied) == (FeedbackOutcome.SUCCESS, True)
    # The same event again, by id or by unit and with either spelling: counted once.
    assert not service.contextual.feedback("recs", unit_id="1", event="thumbs_up").applied
    again = service.contextual.feedback("recs", decision_id=latest.decision_id, event="thumbs-up")
    assert not again.applied
    exp = service.get_experiment("recs").id
    successes = {
        d: service.store.get_decision(exp, d).successes  # type: ignore[union-attr]
        for d in (first.decision_id, latest.decision_id, other.decision_id)
    }
    assert successes == {first.decision_id: 0, latest.decision_id: 1, other.decision_id: 0}
    rated = service.contextual.feedback("recs", unit_id="2", event="rating", value=4.5)
    assert rated.decision_id == other.decision_id
    stored = service.store.get_decision(exp, other.decision_id)
    assert stored is not None
    assert (stored.rating, stored.successes) == (4.5, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"unit_id": "stranger"}, NotFound, "unit_id"),  # no decision at all
        ({"unit_id": "1", "decision_id": "d00000000"}, ValidationError, "unit_id"),  # both
        ({}, ValidationError, "decision_id"),  # neither
        ({"unit_id": "1", "event": "thumbs--up"}, ValidationError, "event"),
        ({"unit_id": "\udfff"}, ValidationError, "unit_id"),
    ],
)
def test_bad_feedback_by_unit_is_refused(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    contextual, _ = make()
    contextual.decide("recs", unit_id="1", context=NIGHT_NEW)
    with pytest.raises(error) as caught:
        contextual.feedback("recs", **{"event": "click", **kwargs})
    assert caught.value.field == field  # type: ignore[attr-defined]
    states = contextual.store.get_bandit_states(contextual.lookup.get("recs").id)
    assert {s.successes for s in states} == {0}  # nothing applied


def test_feedback_by_unit_only_within_the_decision_ttl() -> None:
    contextual, clock = make({**CONTEXT, "decision_ttl_hours": 24})
    decision = contextual.decide("recs", unit_id="1", context=NIGHT_NEW)
    clock.now += timedelta(hours=24)  # exactly at the limit: still in time
    assert contextual.feedback("recs", unit_id="1", event="click").applied
    clock.now += timedelta(microseconds=1)
    with pytest.raises(NotFound, match="within the last 24 hours") as caught:
        contextual.feedback("recs", unit_id="1", event="thumbs_up")
    assert caught.value.field == "unit_id"
    newer = contextual.decide("recs", unit_id="1", context=NIGHT_NEW)
    result = contextual.feedback("recs", unit_id="1", event="thumbs_up")
    assert (result.decision_id, result.applied) == (newer.decision_id, True)
    assert newer.decision_id != decision.decision_id


def test_hyphens_match_configured_names_both_ways() -> None:
    rules = {"success_events": ["add-to-list"], "failure_events": ["not_interested"]}
    contextual, _ = make({**CONTEXT, "rules": rules})
    decision = contextual.decide("recs", unit_id="1", context=NIGHT_NEW)
    up = contextual.feedback("recs", unit_id="1", event="add_to_list")
    down = contextual.feedback("recs", decision_id=decision.decision_id, event="not-interested")
    assert (up.event, up.outcome) == ("add-to-list", FeedbackOutcome.SUCCESS)
    assert (down.event, down.outcome) == ("not_interested", FeedbackOutcome.FAILURE)
    with pytest.raises(ValidationError) as caught:  # one meaning per name, whatever the dashes
        make({**CONTEXT, "rules": {"success_events": ["a-b"], "failure_events": ["a_b"]}})
    assert caught.value.field == "settings.contextual.rules"


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"time_of_day": "noon", "user_type": "new"}, "context.time_of_day"),
        ({"time_of_day": "night"}, "context.user_type"),
        ({"time_of_day": "night", "user_type": "new", "device": "ios"}, "context.device"),
    ],
)
def test_bad_contexts_are_refused(context: dict[str, str], field: str) -> None:
    contextual, _ = make()
    with pytest.raises(ValidationError) as caught:
        contextual.decide("recs", context=context)
    assert caught.value.field == field


def test_the_bandit_learns_each_context_and_beats_the_holdout() -> None:
    contextual, _ = make()
    run_world(contextual, 6_000, seed=1)
    stats = contextual.stats("recs")
    best = {c.context_key: c.best_arm for c in stats.contexts}
    assert best == {key: ARMS[int(np.argmax(rates))] for key, rates in TRUTH.items()}
    # Each context's best arm gets most of the bandit's recent traffic there.
    policies = stats.policies
    assert policies.control is not None
    assert policies.control.decisions == pytest.approx(0.2 * 6_000, rel=0.15)
    bandit_rate, control_rate = policies.bandit.success_rate, policies.control.success_rate
    assert bandit_rate is not None
    assert control_rate is not None
    assert bandit_rate > control_rate
    assert policies.comparison is not None
    assert policies.comparison.p_value is not None
    assert policies.comparison.p_value < 0.001
    # Holdout is by unit: a unit always gets the same policy.
    decisions = contextual.store.list_decisions(stats.experiment_id)
    by_unit: dict[str | None, set[str]] = {}
    for d in decisions:
        by_unit.setdefault(d.unit_id, set()).add(d.policy)
    assert all(len(p) == 1 for p in by_unit.values())
    assert all(0 < d.propensity <= 1 for d in decisions)


def test_offpolicy_estimates_cover_the_truth() -> None:
    contextual, _ = make({**CONTEXT, "holdout": 0.0, "min_propensity": 0.05})
    run_world(contextual, 6_000, seed=2)
    experiment_id = contextual.lookup.get("recs").id
    decisions = contextual.store.list_decisions(experiment_id)
    share = {key: sum(d.context_key == key for d in decisions) / len(decisions) for key in TRUTH}
    for policy, value in (
        ("arm:graph", sum(share[k] * TRUTH[k][2] for k in TRUTH)),
        ("uniform", sum(share[k] * np.mean(TRUTH[k]) for k in TRUTH)),
    ):
        result = contextual.offpolicy("recs", policy=policy).estimates
        for estimate in (result.ips, result.snips, result.dr):
            # Within 3.5 standard errors of the truth (the logging policy adapted as it went).
            assert abs(estimate.value - value) < 3.5 * estimate.standard_error, policy
    greedy = contextual.offpolicy("recs", policy="greedy").estimates
    oracle = sum(share[k] * max(TRUTH[k]) for k in TRUTH)
    assert greedy.dr.value == pytest.approx(oracle, abs=0.03)
    with pytest.raises(ValidationError, match="unknown policy"):
        contextual.offpolicy("recs", policy="arm:nope")


def test_settings_are_checked_when_the_experiment_is_created() -> None:
    service = ExperimentService(MemoryStore())
    variants = [{"key": a, "weight": 1 / 3} for a in ARMS]
    for settings, field in (
        ({"holdout": 0.1}, "settings.contextual.control"),
        ({"control": {"arm": "nope"}}, "settings.contextual.control"),
        ({"attributes": {"x": []}}, "settings.contextual.attributes.x"),
        (
            {"rules": {"success_rating": 2, "failure_rating": 3}},
            "settings.contextual.rules.failure_rating",
        ),
        ({"typo": 1}, "settings.contextual.typo"),
    ):
        with pytest.raises(ValidationError) as caught:
            service.create_experiment(
                key="bad",
                type="contextual_bandit",
                variants=variants,
                settings={"contextual": settings},
            )
        assert caught.value.field == field


def test_service_wide_bandit_defaults_apply_to_contextual_bandits() -> None:
    """PRIOR_ALPHA, PRIOR_BETA and THOMPSON_SAMPLES are the service's bandit defaults: a
    contextual bandit without its own ``settings.contextual`` priors starts from them, and its
    own settings still win."""
    from abpilot.bandits.config import BanditOptions

    service = ExperimentService(
        MemoryStore(),
        cache_seconds=0,
        bandit_defaults=BanditOptions(prior_alpha=2.0, prior_beta=99.0, samples=500),
    )
    for key, own in (("shared", {}), ("own", {"prior_alpha": 3.0, "samples": 700})):
        service.create_experiment(
            key=key,
            type="contextual_bandit",
            variants=[{"key": a, "weight": 1 / 3} for a in ARMS],
            settings={"contextual": {"attributes": {"device": ["ios", "web"]}, **own}},
        )
        service.start_experiment(key)
    shared = service.contextual.stats("shared")
    assert {(a.alpha, a.beta) for a in shared.arms} == {(2.0, 99.0)}
    own = service.contextual.stats("own")
    assert {(a.alpha, a.beta) for a in own.arms} == {(3.0, 99.0)}
    # Monte Carlo decisions draw THOMPSON_SAMPLES unless the experiment sets its own.
    assert service.contextual.defaults.samples == 500
