"""Monitoring on real stores: the checks on real data, ``abpilot monitor`` on a SQLite file, the
webhook against a real HTTP server, and the daily run on one leader with a fake clock."""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from abpilot.cli import app
from abpilot.domain.errors import ValidationError
from abpilot.monitoring.checks import Check, Status
from abpilot.monitoring.options import MonitoringOptions
from abpilot.scheduler import Scheduler
from abpilot.service import EventInput, ExperimentService
from abpilot.service.allocation import DailyInput
from abpilot.service.monitoring import ExperimentHealth, Monitor
from abpilot.service.monitoring_daily import DailyMonitor, post_alert
from abpilot.settings import Settings
from abpilot.stats.srm import sample_ratio_check
from abpilot.store.base import AllocationRecord, Decision, EventKind, FeedbackOutcome, Store
from abpilot.store.factory import open_store
from abpilot.store.memory import MemoryStore
from tests.conftest import StoreFactory

EXPOSURE, CONVERSION = EventKind.EXPOSURE, EventKind.CONVERSION
T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
UNITS = itertools.count()
TWO = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def service_on(store: Store, clock: Clock | None = None) -> ExperimentService:
    return ExperimentService(store, clock=clock or Clock(), cache_seconds=0)


def running(service: ExperimentService, key: str, **options: Any) -> str:
    options.setdefault("variants", TWO)
    service.create_experiment(key=key, **options)
    service.start_experiment(key)
    return key


def expose(
    service: ExperimentService,
    key: str,
    counts: dict[str, int],
    converting: dict[str, int] | None = None,
) -> None:
    """``counts[v]`` new units exposed to variant v, the first ``converting[v]`` converting."""
    events = []
    for variant, n in counts.items():
        for i in range(n):
            unit = f"{key}-{variant}-{next(UNITS)}"
            events.append(EventInput(EXPOSURE, key, unit, variant))
            if i < (converting or {}).get(variant, 0):
                events.append(EventInput(CONVERSION, key, unit))
    service.record_events(events)


def checks(health: ExperimentHealth) -> dict[str, Check]:
    return {c.name: c for c in health.checks}


# the checks on real data ---------------------------------------------------------------------


def test_srm_reuses_the_bandits_per_period_analysis() -> None:
    """Weights moved from 50/50 to 90/10: pooled units look mismatched, per period they fit."""
    service = service_on(MemoryStore())
    key = running(service, "hero", type="bandit")
    exp = service.get_experiment(key)
    expose(service, key, {"a": 200, "b": 200})
    service.store.add_allocation(
        AllocationRecord(exp.id, 0, T0, {"a": 0.9, "b": 0.1}, "exact", None, "events")
    )
    expose(service, key, {"a": 900, "b": 100})
    assert sample_ratio_check([1100, 300], [0.5, 0.5]).flagged  # what a pooled test would say
    srm = checks(Monitor(service).check_experiment(key))["srm"]
    assert srm.status is Status.OK
    assert (srm.figures["method"], srm.figures["periods"]) == ("chi_square_per_period", 2)
    assert srm.figures["p_value"] == service.analyze_experiment(key).srm.p_value


def test_arm_dominance_on_weak_evidence_and_its_override() -> None:
    service = service_on(MemoryStore())
    for key, settings in (("weak", {}), ("allowed", {"monitoring": {"max_arm_dominance": 0.9}})):
        running(service, key, type="bandit", settings=settings)
        exp = service.get_experiment(key)
        service.store.add_allocation(
            AllocationRecord(exp.id, 0, T0, {"a": 0.9, "b": 0.1}, "exact", None, "events")
        )
        expose(service, key, {"a": 150, "b": 150}, {"a": 8, "b": 6})
    weak = checks(Monitor(service).check_experiment("weak"))["arm_dominance"]
    assert weak.status is Status.WARNING
    assert weak.message.startswith("Arm 'a' holds 90.0% of the traffic")
    assert weak.figures["probability_best"] < 0.95
    allowed = checks(Monitor(service).check_experiment("allowed"))["arm_dominance"]
    assert allowed.status is Status.OK


