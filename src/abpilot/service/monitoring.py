"""Monitoring of running experiments on the experiment service: gather each check's inputs
(the analysis, the allocation, the counters, the last event time), run the pure checks of
``abpilot.monitoring.checks``, and report. Reports the scheduler keeps are shared documents in
the ``monitoring`` namespace of the store.

What each experiment type is checked for:

- A/B tests and bandits (traffic arrives as exposures and conversions): ``srm``,
  ``arm_dominance`` (bandits), ``min_rate`` (when a minimum rate is set), ``stale``,
  ``conversions_exceed_exposures``, ``guardrail_harm`` (when the experiment has guardrails:
  metrics with ``"role": "guardrail"``, or listed in ``settings.monitoring.guardrails``) and
  ``heterogeneity`` (when it declares dimensions);
- contextual bandits (decisions and feedback over the report's days): ``arm_dominance``
  (overall and per context, bandit decisions only), ``min_rate`` (the success rate, when a
  minimum rate is set), ``min_avg_rating`` (the mean rating, when a minimum is set) and ``stale``;
- interleaving (traffic arrives as impressions and clicks): ``stale``;
- an experiment analysed from the warehouse: the checks of its type on its latest refresh
  (``analyze_experiment`` and ``get_metrics`` read it), with ``warehouse_refresh`` (the latest
  refresh failed, or is older than twice ``WAREHOUSE_REFRESH_MINUTES``) in place of ``stale``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from abpilot.bandits.thompson import probability_best_exact
from abpilot.contextual.policy import ContextualOptions, contextual_options, posteriors
from abpilot.domain.errors import AbpilotError, ValidationError
from abpilot.domain.experiment import Experiment, ExperimentStatus, ExperimentType, MetricKind
from abpilot.monitoring.checks import (
    ArmRate,
    Check,
    ConversionCount,
    SelectionShare,
    Status,
    arm_dominance_check,
    average_rating_check,
    conversions_check,
    guardrail_harm_check,
    heterogeneity_check,
    min_rate_check,
    selection_dominance_check,
    srm_check,
    stale_check,
    success_rate_check,
    worst,
)
from abpilot.monitoring.options import DEFAULT_DAYS as DEFAULT_DAYS
from abpilot.monitoring.options import MonitoringOptions, monitoring_options
from abpilot.monitoring.refresh import refresh_check
from abpilot.service.allocation import AllocationResult
from abpilot.service.lookup import ExperimentLookup
from abpilot.service.reading import ExperimentMetrics
from abpilot.stats.analysis import Analysis
from abpilot.stats.segments import SegmentBreakdown
from abpilot.stats.summary import Basis
from abpilot.store.base import GLOBAL_CONTEXT, Decision
from abpilot.warehouse.refresh import latest_failure, latest_refresh
from abpilot.warehouse.spec import analysed_in_warehouse

log = logging.getLogger("abpilot.monitoring")

NAMESPACE = "monitoring"
REPORT_PREFIX = "report-"
MAX_DAYS = 366
EVENT_TYPES = frozenset({ExperimentType.AB_TEST, ExperimentType.BANDIT})


@dataclass(frozen=True, slots=True)
class ExperimentHealth:
    id: str
    key: str
    type: str
    status: Status  # the worst of its checks
    checks: tuple[Check, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """The health of every running experiment at ``generated_at``; ``counts`` holds how many
    experiments are ok, warning and alert. Figures about a time range cover the last ``days``
    days where the data is dated (daily intake); event counters are cumulative."""

    generated_at: datetime
    days: int
    experiments: tuple[ExperimentHealth, ...]
    counts: Mapping[str, int]

    @property
    def status(self) -> Status:
        return worst(e.status for e in self.experiments)


def build_report(
    generated_at: datetime, days: int, experiments: Sequence[ExperimentHealth]
) -> Report:
    counts = {s.value: sum(e.status is s for e in experiments) for s in Status}
    return Report(generated_at, days, tuple(experiments), counts)


def check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValidationError(
            f"days must be a whole number from 1 to {MAX_DAYS} (got {days!r})", field="days"
        )
    return days


class MonitoredService(Protocol):
    """The operations the checks read (``ExperimentService`` has them)."""

    @property
    def lookup(self) -> ExperimentLookup: ...

    def list_experiments(
        self, status: ExperimentStatus | str | None = None
    ) -> list[Experiment]: ...

    def analyze_experiment(self, experiment: str, *, metric: str | None = None) -> Analysis: ...

    def get_metrics(self, experiment: str) -> ExperimentMetrics: ...

    def analyze_segments(self, experiment: str, *, dimension: str) -> SegmentBreakdown: ...

    def get_allocation(self, experiment: str) -> AllocationResult: ...


class Monitor:
    """Health checks of running experiments. ``defaults`` are the service-wide thresholds
    (``Settings.monitoring_defaults()``) that an experiment's ``settings.monitoring``
    overrides."""

    def __init__(
        self,
        service: MonitoredService,
        *,
        defaults: MonitoringOptions | None = None,
        contextual_defaults: ContextualOptions | None = None,
        warehouse_refresh_minutes: float = 60.0,
    ) -> None:
        self.service = service
        self.warehouse_refresh_minutes = warehouse_refresh_minutes
        self.contextual_defaults = contextual_defaults
        self.lookup = service.lookup
        self.store = service.lookup.store
        self.defaults = defaults or MonitoringOptions()

    def options(self, experiment: Experiment) -> MonitoringOptions:
        return monitoring_options(
            experiment.settings,
            self.defaults,
            metrics=[m.key for m in experiment.metrics],
            arms=len(experiment.variants),
        )

    def report(self, *, days: int = DEFAULT_DAYS) -> Report:
        """Every running experiment, checked now."""
        days = check_days(days)
        now = self.lookup.clock()
        running = self.service.list_experiments(ExperimentStatus.RUNNING)
        return build_report(now, days, [self._health(e, days=days, now=now) for e in running])

    def check_experiment(self, experiment: str, *, days: int = DEFAULT_DAYS) -> ExperimentHealth:
        """One experiment (by id or key), checked now, whatever its status."""
        days = check_days(days)
        found = self.lookup.get(experiment)
        return self._health(found, days=days, now=self.lookup.clock())

    # kept reports ------------------------------------------------------------------------------

    def keep(self, report: Report, *, keep: int) -> None:
        """Store the report and delete all but the newest ``keep`` kept reports."""
        content = json.dumps(report_to_dict(report), ensure_ascii=False, allow_nan=False)
        digest = hashlib.sha256(content.encode()).hexdigest()
        store = self.store
        store.put_document(NAMESPACE, _report_key(report), content, digest, report.generated_at)
        kept = [d.key for d in store.list_documents(NAMESPACE) if d.key.startswith(REPORT_PREFIX)]
        for key in kept[: max(0, len(kept) - keep)]:
            store.delete_document(NAMESPACE, key)

    def kept_reports(self) -> list[Report]:
        """The kept reports, newest first."""
        documents = self.store.list_documents(NAMESPACE)
        found = []
        for document in reversed(documents):
            if not document.key.startswith(REPORT_PREFIX):
                continue
            try:
                found.append(report_from_dict(json.loads(document.content)))
            except (ValueError, KeyError, TypeError):
                log.warning("kept monitoring report %s is unreadable; skipped", document.key)
        return found

    # checks ------------------------------------------------------------------------------------

    def _health(self, experiment: Experiment, *, days: int, now: datetime) -> ExperimentHealth:
        try:
            checks = self._checks(experiment, days=days, now=now)
        except (AbpilotError, ArithmeticError, ValueError) as error:
            log.exception("monitoring checks of %s failed", experiment.key)
            reason = error.message if isinstance(error, AbpilotError) else str(error)
            checks = [
                Check(
                    "checks_failed",
                    Status.ALERT,
                    f"The checks could not run: {reason.rstrip('.')}.",
                    {"error": reason},
                    ran=False,
                )
            ]
        return ExperimentHealth(
            experiment.id,
            experiment.key,
            experiment.type.value,
            worst(c.status for c in checks),
            tuple(checks),
        )

    def _checks(self, experiment: Experiment, *, days: int, now: datetime) -> list[Check]:
        options = self.options(experiment)
        if analysed_in_warehouse(experiment.settings):
            stale = self._refresh(experiment, now)
        else:
            stale = self._stale(experiment, options, now)
        if experiment.type is ExperimentType.CONTEXTUAL_BANDIT:
            return [*self._contextual(experiment, options, days=days, now=now), stale]
        if experiment.type not in EVENT_TYPES:
            return [stale]
        analysis = self.service.analyze_experiment(experiment.id)
        checks = [
            srm_check(
                analysis.srm,
                threshold=options.srm_p,
                variants=[v.key for v in analysis.variants],
                periods=analysis.periods if analysis.stratified else 1,
            )
        ]
        if experiment.type is ExperimentType.BANDIT:
            checks.append(self._dominance(experiment, options))
        metrics = self.service.get_metrics(experiment.id)
        if options.min_rate is not None:
            checks.append(
                self._min_rate(experiment, metrics, options.min_rate, options, days=days, now=now)
            )
        checks.append(stale)
        checks.append(_conversions(experiment, metrics))
        # Every guardrail: the metrics' ``"role": "guardrail"`` and those of
        # ``settings.monitoring.guardrails``, folded in by the analysis (``reading.watched``).
        if analysis.guardrails:
            checks.append(guardrail_harm_check(analysis.guardrails, alpha=analysis.alpha))
        if experiment.dimensions:
            breakdowns = [
                self.service.analyze_segments(experiment.id, dimension=d)
                for d in experiment.dimensions
            ]
            checks.append(heterogeneity_check(breakdowns, alpha=analysis.alpha))
        return checks

    def _stale(self, experiment: Experiment, options: MonitoringOptions, now: datetime) -> Check:
        """The latest sign of traffic: counted events, daily intake posts (bandits), decisions
        and feedback (contextual bandits, interleaving)."""
        store = self.store
        seen: list[tuple[datetime, str]] = []
        last_event = store.last_event_at(experiment.id)
        if last_event is not None:
            seen.append((last_event, "events"))
        if experiment.type is ExperimentType.BANDIT:
            raw = store.get_raw_metrics(experiment.id)
            if raw:
                seen.append((max(r.received_at for r in raw), "daily_metrics"))
        if experiment.type not in EVENT_TYPES:
            states = [s.updated_at for s in store.get_bandit_states(experiment.id) if s.updated_at]
            if states:
                seen.append((max(states), "decisions"))
        latest = max(seen, default=None)
        return stale_check(
            last_event_at=None if latest is None else latest[0],
            # The definition changes when the experiment starts or resumes (and on edits of its
            # name or description, which only restart the clock).
            running_since=experiment.updated_at,
            now=now,
            stale_after_hours=options.stale_after_hours,
            source=None if latest is None else latest[1],
        )

    def _refresh(self, experiment: Experiment, now: datetime) -> Check:
        """A warehouse experiment's latest refresh: failed, or stale."""
        refresh = latest_refresh(self.store, experiment.id)
        failure = latest_failure(self.store, experiment.id)
        return refresh_check(
            refreshed_at=None if refresh is None else refresh.refreshed_at,
            failed_at=None if failure is None else failure.failed_at,
            failure=None if failure is None else failure.message,
            running_since=experiment.updated_at,
            now=now,
            refresh_minutes=self.warehouse_refresh_minutes,
        )

    def _dominance(self, experiment: Experiment, options: MonitoringOptions) -> Check:
        period, weights = self.lookup.allocator.weights_in_force(experiment)
        allocation = self.service.get_allocation(experiment.id)
        return arm_dominance_check(
            [v.key for v in experiment.variants],
            weights,
            [a.probability_best for a in allocation.arms],
            period=period,
            max_dominance=options.max_arm_dominance,
        )

    def _min_rate(
        self,
        experiment: Experiment,
        metrics: ExperimentMetrics,
        min_rate: float,
        options: MonitoringOptions,
        *,
        days: int,
        now: datetime,
    ) -> Check:
        """From the daily intake of the last ``days`` days when the bandit has one, else from
        the event counters of the primary metric."""
        metric = experiment.primary_metric.key
        daily = []
        if experiment.type is ExperimentType.BANDIT:
            daily = self.store.get_daily_metrics(experiment.id)
        if daily:
            since = now.date() - timedelta(days=days - 1)
            recent = [r for r in daily if r.day >= since]
            arms = [
                ArmRate(
                    v.key,
                    sum(r.impressions for r in recent if r.variant == v.key),
                    sum(r.clicks for r in recent if r.variant == v.key),
                )
                for v in experiment.variants
            ]
            metric, source = "clicks", f"daily_metrics_last_{days}_days"
        else:
            arms = []
            for variant in metrics.variants:
                summary = variant.metrics[metric]
                arms.append(ArmRate(variant.key, summary.n, summary.conversions))
            source = "events"
        return min_rate_check(
            arms,
            metric=metric,
            min_rate=min_rate,
            min_units=options.min_units,
            source=source,
        )

    def _contextual(
        self, experiment: Experiment, options: MonitoringOptions, *, days: int, now: datetime
    ) -> list[Check]:
        """Arm dominance, success rate and average rating over the decisions of the last
        ``days`` days (what Bandit Selector's daily report judged)."""
        store = self.store
        decisions = store.list_decisions(experiment.id, now - timedelta(days=days))
        arms = [v.key for v in experiment.variants]
        states = store.get_bandit_states(experiment.id)
        contextual = contextual_options(experiment.settings, arms, self.contextual_defaults)
        bandit = [d for d in decisions if d.policy == "bandit"]

        def share(context: str | None) -> SelectionShare:
            here = [d for d in bandit if context is None or d.context_key == context]
            post = posteriors(contextual, arms, states, context or GLOBAL_CONTEXT)
            best = probability_best_exact(list(zip(post.alpha, post.beta, strict=True)))
            return SelectionShare(
                context,
                {a: sum(1 for d in here if d.arm == a) for a in arms},
                dict(zip(arms, best, strict=True)),
            )

        found = [
            selection_dominance_check(
                share(None),
                [share(key) for key in sorted({d.context_key for d in bandit})],
                max_dominance=options.max_arm_dominance,
                min_decisions=options.min_units,
                days=days,
            )
        ]
        if options.min_rate is not None:
            found.append(
                success_rate_check(
                    len(decisions),
                    sum(1 for d in decisions if d.successes > 0),
                    min_rate=options.min_rate,
                    min_decisions=options.min_units,
                    days=days,
                )
            )
        if options.min_avg_rating is not None:
            found.append(
                average_rating_check(
                    _ratings(decisions),
                    min_avg_rating=options.min_avg_rating,
                    min_ratings=options.min_units,
                    days=days,
                )
            )
        return found


