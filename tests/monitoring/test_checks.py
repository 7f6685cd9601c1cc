"""The pure health checks at their exact thresholds, and the settings that set them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from abpilot.domain.errors import ValidationError
from abpilot.monitoring.checks import (
    ArmRate,
    ConversionCount,
    SelectionShare,
    Status,
    arm_dominance_check,
    average_rating_check,
    conversions_check,
    min_rate_check,
    selection_dominance_check,
    srm_check,
    stale_check,
    success_rate_check,
    worst,
)
from abpilot.monitoring.options import Guardrail, Harm, MonitoringOptions, monitoring_options
from abpilot.stats.srm import SrmCheck

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def srm(p_value: float | None) -> SrmCheck:
    return SrmCheck(p_value, False, (500.0, 500.0), (520, 480))


def test_worst_status() -> None:
    assert worst([]) is Status.OK
    assert worst([Status.OK, Status.WARNING]) is Status.WARNING
    assert worst([Status.ALERT, Status.WARNING, Status.OK]) is Status.ALERT


class TestSrm:
    def test_p_exactly_at_the_threshold_is_no_mismatch(self) -> None:
        assert srm_check(srm(0.001), threshold=0.001, variants=["a", "b"]).status is Status.OK

    def test_below_the_threshold_is_an_alert_with_the_split(self) -> None:
        check = srm_check(srm(0.000999), threshold=0.001, variants=["a", "b"])
        assert check.status is Status.ALERT
        assert check.message.startswith("Sample ratio mismatch: units split 520/480")
        assert check.figures["observed"] == {"a": 520, "b": 480}

    def test_per_experiment_threshold(self) -> None:
        assert srm_check(srm(0.009), threshold=0.01, variants=["a", "b"]).status is Status.ALERT

    def test_too_few_units_is_not_judged(self) -> None:
        check = srm_check(
            SrmCheck(None, False, (4.0, 4.0), (7, 1), "insufficient_data"),
            threshold=0.001,
            variants=["a", "b"],
        )
        assert check.status is Status.OK
        assert "Too few units" in check.message

    def test_periods_are_named(self) -> None:
        check = srm_check(srm(1e-9), threshold=0.001, variants=["a", "b"], periods=3)
        assert "within 3 periods" in check.message
        assert check.figures["method"] == "chi_square_per_period"


class TestArmDominance:
    def check(self, weight: float, best: float | None, period: int = 2) -> Status:
        return arm_dominance_check(
            ["a", "b"], [weight, 1 - weight], [best, None], period=period, max_dominance=0.7
        ).status

    def test_exactly_at_the_limit_is_not_dominance(self) -> None:
        assert self.check(0.70, 0.5) is Status.OK

    def test_above_the_limit_on_weak_evidence_warns(self) -> None:
        assert self.check(0.7001, 0.9499) is Status.WARNING
        assert self.check(0.9, None) is Status.WARNING  # evidence unknown counts as weak

    def test_strong_evidence_at_exactly_095_is_fine(self) -> None:
        assert self.check(0.9, 0.95) is Status.OK

    def test_configured_weights_are_not_judged(self) -> None:
        assert self.check(0.9, 0.5, period=0) is Status.OK

    def test_the_sentence_names_the_arm_and_figures(self) -> None:
        check = arm_dominance_check(
            ["a", "b", "c"], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], period=1, max_dominance=0.7
        )
        assert check.message.startswith("Arm 'b' holds 80.0% of the traffic (above 70.0%)")
        assert "probability of being best is 60.0%" in check.message
        assert check.figures["arm"] == "b"


def share(context: str | None, counts: dict[str, int], best: float = 0.5) -> SelectionShare:
    """Selections per arm; the most chosen arm's probability of being best is ``best``."""
    top = max(counts, key=lambda arm: counts[arm])
    rest = (1 - best) / max(len(counts) - 1, 1)
    return SelectionShare(context, counts, {a: best if a == top else rest for a in counts})


