"""Contextual bandits: decide an arm per request, learn from feedback, compare with the control
policy online (a holdout) and offline (off-policy evaluation of logged decisions).

Rewards for stats and off-policy evaluation are per decision: 1 when the decision got at least one
success event, else 0 (no feedback, failures and neutral feedback alike). Posteriors learn only
from explicit successes and failures, as the feedback rules say.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from abpilot import notebook
from abpilot.contextual.offpolicy import OffPolicyEstimates, evaluate
from abpilot.contextual.policy import (
    ContextualOptions,
    bandit_probabilities,
    choose,
    context_key,
    contextual_options,
    in_holdout,
    posteriors,
)
from abpilot.domain.errors import AbpilotError, NotFound, ValidationError
from abpilot.domain.experiment import Experiment, ExperimentType, Variant
from abpilot.domain.text import check_number, check_text
from abpilot.service.events import check_running
from abpilot.service.lookup import ExperimentLookup
from abpilot.stats.frequentist import Comparison, Interval, compare_proportions, wilson_interval
from abpilot.store.base import GLOBAL_CONTEXT, ArmState, Decision, FeedbackOutcome

if TYPE_CHECKING:
    from pandas import DataFrame

BANDIT, CONTROL = "bandit", "control"


class DecisionExpired(AbpilotError):
    """Feedback for a decision older than its experiment's ``decision_ttl_hours`` (HTTP 410)."""

    code = "decision_expired"
    status_code = 410


@dataclass(frozen=True, slots=True)
class DecisionResult:
    decision_id: str
    experiment_id: str
    arm: Variant
    propensity: float
    policy: str
    method: str
    context_key: str
    backed_off: bool


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    decision_id: str
    event: str
    outcome: FeedbackOutcome
    applied: bool


@dataclass(frozen=True, slots=True)
class RateStats:
    decisions: int
    successes: int
    success_rate: float | None
    ci: Interval | None


@dataclass(frozen=True, slots=True)
class ArmStats:
    arm: str
    selection_rate: float | None
    performance: RateStats
    alpha: float
    beta: float


@dataclass(frozen=True, slots=True)
class ContextStats:
    context_key: str
    performance: RateStats
    best_arm: str  # highest posterior mean in this context (backing off as decisions do)
    arms: tuple[ArmStats, ...]


@dataclass(frozen=True, slots=True)
class PolicyComparison:
    bandit: RateStats
    control: RateStats | None
    comparison: Comparison | None  # bandit minus control


@dataclass(frozen=True, slots=True)
class ContextualStats:
    experiment_id: str
    overall: RateStats
    arms: tuple[ArmStats, ...]
    contexts: tuple[ContextStats, ...]
    policies: PolicyComparison

    def _repr_html_(self) -> str:
        """The arms over every context as a table, in a notebook (``abpilot.notebook``)."""
        overall = self.overall
        return notebook.table(
            f"Contextual bandit {self.experiment_id}",
            [notebook.record(arm) for arm in self.arms],
            note=f"{overall.successes} successes in {overall.decisions} decisions",
            details=notebook.record(self),
        )

    def to_frame(self) -> DataFrame:
        """One row per arm over every context, indexed by ``arm``, a column per field of
        ``ArmStats`` (``performance_success_rate``, ...). Needs pandas."""
        return notebook.frame([notebook.record(arm) for arm in self.arms], index="arm")


@dataclass(frozen=True, slots=True)
class DayStats:
    day: date
    overall: RateStats
    bandit: RateStats
    control: RateStats


@dataclass(frozen=True, slots=True)
class OffPolicyResult:
    experiment_id: str
    policy: str
    estimates: OffPolicyEstimates


@dataclass(frozen=True, slots=True)
class _Policy:
    probabilities: tuple[float, ...]
    method: str
    backed_off: tuple[bool, ...]


def _rate(decisions: list[Decision]) -> RateStats:
    n = len(decisions)
    wins = sum(1 for d in decisions if d.successes > 0)
    return RateStats(n, wins, wins / n if n else None, wilson_interval(wins, n))


