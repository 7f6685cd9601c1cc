"""Contextual Thompson sampling (pure): context keys, feedback rules, and the choice of an arm.

An arm's trials are its decisions: with ``implicit_failures`` (the default) a decision that got no
success counts as a failure, as a click-through rate needs (a recommender rarely hears "no");
without it only explicit failure events (thumbs down, low ratings) count against an arm.

A context is a set of discrete attributes from a declared schema, reduced to a key such as
``time_of_day=evening|user_type=new`` (attributes sorted by name). Each (context, arm) has a
Beta(prior_alpha + successes, prior_beta + failures) posterior; an arm with fewer than
``min_context_pulls`` decisions in the context backs off to its global posterior (every context
pooled), so a rare context borrows what the others learned.

Thompson sampling picks arm i with probability P(i is best under the posteriors). The policy here
computes those probabilities (exactly by 1-D quadrature, or by seeded Monte Carlo), floors them at
``min_propensity`` so every arm keeps being explored, and draws the arm from them: the decision's
propensity is exactly the probability the policy used, which off-policy evaluation needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import mmh3
import numpy as np

from abpilot.bandits.config import Method
from abpilot.bandits.thompson import (
    floor_weights,
    probability_best_exact,
    probability_best_monte_carlo,
)
from abpilot.domain.errors import ValidationError
from abpilot.domain.records import GLOBAL_CONTEXT, ArmState, FeedbackOutcome
from abpilot.domain.text import check_section

NO_CONTEXT = "default"
MAX_ATTRIBUTE_VALUES = 100
HOLDOUT_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class FeedbackRules:
    """How a feedback event maps to a Bernoulli outcome (docs/architecture.md §3)."""

    success_events: tuple[str, ...] = ("click", "thumbs_up")
    failure_events: tuple[str, ...] = ("thumbs_down",)
    rating_event: str = "rating"
    success_rating: float = 4.0  # a rating >= this is a success
    failure_rating: float = 2.0  # a rating <= this is a failure; in between is neutral

    @property
    def events(self) -> tuple[str, ...]:
        return (*self.success_events, *self.failure_events, self.rating_event)

    def canonical(self, event: str) -> str:
        """The configured event that ``event`` names: itself, or the one it equals with
        hyphens read as underscores (Bandit Selector's ``thumbs-up`` is ``thumbs_up``)."""
        if event in self.events:
            return event
        folded = fold_event(event)
        for known in self.events:
            if fold_event(known) == folded:
                return known
        raise ValidationError(
            f"unknown feedback event '{event[:100]}' (events: {', '.join(self.events)})",
            field="event",
        )

    def classify(self, event: str, value: float | None) -> FeedbackOutcome:
        event = self.canonical(event)
        if event == self.rating_event:
            if value is None:
                raise ValidationError(f"a '{event}' event needs a value", field="value")
            if value >= self.success_rating:
                return FeedbackOutcome.SUCCESS
            if value <= self.failure_rating:
                return FeedbackOutcome.FAILURE
            return FeedbackOutcome.NEUTRAL
        if event in self.success_events:
            return FeedbackOutcome.SUCCESS
        return FeedbackOutcome.FAILURE  # canonical() refused every other event


def fold_event(event: str) -> str:
    """The form two event names are compared in: hyphens read as underscores."""
    return event.replace("-", "_")


@dataclass(frozen=True, slots=True)
class ControlPolicy:
    """What the holdout gets: one fixed arm, or fixed weights over the arms."""

    weights: Mapping[str, float]

    def probabilities(self, arms: Sequence[str]) -> list[float]:
        return [float(self.weights.get(a, 0.0)) for a in arms]


@dataclass(frozen=True, slots=True)
class ContextualOptions:
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    min_context_pulls: int = 20
    min_propensity: float = 0.01
    holdout: float = 0.0
    control: ControlPolicy | None = None
    method: Method = Method.EXACT
    samples: int = 10_000
    decision_ttl_hours: float = 72.0
    rules: FeedbackRules = field(default_factory=FeedbackRules)
    implicit_failures: bool = True


def context_key(options: ContextualOptions, context: Mapping[str, Any]) -> str:
    """The key of a context: every declared attribute, with an allowed value, sorted by name."""
    unknown = sorted(set(context) - set(options.attributes))
    if unknown:
        allowed = ", ".join(sorted(options.attributes)) or "none"
        raise ValidationError(
            f"unknown context attribute '{str(unknown[0])[:100]}' (attributes: {allowed})",
            field=f"context.{str(unknown[0])[:100]}",
        )
    parts = []
    for name in sorted(options.attributes):
        allowed_values = options.attributes[name]
        value = context.get(name)
        if value is None:
            raise ValidationError(
                f"context attribute '{name}' is missing (one of: {', '.join(allowed_values)})",
                field=f"context.{name}",
            )
        if not isinstance(value, str) or value not in allowed_values:
            raise ValidationError(
                f"context attribute '{name}' must be one of {', '.join(allowed_values)} "
                f"(got {str(value)[:100]!r})",
                field=f"context.{name}",
            )
        parts.append(f"{name}={value}")
    return "|".join(parts) if parts else NO_CONTEXT


def in_holdout(options: ContextualOptions, salt: str, unit_id: str | None, draw: float) -> bool:
    """Units are held out by hash (the same unit always gets the same policy); a decision
    without a unit by the draw ``draw`` in [0, 1)."""
    if options.holdout <= 0 or options.control is None:
        return False
    if unit_id is None:
        return draw < options.holdout
    bucket = mmh3.hash(f"{salt}.holdout.{unit_id}".encode(), signed=False) * HOLDOUT_BUCKETS >> 32
    return bool(bucket < round(options.holdout * HOLDOUT_BUCKETS))


@dataclass(frozen=True, slots=True)
class Posteriors:
    """Beta parameters of every arm in one context, and which arms backed off to global."""

    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    backed_off: tuple[bool, ...]


def posteriors(
    options: ContextualOptions, arms: Sequence[str], states: Sequence[ArmState], key: str
) -> Posteriors:
    by_key = {(s.context_key, s.arm): s for s in states}
    alpha, beta, backed_off = [], [], []
    for arm in arms:
        own = by_key.get((key, arm))
        use = own
        fallback = own is None or own.pulls < options.min_context_pulls
        if fallback:
            use = by_key.get((GLOBAL_CONTEXT, arm))
        successes = use.successes if use else 0
        failures = use.failures if use else 0
        if options.implicit_failures and use is not None:
            failures = max(failures, use.pulls - successes)
        alpha.append(options.prior_alpha + successes)
        beta.append(options.prior_beta + failures)
        backed_off.append(fallback)
    return Posteriors(tuple(alpha), tuple(beta), tuple(backed_off))


@dataclass(frozen=True, slots=True)
class Choice:
    arm: int
    probabilities: tuple[float, ...]
    method: str

    @property
    def propensity(self) -> float:
        return self.probabilities[self.arm]


def bandit_probabilities(
    options: ContextualOptions, post: Posteriors, rng: np.random.Generator
) -> tuple[tuple[float, ...], str]:
    """P(each arm is chosen) under Thompson sampling, floored at ``min_propensity``."""
    pairs = list(zip(post.alpha, post.beta, strict=True))
    if options.method is Method.MONTE_CARLO:
        best = probability_best_monte_carlo(pairs, options.samples, rng)
    else:
        best = probability_best_exact(pairs)
    floored = floor_weights(best, options.min_propensity)
    total = sum(floored)
    return tuple(p / total for p in floored), options.method.value


def choose(probabilities: Sequence[float], method: str, rng: np.random.Generator) -> Choice:
    """Draw an arm from ``probabilities``; its propensity is the probability it had."""
    p = np.asarray(probabilities, dtype=float)
    arm = int(rng.choice(len(p), p=p / p.sum()))
    return Choice(arm, tuple(float(x) for x in p), method)


def contextual_options(
    settings: Mapping[str, Any],
    arms: Sequence[str],
    defaults: ContextualOptions | None = None,
) -> ContextualOptions:
    """Parse ``settings["contextual"]`` over ``defaults`` (the service-wide ones); a bad key or
    value is a ValidationError naming it."""
    where = "settings.contextual"
    known = (f.name for f in fields(ContextualOptions))
    raw = check_section(settings.get("contextual", {}), where, known)
    options = defaults or ContextualOptions()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        at = f"{where}.{name}"
        if name == "attributes":
            values[name] = _attributes(value, at)
        elif name in {"prior_alpha", "prior_beta"}:
            values[name] = _number(value, at, low=1e-6, high=1e9)
        elif name == "min_context_pulls":
            values[name] = int(_number(value, at, low=0, high=1e9, integer=True))
        elif name == "min_propensity":
            values[name] = _number(value, at, low=0.0, high=1.0 / max(len(arms), 1))
        elif name == "holdout":
            values[name] = _number(value, at, low=0.0, high=0.5)
        elif name == "control":
            values[name] = _control(value, at, arms)
        elif name == "method":
            if value not in {m.value for m in Method}:
                raise ValidationError(f"{at} must be 'exact' or 'monte_carlo'", field=at)
            values[name] = Method(value)
        elif name == "samples":
            values[name] = int(_number(value, at, low=100, high=1_000_000, integer=True))
        elif name == "decision_ttl_hours":
            values[name] = _number(value, at, low=0.01, high=24 * 366)
        elif name == "rules":
            values[name] = _rules(value, at)
        elif name == "implicit_failures":
            if not isinstance(value, bool):
                raise ValidationError(f"{at} must be true or false", field=at)
            values[name] = value
    options = replace(options, **values)
    if options.holdout > 0 and options.control is None:
        raise ValidationError(
            f"{where}.holdout needs a control policy ({where}.control: an arm or weights)",
            field=f"{where}.control",
        )
    return options


def _number(value: Any, at: str, *, low: float, high: float, integer: bool = False) -> float:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ValidationError(f"{at} must be {what} from {low} to {high} (got {value!r})", field=at)
    return float(value)


def _attributes(value: Any, at: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{at} must map attribute names to lists of values", field=at)
    out = {}
    for name, allowed in value.items():
        if (
            not isinstance(allowed, list)
            or not allowed
            or len(allowed) > MAX_ATTRIBUTE_VALUES
            or not all(isinstance(v, str) and v and "|" not in v for v in allowed)
            or len(set(allowed)) != len(allowed)
        ):
            raise ValidationError(
                f"{at}.{name} must be a list of 1 to {MAX_ATTRIBUTE_VALUES} distinct, non-empty "
                "strings without '|'",
                field=f"{at}.{name}",
            )
        if not name or "|" in name or "=" in name:
            raise ValidationError(
                f"attribute names may not contain '|' or '=' ({name!r})", field=at
            )
        out[str(name)] = tuple(allowed)
    return out


def _control(value: Any, at: str, arms: Sequence[str]) -> ControlPolicy:
    if isinstance(value, Mapping) and set(value) == {"arm"} and value["arm"] in arms:
        return ControlPolicy({str(value["arm"]): 1.0})
    if isinstance(value, Mapping) and set(value) == {"weights"}:
        weights = value["weights"]
        if (
            isinstance(weights, Mapping)
            and weights
            and set(weights) <= set(arms)
            and all(
                isinstance(w, int | float) and not isinstance(w, bool) and w >= 0
                for w in weights.values()
            )
            and abs(sum(weights.values()) - 1.0) <= 1e-6
        ):
            return ControlPolicy({str(k): float(v) for k, v in weights.items()})
    raise ValidationError(
        f'{at} must be {{"arm": <one of {", ".join(arms)}>}} or {{"weights": {{arm: weight}}}} '
        "with weights >= 0 summing to 1",
        field=at,
    )


def _weight(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _rules(value: Any, at: str) -> FeedbackRules:
    value = check_section(value, at, (f.name for f in fields(FeedbackRules)))
    rules = FeedbackRules()
    changes: dict[str, Any] = {}
    for name, item in value.items():
        if name in {"success_events", "failure_events"}:
            if not isinstance(item, list) or not all(isinstance(e, str) and e for e in item):
                raise ValidationError(
                    f"{at}.{name} must be a list of event names", field=f"{at}.{name}"
                )
            changes[name] = tuple(item)
        elif name == "rating_event":
            if not isinstance(item, str) or not item:
                raise ValidationError(f"{at}.{name} must be an event name", field=f"{at}.{name}")
            changes[name] = item
        else:
            changes[name] = _number(item, f"{at}.{name}", low=-1e9, high=1e9)
    rules = replace(rules, **changes)
    if rules.failure_rating >= rules.success_rating:
        raise ValidationError(
            f"{at}.failure_rating must be below success_rating", field=f"{at}.failure_rating"
        )
    names = [fold_event(e) for e in rules.events]  # thumbs-up and thumbs_up are one event
    if len(set(names)) != len(names):
        raise ValidationError(
            f"{at}: an event may have only one meaning ('-' and '_' are the same in names)",
            field=at,
        )
    return rules
