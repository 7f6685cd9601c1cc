"""The decision an analysis ends in: ship a variant, roll one back, continue, or inconclusive;
from the primary metric's verdict, the guardrails, SRM and the plan. Every reason is a stable
code with a sentence. Pure: it takes the analysis' plain results.

- ``inconclusive`` when the data cannot be trusted (SRM, mixed populations, conversions above
  units, no mixing scale for the sequential test), or when the plan is reached and no variant
  differs from the control on the primary metric;
- ``ship`` the primary metric's winner when every guardrail rules harm beyond its margin out;
  ``continue`` while some guardrail does not yet; ``rollback`` when a guardrail shows harm
  (always-valid, ``stats.guardrails``) beyond its margin;
- without a winner, ``rollback`` a variant that harms a guardrail or is worse than the control
  on the primary metric by the winner rule's standard, else ``continue`` (too little data, the
  plan not reached, a significance not yet confirmed).

Completing an experiment with a winner the decision does not ``support`` needs an override.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from abpilot.stats.guardrails import GuardrailCheck
from abpilot.stats.srm import SrmCheck


class Action(enum.StrEnum):
    SHIP = "ship"
    ROLLBACK = "rollback"
    CONTINUE = "continue"
    INCONCLUSIVE = "inconclusive"


class Code(enum.StrEnum):
    SRM = "srm_detected"
    DATA_QUALITY = "data_quality"
    INSUFFICIENT_DATA = "insufficient_data"
    PLAN_NOT_REACHED = "plan_not_reached"
    NOT_CONFIRMED = "not_confirmed"
    PRIMARY_WINNER = "primary_winner"
    PRIMARY_LOSER = "primary_loser"
    NO_DIFFERENCE = "no_difference"
    GUARDRAIL_HARM = "guardrail_harm"
    GUARDRAILS_SAFE = "guardrails_safe"
    GUARDRAIL_UNCLEAR = "guardrail_unclear"


@dataclass(frozen=True, slots=True)
class DecisionReason:
    code: Code
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """``variant``: the variant to ship (ship), to roll back (rollback), or the primary
    metric's winner still waiting on its guardrails (continue); None otherwise."""

    action: Action
    variant: str | None
    reasons: tuple[DecisionReason, ...]

    def supports(self, winner: str, *, control: str) -> bool:
        """Whether completing with ``winner`` follows this decision: the variant it ships, or
        the control when it rolls back or finds no difference."""
        if self.action is Action.SHIP:
            return winner == self.variant
        return winner == control and self.action in (Action.ROLLBACK, Action.INCONCLUSIVE)


# The analysis' reasons that say its data cannot be trusted (``stats.analysis.Reason``).
_UNTRUSTED = frozenset({"mixed_populations", "conversions_exceed_units", "tau_required"})


def _said(check: GuardrailCheck) -> str:
    scale = "lift" if check.margin_relative else "difference"
    margin = f"{check.margin:.4g}{' (relative)' if check.margin_relative else ''}"
    estimate = "n/a" if check.estimate is None else f"{check.estimate:+.4g}"
    return f"'{check.variant}' on '{check.metric}' ({scale} {estimate}, margin {margin})"


def _harm(checks: Sequence[GuardrailCheck]) -> DecisionReason:
    return DecisionReason(
        Code.GUARDRAIL_HARM,
        "harm detected by the always-valid test, and harm beyond the margin not ruled out: "
        + "; ".join(_said(c) for c in checks),
    )


def decide(
    *,
    reason: str,
    message: str,
    winner: str | None,
    losers: Sequence[str],
    srm: SrmCheck,
    progress: float | None,
    guardrails: Sequence[GuardrailCheck],
) -> Decision:
    """The decision from the primary metric's verdict (``reason``, ``message``, ``winner``,
    ``losers``), its SRM check and progress toward the plan, and every guardrail check."""
    if srm.flagged:
        return Decision(Action.INCONCLUSIVE, None, (DecisionReason(Code.SRM, message),))
    if reason in _UNTRUSTED:
        return Decision(Action.INCONCLUSIVE, None, (DecisionReason(Code.DATA_QUALITY, message),))
    if winner is not None:
        found = DecisionReason(Code.PRIMARY_WINNER, message)
        own = [c for c in guardrails if c.variant == winner]
        harmful = [c for c in own if c.harmful]
        if harmful:
            return Decision(Action.ROLLBACK, winner, (found, _harm(harmful)))
        unclear = [c for c in own if not c.harm_ruled_out]
        if unclear:
            waiting = DecisionReason(
                Code.GUARDRAIL_UNCLEAR,
                "harm beyond the margin is not yet ruled out: "
                + "; ".join(_said(c) for c in unclear)
                + "; keep collecting",
            )
            return Decision(Action.CONTINUE, winner, (found, waiting))
        if not own:
            return Decision(Action.SHIP, winner, (found,))
        safe = DecisionReason(
            Code.GUARDRAILS_SAFE,
            "harm beyond the margin is ruled out on every guardrail: "
            + ", ".join(sorted({c.metric for c in own})),
        )
        return Decision(Action.SHIP, winner, (found, safe))
    harmful = [c for c in guardrails if c.harmful]
    if harmful:
        return Decision(Action.ROLLBACK, harmful[0].variant, (_harm(harmful),))
    if losers:
        return Decision(
            Action.ROLLBACK,
            losers[0],
            (
                DecisionReason(
                    Code.PRIMARY_LOSER,
                    f"{', '.join(losers)} worse than the control on the primary metric, by the "
                    f"standard a winner must meet; {message}",
                ),
            ),
        )
    if reason == "insufficient_data":
        return Decision(Action.CONTINUE, None, (DecisionReason(Code.INSUFFICIENT_DATA, message),))
    if reason == "not_confirmed":
        return Decision(Action.CONTINUE, None, (DecisionReason(Code.NOT_CONFIRMED, message),))
    if reason == "not_significant" and progress is not None and progress >= 1:
        return Decision(
            Action.INCONCLUSIVE,
            None,
            (
                DecisionReason(
                    Code.NO_DIFFERENCE,
                    f"the planned sample size is reached and {message}; keep the control",
                ),
            ),
        )
    plan = (
        "no sample size could be planned (set settings.analysis.sample_size_per_variant)"
        if progress is None
        else f"the planned sample size is {progress:.0%} reached"
    )
    return Decision(
        Action.CONTINUE, None, (DecisionReason(Code.PLAN_NOT_REACHED, f"{plan}: {message}"),)
    )