def test_min_rate_from_events_at_the_exact_rate() -> None:
    service = service_on(MemoryStore())
    low = {"monitoring": {"min_rate": 0.05, "min_units": 100}}
    running(service, "low", settings=low)
    expose(service, "low", {"a": 100, "b": 100}, {"a": 4, "b": 4})
    running(service, "edge", settings=low)
    expose(service, "edge", {"a": 100, "b": 100}, {"a": 4, "b": 5})
    assert checks(Monitor(service).check_experiment("low"))["min_rate"].status is Status.WARNING
    assert checks(Monitor(service).check_experiment("edge"))["min_rate"].status is Status.OK
    running(service, "unset")
    assert "min_rate" not in checks(Monitor(service).check_experiment("unset"))
    expose(service, "unset", {"a": 100, "b": 100}, {"a": 4, "b": 5})
    defaults = Settings(monitor_min_rate=0.06).monitoring_defaults()  # MONITOR_MIN_RATE
    assert (
        checks(Monitor(service, defaults=defaults).check_experiment("unset"))["min_rate"].status
        is Status.WARNING
    )
    edge = checks(Monitor(service, defaults=defaults).check_experiment("edge"))["min_rate"]
    assert edge.status is Status.OK  # its settings.monitoring.min_rate (0.05) wins


def test_min_rate_and_staleness_of_a_daily_intake_bandit_use_the_days() -> None:
    clock = Clock()
    service = service_on(MemoryStore(), clock)
    key = running(service, "ads", type="bandit", settings={"monitoring": {"min_rate": 0.02}})
    today = T0.date()
    for ago, clicks in ((10, 90), (2, 5)):  # a good day long ago, a poor one recently
        day = today - timedelta(days=ago)
        rows = [DailyInput(v, 1000, clicks) for v in ("a", "b")]
        service.record_daily_metrics(key, day=day, metrics=rows)
    week = checks(Monitor(service).check_experiment(key, days=7))
    assert week["min_rate"].status is Status.WARNING
    assert week["min_rate"].figures["source"] == "daily_metrics_last_7_days"
    assert checks(Monitor(service).check_experiment(key, days=14))["min_rate"].status is Status.OK
    assert (week["stale"].status, week["stale"].figures["source"]) == (Status.OK, "daily_metrics")
    clock.now += timedelta(hours=25)
    assert checks(Monitor(service).check_experiment(key))["stale"].status is Status.ALERT


def test_stale_after_the_clock_moves_past_the_limit_with_an_override() -> None:
    clock = Clock()
    service = service_on(MemoryStore(), clock)
    running(service, "default")
    running(service, "patient", settings={"monitoring": {"stale_after_hours": 48}})
    for key in ("default", "patient"):
        expose(service, key, {"a": 20, "b": 20})
    monitor = Monitor(service)
    clock.now = T0 + timedelta(hours=24)
    assert checks(monitor.check_experiment("default"))["stale"].status is Status.OK
    clock.now = T0 + timedelta(hours=24, seconds=1)
    stale = checks(monitor.check_experiment("default"))["stale"]
    assert stale.status is Status.ALERT
    assert stale.message.startswith("No event for 24.0 hours")
    assert checks(monitor.check_experiment("patient"))["stale"].status is Status.OK
    twelve = Monitor(service, defaults=Settings(monitor_stale_after_hours=12).monitoring_defaults())
    clock.now = T0 + timedelta(hours=13)
    assert checks(twelve.check_experiment("default"))["stale"].status is Status.ALERT
    assert checks(twelve.check_experiment("patient"))["stale"].status is Status.OK


def test_stale_counts_from_a_resumption() -> None:
    clock = Clock()
    service = service_on(MemoryStore(), clock)
    running(service, "paused")
    expose(service, "paused", {"a": 20, "b": 20})
    service.pause_experiment("paused")
    clock.now += timedelta(days=3)
    service.resume_experiment("paused")
    clock.now += timedelta(hours=23)
    assert checks(Monitor(service).check_experiment("paused"))["stale"].status is Status.OK
    clock.now += timedelta(hours=2)
    stale = checks(Monitor(service).check_experiment("paused"))["stale"]
    assert stale.status is Status.ALERT
    assert stale.message.startswith("No event has arrived since the experiment started running")