def _ratings(decisions: Sequence[Decision]) -> list[float]:
    return [d.rating for d in decisions if d.rating is not None]


def _conversions(experiment: Experiment, metrics: ExperimentMetrics) -> Check:
    """Binary metrics only: a value metric may see several purchases per exposure."""
    counts = []
    for variant in metrics.variants:
        for metric in experiment.metrics:
            if metric.kind is not MetricKind.BINARY:
                continue
            summary = variant.metrics[metric.key]
            event_level = summary.basis in (Basis.EXPOSURES, Basis.NONE)
            counts.append(
                ConversionCount(
                    variant.key,
                    metric.key,
                    summary.conversions,
                    summary.n,
                    "exposures" if event_level else summary.basis.value,
                )
            )
    return conversions_check(counts)


# serialisation ---------------------------------------------------------------------------------


def _report_key(report: Report) -> str:
    """Fixed width, so the store's key order is time order."""
    moment = report.generated_at.astimezone(UTC)
    return f"{REPORT_PREFIX}{moment:%Y-%m-%dT%H:%M:%S.%fZ}"


def _plain(value: Any) -> Any:
    """JSON-ready figures: non-finite floats become None, tuples lists, enums their value."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "generated_at": report.generated_at.astimezone(UTC).isoformat(),
        "days": report.days,
        "status": report.status.value,
        "counts": dict(report.counts),
        "experiments": [
            {
                "id": e.id,
                "key": e.key,
                "type": e.type,
                "status": e.status.value,
                "checks": [
                    {
                        "name": c.name,
                        "status": c.status.value,
                        "message": c.message,
                        "figures": _plain(c.figures),
                        "ran": c.ran,
                    }
                    for c in e.checks
                ],
            }
            for e in report.experiments
        ],
    }


def report_from_dict(raw: Mapping[str, Any]) -> Report:
    experiments = [
        ExperimentHealth(
            id=e["id"],
            key=e["key"],
            type=e["type"],
            status=Status(e["status"]),
            checks=tuple(
                # A report kept before checks said whether they ran: as if they did.
                Check(
                    c["name"], Status(c["status"]), c["message"], c["figures"], c.get("ran", True)
                )
                for c in e["checks"]
            ),
        )
        for e in raw["experiments"]
    ]
    generated_at = datetime.fromisoformat(raw["generated_at"])
    return build_report(generated_at, int(raw["days"]), experiments)