class TestContextualDominance:
    def check(self, overall: SelectionShare, *contexts: SelectionShare) -> Any:
        return selection_dominance_check(
            overall, contexts, max_dominance=0.7, min_decisions=100, days=7
        )

    def test_the_reported_case_77_5_percent_warns(self) -> None:
        """An arm at 77.5% of selections with max_arm_dominance 0.70 was reported ok."""
        check = self.check(share(None, {"svd": 310, "graph": 50, "item_cf": 40}, best=0.6))
        assert check.status is Status.WARNING
        assert "overall 'svd' got 77.5% of 400 decisions" in check.message
        assert check.figures["overall"]["dominant"] is True
        assert check.figures["overall"]["share"] == 0.775

    def test_exactly_at_the_limit_and_strong_evidence_are_fine(self) -> None:
        assert self.check(share(None, {"a": 70, "b": 30})).status is Status.OK
        assert self.check(share(None, {"a": 71, "b": 29}, best=0.95)).status is Status.OK
        assert self.check(share(None, {"a": 71, "b": 29}, best=0.9499)).status is Status.WARNING

    def test_each_context_is_judged_once_it_has_enough_decisions(self) -> None:
        overall = share(None, {"a": 150, "b": 150})
        evening = share("time_of_day=evening", {"a": 10, "b": 90})  # 90%, but 100 decisions
        night = share("time_of_day=night", {"a": 99, "b": 0})  # 100%, 99 decisions: not yet
        check = self.check(overall, evening, night)
        assert check.status is Status.WARNING
        assert "in context time_of_day=evening 'b' got 90.0% of 100 decisions" in check.message
        assert "night" not in check.message
        assert [c["judged"] for c in check.figures["contexts"]] == [True, False]
        quiet = self.check(overall, share("time_of_day=night", {"a": 99, "b": 0}))
        assert quiet.status is Status.OK
        assert "in the 0 contexts with 100 decisions or more" in quiet.message

    def test_too_few_decisions_are_not_judged(self) -> None:
        check = self.check(share(None, {"a": 99, "b": 0}))
        assert check.status is Status.OK
        assert check.message.startswith("Too few bandit decisions")
        empty = self.check(SelectionShare(None, {"a": 0, "b": 0}, {"a": 0.5, "b": 0.5}))
        assert empty.status is Status.OK
        assert empty.figures["overall"]["share"] is None


class TestContextualRates:
    def test_success_rate_exactly_at_the_minimum_is_fine(self) -> None:
        def status(successes: int, decisions: int = 200) -> Status:
            return success_rate_check(
                decisions, successes, min_rate=0.10, min_decisions=100, days=7
            ).status

        assert status(20) is Status.OK
        assert status(19) is Status.WARNING
        assert status(0, decisions=99) is Status.OK  # too few to judge

    def test_average_rating_exactly_at_the_minimum_is_fine(self) -> None:
        def check(ratings: list[float]) -> Any:
            return average_rating_check(ratings, min_avg_rating=3.5, min_ratings=4, days=7)

        assert check([3.0, 4.0, 3.0, 4.0]).status is Status.OK
        low = check([3.0, 4.0, 3.0, 3.5])
        assert low.status is Status.WARNING
        assert low.message.startswith("The 4 ratings in the last 7 days average 3.38, below 3.5")
        assert low.figures["avg_rating"] == 3.375
        assert check([1.0, 1.0, 1.0]).status is Status.OK  # 3 ratings: too few
        assert check([]).figures["avg_rating"] is None


class TestMinRate:
    def check(self, *arms: tuple[int, int]) -> Status:
        rates = [ArmRate(f"v{i}", n, c) for i, (n, c) in enumerate(arms)]
        return min_rate_check(
            rates, metric="conversion", min_rate=0.05, min_units=100, source="events"
        ).status

    def test_every_arm_below_warns(self) -> None:
        assert self.check((100, 4), (200, 9)) is Status.WARNING

    def test_one_arm_exactly_at_the_rate_is_fine(self) -> None:
        assert self.check((100, 4), (200, 10)) is Status.OK

    def test_exactly_min_units_is_judged_one_less_is_not(self) -> None:
        assert self.check((100, 0), (100, 0)) is Status.WARNING
        assert self.check((99, 0), (100, 0)) is Status.OK


class TestStale:
    def check(self, last: datetime | None, now: datetime, since: datetime = T0) -> Status:
        return stale_check(
            last_event_at=last, running_since=since, now=now, stale_after_hours=24, source="events"
        ).status

    def test_exactly_the_limit_is_not_stale(self) -> None:
        assert self.check(T0, T0 + timedelta(hours=24)) is Status.OK

    def test_beyond_the_limit_alerts(self) -> None:
        now = T0 + timedelta(hours=24, microseconds=1)
        check = stale_check(
            last_event_at=T0, running_since=T0, now=now, stale_after_hours=24, source="events"
        )
        assert check.status is Status.ALERT
        assert "the last arrived at 2026-03-01 09:00 UTC" in check.message

    def test_no_event_ever_counts_from_the_start(self) -> None:
        assert self.check(None, T0 + timedelta(hours=23)) is Status.OK
        assert self.check(None, T0 + timedelta(hours=25)) is Status.ALERT

    def test_resumed_after_a_pause_counts_from_the_resumption(self) -> None:
        resumed = T0 + timedelta(days=3)
        assert self.check(T0, resumed + timedelta(hours=23), since=resumed) is Status.OK
        check = stale_check(
            last_event_at=T0,
            running_since=resumed,
            now=resumed + timedelta(hours=25),
            stale_after_hours=24,
            source="events",
        )
        assert check.status is Status.ALERT
        assert check.message.startswith("No event has arrived since the experiment started")