def test_stale_contextual_bandit_reads_its_decisions() -> None:
    clock = Clock()
    service = service_on(MemoryStore(), clock)
    running(
        service,
        "recs",
        type="contextual_bandit",
        settings={"contextual": {"attributes": {"user_type": ["new", "returning"]}}},
    )
    service.contextual.decide("recs", unit_id="u1", context={"user_type": "new"})
    found = checks(Monitor(service).check_experiment("recs"))
    assert list(found) == ["arm_dominance", "stale"]  # min_rate, min_avg_rating: none set
    assert (found["stale"].status, found["stale"].figures["source"]) == (Status.OK, "decisions")
    clock.now += timedelta(hours=30)
    assert checks(Monitor(service).check_experiment("recs"))["stale"].status is Status.ALERT


ALGORITHMS = ["svd", "embeddings", "graph"]
EVENING, NIGHT = "time_of_day=evening", "time_of_day=night"


def recommender(service: ExperimentService, **monitoring: Any) -> str:
    """A contextual bandit over three algorithms, as Bandit Selector runs one."""
    contextual = {
        "attributes": {"time_of_day": ["evening", "night"]},
        "holdout": 0.1,
        "control": {"arm": "svd"},
    }
    return running(
        service,
        "recs",
        type="contextual_bandit",
        variants=[{"key": a, "weight": 1 / 3} for a in ALGORITHMS],
        metrics=[],
        settings={"contextual": contextual, "monitoring": monitoring},
    )


def log_decisions(
    service: ExperimentService,
    counts: dict[str, int],
    *,
    context: str = EVENING,
    policy: str = "bandit",
    at: datetime = T0,
    successes: int = 0,
) -> None:
    """``counts[arm]`` decisions of ``policy`` in ``context``, the first ``successes`` of each
    arm clicked (stored as the service logs them: the arms are chosen here, not drawn)."""
    exp = service.get_experiment("recs").id
    for arm, n in counts.items():
        for i in range(n):
            unit = f"u{next(UNITS)}"
            decision = Decision(
                unit, exp, unit, context, dict([context.split("=")]), arm, 0.5, policy, "exact", at
            )
            service.store.record_decision(decision)
            if i < successes:
                service.store.apply_feedback(exp, unit, "click", FeedbackOutcome.SUCCESS, at)


def test_contextual_arm_dominance_overall_the_reported_case() -> None:
    """An arm at 77.5% of the bandit's selections with max_arm_dominance 0.70 was reported
    `ok` (contextual bandits got only the staleness check)."""
    service = service_on(MemoryStore())
    recommender(service, max_arm_dominance=0.70)
    log_decisions(service, {"svd": 155, "embeddings": 25, "graph": 20})
    log_decisions(service, {"svd": 155, "embeddings": 25, "graph": 20}, context=NIGHT)
    log_decisions(service, {"svd": 0, "embeddings": 300}, policy="control")  # not the bandit's
    check = checks(Monitor(service).check_experiment("recs"))["arm_dominance"]
    assert check.status is Status.WARNING
    assert "overall 'svd' got 77.5% of 400 decisions" in check.message
    overall = check.figures["overall"]
    assert (overall["decisions"], overall["arm"], overall["share"]) == (400, "svd", 0.775)
    assert overall["probability_best"] < 0.95  # no feedback: no evidence at all
    assert [c["context_key"] for c in check.figures["contexts"]] == [EVENING, NIGHT]


