"""The decision from the primary metric's verdict, the guardrails, SRM and the plan."""

from __future__ import annotations

import pytest

from abpilot.stats.analysis import Arm, MetricInput, analyse
from abpilot.stats.decision import Action, Code, decide
from abpilot.stats.guardrails import GuardrailCheck
from abpilot.stats.options import AnalysisOptions
from abpilot.stats.srm import SrmCheck

FINE = SrmCheck(0.5, False, (100, 100), (100.0, 100.0), None)
BROKEN = SrmCheck(1e-6, True, (150, 50), (100.0, 100.0), None)


def guard(variant: str, *, ruled_out: bool, detected: bool = False) -> GuardrailCheck:
    return GuardrailCheck(
        "latency", variant, False, 0.05, True, 0.01, 0.02, 0.01, ruled_out, 0.5, detected, "z"
    )


def decision(**given: object) -> tuple[Action, str | None, list[Code]]:
    fields: dict[str, object] = {
        "reason": "winner_found",
        "message": "green beats the control",
        "winner": "green",
        "losers": (),
        "srm": FINE,
        "progress": 1.2,
        "guardrails": (),
    }
    found = decide(**{**fields, **given})  # type: ignore[arg-type]
    return found.action, found.variant, [r.code for r in found.reasons]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, (Action.SHIP, "green", [Code.PRIMARY_WINNER])),
        (
            {"guardrails": (guard("green", ruled_out=True),)},
            (Action.SHIP, "green", [Code.PRIMARY_WINNER, Code.GUARDRAILS_SAFE]),
        ),
        (
            {"guardrails": (guard("green", ruled_out=False),)},
            (Action.CONTINUE, "green", [Code.PRIMARY_WINNER, Code.GUARDRAIL_UNCLEAR]),
        ),
        (
            {"guardrails": (guard("green", ruled_out=False, detected=True),)},
            (Action.ROLLBACK, "green", [Code.PRIMARY_WINNER, Code.GUARDRAIL_HARM]),
        ),
        # Harm within the margin (detected, and harm beyond the margin ruled out) ships.
        (
            {"guardrails": (guard("green", ruled_out=True, detected=True),)},
            (Action.SHIP, "green", [Code.PRIMARY_WINNER, Code.GUARDRAILS_SAFE]),
        ),
        ({"srm": BROKEN, "winner": None}, (Action.INCONCLUSIVE, None, [Code.SRM])),
        (
            {"reason": "mixed_populations", "winner": None},
            (Action.INCONCLUSIVE, None, [Code.DATA_QUALITY]),
        ),
        (
            {
                "reason": "not_significant",
                "winner": None,
                "guardrails": (guard("blue", ruled_out=False, detected=True),),
            },
            (Action.ROLLBACK, "blue", [Code.GUARDRAIL_HARM]),
        ),
        (
            {"reason": "not_significant", "winner": None, "losers": ("blue",)},
            (Action.ROLLBACK, "blue", [Code.PRIMARY_LOSER]),
        ),
        (
            {"reason": "insufficient_data", "winner": None},
            (Action.CONTINUE, None, [Code.INSUFFICIENT_DATA]),
        ),
        (
            {"reason": "sample_size_not_reached", "winner": None, "progress": 0.4},
            (Action.CONTINUE, None, [Code.PLAN_NOT_REACHED]),
        ),
        (
            {"reason": "not_confirmed", "winner": None},
            (Action.CONTINUE, None, [Code.NOT_CONFIRMED]),
        ),
        (
            {"reason": "not_significant", "winner": None, "progress": 0.5},
            (Action.CONTINUE, None, [Code.PLAN_NOT_REACHED]),
        ),
        (
            {"reason": "not_significant", "winner": None, "progress": 1.0},
            (Action.INCONCLUSIVE, None, [Code.NO_DIFFERENCE]),
        ),
    ],
)
def test_the_decision_follows_its_rules(
    given: dict[str, object], expected: tuple[Action, str | None, list[Code]]
) -> None:
    assert decision(**given) == expected


def test_what_a_decision_supports() -> None:
    ship = decide(
        reason="winner_found", message="m", winner="green", losers=(), srm=FINE, progress=2.0,
        guardrails=(),
    )  # fmt: skip
    assert ship.supports("green", control="control")
    assert not ship.supports("control", control="control")
    waiting = decide(
        reason="insufficient_data", message="m", winner=None, losers=(), srm=FINE,
        progress=None, guardrails=(),
    )  # fmt: skip
    assert not waiting.supports("control", control="control")
    none = decide(
        reason="not_significant", message="m", winner=None, losers=(), srm=FINE, progress=1.0,
        guardrails=(),
    )  # fmt: skip
    assert none.supports("control", control="control")
    assert not none.supports("green", control="control")


def binary(
    key: str, control: tuple[int, int], variant: tuple[int, int], **extra: object
) -> MetricInput:
    arms = (
        Arm("control", True, 0.5, control[1], control[0], control[0] / control[1], None),
        Arm("green", False, 0.5, variant[1], variant[0], variant[0] / variant[1], None),
    )
    return MetricInput(key, True, arms, **extra)  # type: ignore[arg-type]


def test_the_analysis_ends_in_the_decision_of_its_primary_metric_whatever_metric_is_read() -> None:
    options = AnalysisOptions(sample_size_per_variant=5000)
    primary = binary("conversion", (500, 5000), (640, 5000))
    churn = binary("churn", (400, 5000), (405, 5000), higher_is_better=False, margin=0.02)
    for read in ("conversion", "churn"):
        analysis = analyse([primary, churn], metric=read, options=options)
        assert analysis.decision is not None
        assert analysis.decision.action is Action.SHIP, analysis.decision
        assert analysis.decision.variant == "green"
        assert [r.code for r in analysis.decision.reasons] == [
            Code.PRIMARY_WINNER, Code.GUARDRAILS_SAFE,
        ]  # fmt: skip
    harmful = binary("churn", (400, 5000), (700, 5000), higher_is_better=False, margin=0.02)
    analysis = analyse([primary, harmful], metric="conversion", options=options)
    assert analysis.decision is not None
    assert analysis.decision.action is Action.ROLLBACK


def test_lower_is_better_turns_the_winner_rule_around() -> None:
    options = AnalysisOptions(sample_size_per_variant=5000)
    errors = binary("errors", (640, 5000), (500, 5000), higher_is_better=False)
    analysis = analyse([errors], metric="errors", options=options)
    assert analysis.winner is not None
    assert analysis.winner.key == "green"
    worse = binary("errors", (500, 5000), (640, 5000), higher_is_better=False)
    analysis = analyse([worse], metric="errors", options=options)
    assert analysis.winner is None
    assert analysis.losers == ("green",)
    assert analysis.decision is not None
    assert analysis.decision.action is Action.ROLLBACK