class TestConversions:
    def test_equal_is_fine_one_more_alerts(self) -> None:
        equal = ConversionCount("a", "conversion", 10, 10, "exposures")
        assert conversions_check([equal]).status is Status.OK
        over = ConversionCount("b", "conversion", 11, 10, "exposures")
        check = conversions_check([equal, over])
        assert check.status is Status.ALERT
        assert "'b' has 11 conversions of 'conversion' for 10 exposures" in check.message
        assert [e["variant"] for e in check.figures["exceeded"]] == ["b"]


class TestOptions:
    METRICS = ("conversion", "revenue", "errors")

    def parse(self, section: Any, *, arms: int = 2) -> MonitoringOptions:
        return monitoring_options({"monitoring": section}, metrics=self.METRICS, arms=arms)

    def test_bandit_selector_thresholds(self) -> None:
        """Bandit Selector's max_algorithm_dominance, min_ctr and min_avg_rating."""
        found = self.parse({"max_arm_dominance": 0.70, "min_rate": 0.10, "min_avg_rating": 3.5})
        assert (found.max_arm_dominance, found.min_rate, found.min_avg_rating) == (0.7, 0.1, 3.5)
        assert self.parse({"min_avg_rating": None}).min_avg_rating is None

    def test_defaults_and_overrides(self) -> None:
        defaults = MonitoringOptions(stale_after_hours=12, min_rate=0.01)
        assert monitoring_options({}, defaults) == defaults
        found = monitoring_options(
            {"monitoring": {"stale_after_hours": 48, "min_rate": None}}, defaults
        )
        assert (found.stale_after_hours, found.min_rate) == (48.0, None)

    def test_guardrails_as_a_list_or_with_directions(self) -> None:
        assert self.parse({"guardrails": ["revenue"]}).guardrails == (
            Guardrail("revenue", Harm.DECREASE),
        )
        found = self.parse({"guardrails": {"errors": "increase", "revenue": "decrease"}})
        assert found.guardrails == (
            Guardrail("errors", Harm.INCREASE),
            Guardrail("revenue", Harm.DECREASE),
        )

    @pytest.mark.parametrize(
        ("section", "field"),
        [
            ({"bogus": 1}, "settings.monitoring.bogus"),
            ({"srm_p": 1}, "settings.monitoring.srm_p"),
            ({"srm_p": True}, "settings.monitoring.srm_p"),
            ({"max_arm_dominance": 1.5}, "settings.monitoring.max_arm_dominance"),
            ({"max_arm_dominance": 0.49}, "settings.monitoring.max_arm_dominance"),
            ({"min_rate": 0}, "settings.monitoring.min_rate"),
            ({"min_rate": "5%"}, "settings.monitoring.min_rate"),
            ({"min_units": 0}, "settings.monitoring.min_units"),
            ({"min_avg_rating": "3.5"}, "settings.monitoring.min_avg_rating"),
            ({"min_avg_rating": float("nan")}, "settings.monitoring.min_avg_rating"),
            ({"stale_after_hours": 0}, "settings.monitoring.stale_after_hours"),
            ({"stale_after_hours": float("inf")}, "settings.monitoring.stale_after_hours"),
            ({"guardrails": "revenue"}, "settings.monitoring.guardrails"),
            ({"guardrails": ["nope"]}, "settings.monitoring.guardrails[0]"),
            ({"guardrails": ["revenue", "revenue"]}, "settings.monitoring.guardrails[1]"),
            ({"guardrails": {"errors": "up"}}, "settings.monitoring.guardrails.errors"),
        ],
    )
    def test_bad_values_are_refused_naming_the_field(self, section: Any, field: str) -> None:
        with pytest.raises(ValidationError) as caught:
            self.parse(section)
        assert caught.value.field == field
        assert "settings.monitoring" in caught.value.message

    def test_dominance_limit_depends_on_the_arms(self) -> None:
        assert self.parse({"max_arm_dominance": 0.34}, arms=3).max_arm_dominance == 0.34
        with pytest.raises(ValidationError, match="at least 1/3"):
            self.parse({"max_arm_dominance": 0.33}, arms=3)

    def test_section_must_be_an_object(self) -> None:
        with pytest.raises(ValidationError) as caught:
            self.parse([1])
        assert caught.value.field == "settings.monitoring"