def test_contextual_arm_dominance_per_context_and_with_evidence() -> None:
    service = service_on(MemoryStore())
    recommender(service)  # the default 0.70
    log_decisions(service, {"svd": 10, "embeddings": 90, "graph": 0}, context=EVENING)
    log_decisions(service, {"svd": 10, "embeddings": 0, "graph": 90}, context=NIGHT)
    check = checks(Monitor(service).check_experiment("recs"))["arm_dominance"]
    assert check.status is Status.WARNING  # balanced overall (45%), dominated in each context
    assert check.figures["overall"]["dominant"] is False
    assert [c["dominant"] for c in check.figures["contexts"]] == [True, True]

    # Evening's 'embeddings' earns its 90%: 60 of 90 clicked, none of the others' 5 each.
    strong = service_on(MemoryStore())
    recommender(strong)
    log_decisions(strong, {"svd": 5, "graph": 5}, context=EVENING)
    log_decisions(strong, {"embeddings": 90}, context=EVENING, successes=60)
    check = checks(Monitor(strong).check_experiment("recs"))["arm_dominance"]
    (evening,) = check.figures["contexts"]
    assert evening["probability_best"] >= 0.95
    assert check.status is Status.OK


def rated_recommender(**monitoring: Any) -> ExperimentService:
    """100 decisions this week: 10 rated (four 4.0, six 3.0: mean 3.4), 9 with a success (the
    four good ratings and five clicks: 9%); 100 older ones, all clicked, outside the week."""
    service = service_on(MemoryStore())
    recommender(service, **monitoring)
    log_decisions(service, {"svd": 50, "embeddings": 50}, at=T0 - timedelta(days=8), successes=50)
    context = {"time_of_day": "evening"}
    decided = [
        service.contextual.decide("recs", unit_id=f"r{i}", context=context) for i in range(100)
    ]
    for n in range(10):
        value = 4.0 if n < 4 else 3.0
        service.contextual.feedback("recs", unit_id=f"r{n}", event="rating", value=value)
    for decision in decided[10:15]:
        service.contextual.feedback("recs", decision_id=decision.decision_id, event="click")
    stored = service.store.get_decision(decided[0].experiment_id, decided[0].decision_id)
    assert stored is not None
    assert stored.rating == 4.0
    return service


def test_contextual_success_rate_and_average_rating_over_the_days() -> None:
    """Bandit Selector's min_ctr 0.10 and min_avg_rating 3.5: service-wide (MONITOR_MIN_RATE,
    MONITOR_MIN_AVG_RATING) or per experiment; the ratings are those of rating feedback."""
    service = rated_recommender(min_units=10)
    assert set(checks(Monitor(service).check_experiment("recs"))) == {"arm_dominance", "stale"}
    defaults = Settings(monitor_min_rate=0.10, monitor_min_avg_rating=3.5).monitoring_defaults()
    found = checks(Monitor(service, defaults=defaults).check_experiment("recs"))
    assert list(found) == ["arm_dominance", "min_rate", "min_avg_rating", "stale"]
    rate, rating = found["min_rate"], found["min_avg_rating"]
    assert (rate.status, rate.figures["decisions"], rate.figures["successes"]) == (
        Status.WARNING,
        100,
        9,
    )
    assert rate.message.startswith("Only 9.0% of the 100 decisions in the last 7 days")
    assert (rating.status, rating.figures["ratings"]) == (Status.WARNING, 10)
    assert rating.figures["avg_rating"] == pytest.approx(3.4)
    assert Monitor(service, defaults=defaults).report().status is Status.WARNING

    # The experiment's own thresholds win over the service-wide ones; exactly at them is fine.
    lenient = rated_recommender(min_units=10, min_rate=0.09, min_avg_rating=3.4)
    found = checks(Monitor(lenient, defaults=defaults).check_experiment("recs"))
    assert (found["min_rate"].status, found["min_avg_rating"].status) == (Status.OK, Status.OK)


def test_event_level_conversions_above_exposures() -> None:
    service = service_on(MemoryStore())
    key = running(service, "pilot")
    events = [EventInput(EXPOSURE, key, variant=v) for v in ("a", "b") for _ in range(10)]
    events += [EventInput(CONVERSION, key, variant="a") for _ in range(10)]
    events += [EventInput(CONVERSION, key, variant="b") for _ in range(11)]
    service.record_events(events)
    check = checks(Monitor(service).check_experiment(key))["conversions_exceed_exposures"]
    assert check.status is Status.ALERT
    assert "'b' has 11 conversions of 'conversion' for 10 exposures" in check.message
    assert [e["variant"] for e in check.figures["exceeded"]] == ["b"]