class ContextualService:
    """Decisions and feedback of ``contextual_bandit`` experiments; ``ids`` names decisions."""

    def __init__(
        self,
        lookup: ExperimentLookup,
        *,
        ids: Callable[[], str] = lambda: uuid.uuid4().hex,
        defaults: ContextualOptions | None = None,
    ) -> None:
        self.lookup = lookup
        self.ids = ids
        self.defaults = defaults or ContextualOptions()
        """The service-wide options an experiment's ``settings.contextual`` overrides."""
        self.store = lookup.store
        self._policies: dict[tuple[str, str], tuple[float, _Policy]] = {}

    def _experiment(self, experiment_ref: str) -> tuple[Experiment, ContextualOptions]:
        exp = self.lookup.get(experiment_ref)
        if exp.type is not ExperimentType.CONTEXTUAL_BANDIT:
            raise ValidationError(
                f"experiment '{exp.key}' is a {exp.type} experiment; decisions and feedback are "
                "for contextual_bandit experiments",
                field="type",
            )
        return exp, contextual_options(exp.settings, [v.key for v in exp.variants], self.defaults)

    def _bandit_policy(
        self, exp: Experiment, options: ContextualOptions, key: str, rng: np.random.Generator
    ) -> _Policy:
        """The bandit's arm probabilities in one context, from posteriors at most
        ``cache_seconds`` old (P(best) is the costly part of a decision, so it is computed once
        per context and snapshot, not per request)."""
        now = time.monotonic()
        cached = self._policies.get((exp.id, key))
        if cached is not None and now - cached[0] < self.lookup.cache_seconds:
            return cached[1]
        arms = [v.key for v in exp.variants]
        post = posteriors(options, arms, self.store.get_bandit_states(exp.id), key)
        probabilities, method = bandit_probabilities(options, post, rng)
        policy = _Policy(probabilities, method, post.backed_off)
        self._policies[(exp.id, key)] = (now, policy)
        return policy

    def decide(
        self, experiment: str, *, unit_id: str | None = None, context: Mapping[str, Any]
    ) -> DecisionResult:
        """Pick an arm for this request and log the decision with its propensity."""
        exp, options = self._experiment(experiment)
        check_running(exp, "decisions are made")
        if unit_id is not None:
            check_text(unit_id, field="unit_id", max_length=256)
        key = context_key(options, context)
        decision_id = self.ids()
        rng = np.random.default_rng(list(decision_id.encode()))  # reproducible from the id
        arms = [v.key for v in exp.variants]
        backed_off = False
        if in_holdout(options, exp.salt, unit_id, float(rng.random())):
            assert options.control is not None
            probabilities, method, policy = options.control.probabilities(arms), "fixed", CONTROL
            choice = choose(probabilities, method, rng)
        else:
            bandit = self._bandit_policy(exp, options, key, rng)
            choice, policy = choose(bandit.probabilities, bandit.method, rng), BANDIT
            backed_off = bandit.backed_off[choice.arm]
        decision = Decision(
            id=decision_id,
            experiment_id=exp.id,
            unit_id=unit_id,
            context_key=key,
            context={k: str(v) for k, v in context.items()},
            arm=arms[choice.arm],
            propensity=choice.propensity,
            policy=policy,
            method=choice.method,
            decided_at=self.lookup.clock(),
        )
        self.store.record_decision(decision)
        return DecisionResult(
            decision_id=decision_id,
            experiment_id=exp.id,
            arm=exp.variants[choice.arm],
            propensity=choice.propensity,
            policy=policy,
            method=choice.method,
            context_key=key,
            backed_off=backed_off,
        )

    def feedback(
        self,
        experiment: str,
        *,
        decision_id: str | None = None,
        unit_id: str | None = None,
        event: str,
        value: float | None = None,
    ) -> FeedbackResult:
        """Apply a feedback event to a decision at most once per event type. The decision is
        named by ``decision_id``, or by ``unit_id``: that unit's latest decision in the
        experiment, if it was made within ``decision_ttl_hours``. Event names match with
        hyphens read as underscores (``thumbs-up`` is ``thumbs_up``)."""
        exp, options = self._experiment(experiment)
        check_running(exp, "feedback is accepted")
        check_text(event, field="event", max_length=100)
        if value is not None:
            value = check_number(value, field="value")
        event = options.rules.canonical(event)
        outcome = options.rules.classify(event, value)
        now = self.lookup.clock()
        decision = self._feedback_target(exp, options, decision_id, unit_id, now)
        rating = value if event == options.rules.rating_event else None
        applied = self.store.apply_feedback(exp.id, decision.id, event, outcome, now, rating)
        return FeedbackResult(decision.id, event, outcome, applied)

    def _feedback_target(
        self,
        exp: Experiment,
        options: ContextualOptions,
        decision_id: str | None,
        unit_id: str | None,
        now: datetime,
    ) -> Decision:
        """The decision feedback is for: by id (404 unknown, 410 expired), or the unit's
        latest (404 when it has none within ``decision_ttl_hours``)."""
        if decision_id is not None and unit_id is not None:
            raise ValidationError(
                "give decision_id or unit_id (the unit's latest decision), not both",
                field="unit_id",
            )
        if decision_id is None and unit_id is None:
            raise ValidationError(
                "feedback needs a decision_id, or a unit_id for the unit's latest decision",
                field="decision_id",
            )
        ttl = timedelta(hours=options.decision_ttl_hours)
        if unit_id is not None:
            check_text(unit_id, field="unit_id", max_length=256)
            latest = self.store.latest_unit_decision(exp.id, unit_id)
            if latest is None:
                raise NotFound(
                    f"unit '{unit_id}' has no decision in experiment '{exp.key}'", field="unit_id"
                )
            if latest.decided_at + ttl < now:
                raise NotFound(
                    f"unit '{unit_id}' has no decision in experiment '{exp.key}' within the last "
                    f"{options.decision_ttl_hours:g} hours (decision_ttl_hours; its latest was "
                    f"made at {latest.decided_at.isoformat()})",
                    field="unit_id",
                )
            return latest
        assert decision_id is not None
        check_text(decision_id, field="decision_id", max_length=100)
        decision = self.store.get_decision(exp.id, decision_id)
        if decision is None:
            raise NotFound(
                f"experiment '{exp.key}' has no decision '{decision_id[:100]}'",
                field="decision_id",
            )
        if decision.decided_at + ttl < now:
            raise DecisionExpired(
                f"decision '{decision_id}' was made at {decision.decided_at.isoformat()} and "
                f"expired after {options.decision_ttl_hours:g} hours",
                field="decision_id",
            )
        return decision

    # reading ---------------------------------------------------------------------------------

    def stats(self, experiment: str, *, days: float | None = None) -> ContextualStats:
        exp, options = self._experiment(experiment)
        since = self.lookup.clock() - timedelta(days=days) if days is not None else None
        decisions = self.store.list_decisions(exp.id, since)
        states = self.store.get_bandit_states(exp.id)
        arms = [v.key for v in exp.variants]
        contexts = sorted({d.context_key for d in decisions})
        bandit = [d for d in decisions if d.policy == BANDIT]
        control = [d for d in decisions if d.policy == CONTROL]
        comparison = None
        if control:
            b, c = _rate(bandit), _rate(control)
            comparison = compare_proportions(b.successes, b.decisions, c.successes, c.decisions)
        return ContextualStats(
            experiment_id=exp.id,
            overall=_rate(decisions),
            arms=self._arm_stats(options, arms, decisions, states, GLOBAL_CONTEXT),
            contexts=tuple(
                self._context_stats(options, arms, decisions, states, key) for key in contexts
            ),
            policies=PolicyComparison(
                _rate(bandit), _rate(control) if control else None, comparison
            ),
        )

    def _arm_stats(
        self,
        options: ContextualOptions,
        arms: list[str],
        decisions: list[Decision],
        states: list[ArmState],
        key: str,
    ) -> tuple[ArmStats, ...]:
        post = posteriors(options, arms, states, key)
        n = len(decisions)
        return tuple(
            ArmStats(
                arm=arm,
                selection_rate=sum(1 for d in decisions if d.arm == arm) / n if n else None,
                performance=_rate([d for d in decisions if d.arm == arm]),
                alpha=post.alpha[i],
                beta=post.beta[i],
            )
            for i, arm in enumerate(arms)
        )

    def _context_stats(
        self,
        options: ContextualOptions,
        arms: list[str],
        decisions: list[Decision],
        states: list[ArmState],
        key: str,
    ) -> ContextStats:
        here = [d for d in decisions if d.context_key == key]
        arm_stats = self._arm_stats(options, arms, here, states, key)
        best = max(arm_stats, key=lambda a: a.alpha / (a.alpha + a.beta)).arm
        return ContextStats(key, _rate(here), best, arm_stats)

    def performance(self, experiment: str, *, days: int = 30) -> list[DayStats]:
        """Daily success rates over the last ``days`` days (UTC days), oldest first."""
        exp, _ = self._experiment(experiment)
        now = self.lookup.clock()
        first = (now - timedelta(days=days - 1)).date()
        since = datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)
        by_day: dict[date, list[Decision]] = {}
        for d in self.store.list_decisions(exp.id, since):
            by_day.setdefault(d.decided_at.date(), []).append(d)
        return [
            DayStats(
                day=day,
                overall=_rate(found),
                bandit=_rate([d for d in found if d.policy == BANDIT]),
                control=_rate([d for d in found if d.policy == CONTROL]),
            )
            for day, found in sorted(by_day.items())
        ]

    def offpolicy(self, experiment: str, *, policy: str) -> OffPolicyResult:
        """Estimate what ``policy`` would have achieved on the logged decisions: ``control``,
        ``uniform``, ``greedy`` (the bandit's best arm per context now), or ``arm:<key>``."""
        exp, options = self._experiment(experiment)
        arms = [v.key for v in exp.variants]
        decisions = self.store.list_decisions(exp.id)
        if not decisions:
            raise ValidationError("no decisions are logged yet", field="policy")
        target = self._target(exp, options, arms, policy, decisions)
        estimates = evaluate(
            [d.context_key for d in decisions],
            [arms.index(d.arm) for d in decisions],
            [d.propensity for d in decisions],
            [1.0 if d.successes > 0 else 0.0 for d in decisions],
            target,
        )
        return OffPolicyResult(exp.id, policy, estimates)

    def _target(
        self,
        exp: Experiment,
        options: ContextualOptions,
        arms: list[str],
        policy: str,
        decisions: list[Decision],
    ) -> np.ndarray:
        k = len(arms)
        if policy == "uniform":
            return np.full((len(decisions), k), 1 / k)
        if policy == "control":
            if options.control is None:
                raise ValidationError(
                    f"experiment '{exp.key}' has no control policy (settings.contextual.control)",
                    field="policy",
                )
            return np.tile(options.control.probabilities(arms), (len(decisions), 1))
        if policy.startswith("arm:") and policy[4:] in arms:
            return np.tile(np.eye(k)[arms.index(policy[4:])], (len(decisions), 1))
        if policy == "greedy":
            states = self.store.get_bandit_states(exp.id)
            best: dict[str, int] = {}
            for key in {d.context_key for d in decisions}:
                post = posteriors(options, arms, states, key)
                means = np.array(post.alpha) / (np.array(post.alpha) + np.array(post.beta))
                best[key] = int(means.argmax())
            return np.eye(k)[[best[d.context_key] for d in decisions]]
        raise ValidationError(
            f"unknown policy '{policy[:100]}' (policies: control, uniform, greedy, "
            f"{', '.join('arm:' + a for a in arms)})",
            field="policy",
        )