def guarded(service: ExperimentService, key: str, settings: dict[str, Any]) -> str:
    """An experiment whose variant 'b' raises the errors (60 of 500 units against 10 of 500)
    and leaves the conversions alone."""
    metrics = [{"key": "conversion"}, {"key": "errors"}]
    running(service, key, metrics=metrics, settings=settings)
    events = []
    for variant, errors in (("a", 10), ("b", 60)):
        for i in range(500):
            unit = f"{variant}-{i}"
            events.append(EventInput(EXPOSURE, key, unit, variant))
            if i < 50:
                events.append(EventInput(CONVERSION, key, unit, metric="conversion"))
            if i < errors:
                events.append(EventInput(CONVERSION, key, unit, metric="errors"))
    service.record_events(events)
    return key


def test_guardrails_of_the_older_setting_are_watched_for_harm() -> None:
    """``settings.monitoring.guardrails`` folds into the guardrails: each metric listed is
    watched with margin 0 in its harmful direction by the always-valid test (the mSPRT of the
    difference of rates, closed form below), monitoring's ``guardrail_harm`` alerts on it, and
    the decision is the one the experiment has without the setting."""
    service = service_on(MemoryStore())
    tau = 0.05
    legacy = {"errors": "increase", "conversion": "decrease"}
    key = guarded(
        service, "checkout", {"analysis": {"tau": tau}, "monitoring": {"guardrails": legacy}}
    )
    plain = guarded(service, "plain", {"analysis": {"tau": tau}})
    analysis = service.analyze_experiment(key)
    watched = {(c.metric, c.variant): c for c in analysis.guardrails}
    assert set(watched) == {("errors", "b"), ("conversion", "b")}
    errors = watched[("errors", "b")]
    assert (errors.decides, errors.margin, errors.higher_is_better) == (False, 0.0, False)
    p_a, p_b = 10 / 500, 60 / 500
    d, v = p_b - p_a, p_a * (1 - p_a) / 500 + p_b * (1 - p_b) / 500
    log_lambda = 0.5 * math.log(v / (v + tau**2)) + tau**2 * d**2 / (2 * v * (v + tau**2))
    assert errors.estimate == pytest.approx(d)
    assert errors.harm_p_value == pytest.approx(min(1.0, math.exp(-log_lambda)), rel=1e-9)
    assert errors.harm_detected
    assert errors.harmful
    assert not watched[("conversion", "b")].harm_detected
    assert analysis.decision == service.analyze_experiment(plain).decision

    check = checks(Monitor(service).check_experiment(key))["guardrail_harm"]
    assert check.status is Status.ALERT
    assert "'b' harms 'errors'" in check.message
    assert "'conversion'" not in check.message
    harmful = {(c["metric"], c["harm_detected"]) for c in check.figures["comparisons"]}
    assert harmful == {("errors", True), ("conversion", False)}
    assert "guardrail" not in checks(Monitor(service).check_experiment(key))  # one notion


def test_a_metric_role_wins_over_the_older_setting() -> None:
    service = service_on(MemoryStore())
    metrics = [
        {"key": "conversion"},
        {"key": "errors", "role": "guardrail", "margin": 0.2, "higher_is_better": False},
    ]
    settings = {"monitoring": {"guardrails": {"errors": "decrease"}}}
    key = running(service, "both", metrics=metrics, settings=settings)
    expose(service, key, {"a": 50, "b": 50})
    (check,) = service.analyze_experiment(key).guardrails
    assert (check.metric, check.margin, check.higher_is_better, check.decides) == (
        "errors",
        0.2,
        False,
        True,
    )


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"monitoring": {"max_arm_dominance": 2}}, "settings.monitoring.max_arm_dominance"),
        ({"monitoring": {"stale_after_hours": -1}}, "settings.monitoring.stale_after_hours"),
        ({"monitoring": {"guardrails": ["revenue"]}}, "settings.monitoring.guardrails[0]"),
        ({"monitoring": {"typo": 1}}, "settings.monitoring.typo"),
    ],
)
def test_bad_monitoring_settings_are_refused_at_creation(
    settings: dict[str, Any], field: str
) -> None:
    service = service_on(MemoryStore())
    with pytest.raises(ValidationError) as caught:
        service.create_experiment(key="x", variants=TWO, settings=settings)
    assert caught.value.field == field
    assert service.list_experiments() == []


def test_bad_global_settings_are_refused() -> None:
    from pydantic import ValidationError as SettingsError

    for bad in (
        {"monitor_at": "9:00"},
        {"monitor_at": "24:00"},
        {"monitor_max_arm_dominance": 0},
        {"monitor_min_rate": 1},
        {"monitor_keep": 0},
        {"monitor_webhook_url": "hooks.example.com/x"},
    ):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings(**bad)


def test_days_are_checked() -> None:
    with pytest.raises(ValidationError) as caught:
        Monitor(service_on(MemoryStore())).report(days=0)
    assert caught.value.field == "days"


# the CLI on a SQLite file --------------------------------------------------------------------


def test_monitor_command_shows_the_healthy_and_the_broken(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    store = open_store(url)
    now = datetime.now(UTC)
    past = service_on(store, Clock(now - timedelta(hours=30)))  # its last events: 30 h ago
    running(past, "broken")
    expose(past, "broken", {"a": 450, "b": 50})  # sample ratio mismatch, then silence
    present = ExperimentService(store)
    running(present, "healthy")
    units = [f"user-{i}" for i in range(1000)]
    events = [EventInput(EXPOSURE, "healthy", u) for u in units]
    events += [EventInput(CONVERSION, "healthy", u) for u in units[::10]]
    present.record_events(events)
    store.close()

    report_file = tmp_path / "report.json"
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", "--store-url", url, "--output", str(report_file)])
    assert result.exit_code == 1, result.output
    for text in ("broken", "healthy", "alert", "srm:", "stale:", "every check ok"):
        assert text in result.output
    body = json.loads(report_file.read_text())
    assert (body["status"], body["counts"], body["days"]) == (
        "alert",
        {"ok": 1, "warning": 0, "alert": 1},
        7,
    )
    by_key = {e["key"]: e for e in body["experiments"]}
    assert by_key["healthy"]["status"] == "ok"
    assert {c["status"] for c in by_key["healthy"]["checks"]} == {"ok"}
    reasons = {c["name"]: c["message"] for c in by_key["broken"]["checks"] if c["status"] != "ok"}
    assert set(reasons) == {"srm", "stale"}
    assert reasons["srm"].startswith("Sample ratio mismatch: units split 450/50")
    assert reasons["stale"].startswith("No event for 30.0 hours")

    fixed = open_store(url)
    ExperimentService(fixed).end_experiment("broken", winner="a", override=True)
    fixed.close()
    result = runner.invoke(app, ["monitor", "--store-url", url, "--days", "3"])
    assert result.exit_code == 0, result.output
    refused = runner.invoke(app, ["monitor", "--store-url", url, "--days", "0"])
    assert refused.exit_code == 2
    assert "days must be" in refused.output


# the webhook against a real HTTP server ------------------------------------------------------


class Hook(ThreadingHTTPServer):
    """Answers ``failures`` POSTs with 503, then accepts (204) and keeps the JSON received."""

    def __init__(self, failures: int) -> None:
        self.failures, self.attempts = failures, 0
        self.received: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _HookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/abc-secret"


class _HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.attempts += 1
        if self.server.attempts <= self.server.failures:
            self.send_response(503)
        else:
            self.server.received.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook(request: pytest.FixtureRequest) -> Iterator[Hook]:
    server = Hook(failures=getattr(request, "param", 1))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_post_alert_retries_then_delivers_once(hook: Hook) -> None:
    assert post_alert(hook.url, {"text": "hi"}, backoff_seconds=0.01)
    assert (hook.attempts, hook.received) == (2, [{"text": "hi"}])


@pytest.mark.parametrize("hook", [5], indirect=True)
def test_post_alert_gives_up_after_three_attempts_without_raising(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []
    with caplog.at_level(logging.WARNING, logger="abpilot.monitoring"):
        assert not post_alert(hook.url, {"text": "hi"}, backoff_seconds=0.5, sleep=waits.append)
    assert (hook.attempts, hook.received, waits) == (3, [], [0.5, 1.0])
    assert "failed after 3 attempts (HTTP 503)" in caplog.text
    assert "abc-secret" not in caplog.text  # the URL's token is not logged


def test_post_alert_to_nowhere_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="abpilot.monitoring"):
        assert not post_alert("http://127.0.0.1:9/", {}, attempts=2, sleep=lambda s: None)
    assert "failed after 2 attempts" in caplog.text


# the daily run: once a day, on the leader only -----------------------------------------------


def daily_pair(
    store_factory: StoreFactory, clock: Clock, **options: Any
) -> list[tuple[Scheduler, DailyMonitor]]:
    """Two service instances on one store, as two workers would run them."""
    pair = []
    for _ in range(2):
        daily = DailyMonitor(Monitor(service_on(store_factory(), clock)), **options)
        scheduler = Scheduler(
            daily.monitor.service.store,
            daily.run_if_due,
            name="monitor",
            interval_seconds=0,
            tick_seconds=0.05,
        )
        pair.append((scheduler, daily))
    return pair


def step_at(pair: list[tuple[Scheduler, DailyMonitor]], clock: Clock, moment: datetime) -> int:
    """Both instances tick a few times at ``moment``; how many runs that made."""
    clock.now = moment
    before = sum(d.runs for _, d in pair)
    for _ in range(3):
        for scheduler, _daily in pair:
            scheduler.step()
    return sum(d.runs for _, d in pair) - before


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


@pytest.mark.parametrize("store_factory", ["memory", "sqlite"], indirect=True)
def test_daily_run_once_a_day_on_the_leader(store_factory: StoreFactory, hook: Hook) -> None:
    clock = Clock(at(T0.date(), 8))
    pair = daily_pair(store_factory, clock, keep=2, webhook_url=hook.url, backoff_seconds=0.01)
    service = pair[0][1].monitor.service
    running(service, "quiet")
    day = T0.date()
    assert step_at(pair, clock, at(day, 8, 59)) == 0
    assert step_at(pair, clock, at(day, 9, 0)) == 1
    assert step_at(pair, clock, at(day, 15)) == 0
    leader, follower = pair if pair[0][0].is_leader else pair[::-1]
    assert (leader[1].runs, follower[1].runs) == (1, 0)
    assert hook.attempts == 0  # every check ok: nothing posted

    # The next day "quiet" has had no event for 28 hours: an alert, posted once after a retry.
    assert step_at(pair, clock, at(day + timedelta(days=1), 12, 1)) == 1
    assert (hook.attempts, len(hook.received)) == (2, 1)
    posted = hook.received[0]
    assert posted["text"] == "abpilot monitoring: 1 experiment(s) in alert: quiet (stale)"
    alerts = [c for c in posted["report"]["experiments"][0]["checks"] if c["status"] == "alert"]
    assert [c["name"] for c in alerts] == ["stale"]

    # The leader goes away; the other instance takes over but does not repeat today's run.
    leader[0].stop()
    assert step_at([follower], clock, at(day + timedelta(days=1), 23)) == 0
    assert follower[0].is_leader
    assert step_at([follower], clock, at(day + timedelta(days=2), 9)) == 1
    kept = follower[1].monitor.kept_reports()
    assert [r.generated_at for r in kept] == [
        at(day + timedelta(days=2), 9),
        at(day + timedelta(days=1), 12, 1),
    ]  # newest first, only MONITOR_KEEP = 2 kept
    assert hook.attempts == 3  # the third day's alert went through at once
    follower[0].stop()


def test_daily_monitoring_is_wired_in_the_app() -> None:
    from fastapi.testclient import TestClient

    from abpilot.api import create_app

    settings = Settings(store="memory", monitor_at="07:30", monitor_keep=5)
    with TestClient(create_app(settings)) as client:
        daily = client.app.state.monitoring  # type: ignore[attr-defined]
        assert isinstance(daily, DailyMonitor)
        assert (daily.at.hour, daily.at.minute, daily.keep) == (7, 30, 5)
        assert daily.monitor.defaults == MonitoringOptions()
