"""Contextual bandits: decide, feedback, stats, performance over time, off-policy evaluation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.contextual import (
    ContextualStatsRead,
    DayRead,
    DecideIn,
    DecisionRead,
    FeedbackIn,
    FeedbackRead,
    OffPolicyRead,
    PerformanceRead,
)
from abpilot.service.contextual import ContextualService

router = APIRouter(tags=["contextual bandits"], responses=ERRORS)


async def get_contextual(request: Request) -> ContextualService:
    contextual: ContextualService = request.app.state.contextual
    return contextual


Contextual = Annotated[ContextualService, Depends(get_contextual)]


@router.post("/experiments/{experiment_id}/decide", response_model=DecisionRead)
def decide(experiment_id: str, body: DecideIn, contextual: Contextual) -> DecisionRead:
    """Pick an arm for this context (Thompson sampling, or the control policy in the holdout);
    the decision is logged with its propensity."""
    return DecisionRead.of(
        contextual.decide(experiment_id, unit_id=body.unit_id, context=body.context)
    )


@router.post("/experiments/{experiment_id}/feedback", response_model=FeedbackRead)
def feedback(experiment_id: str, body: FeedbackIn, contextual: Contextual) -> FeedbackRead:
    """Feedback on a decision (``decision_id``), or on a unit's latest decision (``unit_id``):
    success, failure or neutral by the experiment's rules; applied at most once per event type
    (``applied: false`` for a repeat)."""
    result = contextual.feedback(
        experiment_id,
        decision_id=body.decision_id,
        unit_id=body.unit_id,
        event=body.event,
        value=body.value,
    )
    return FeedbackRead(
        decision_id=result.decision_id,
        event=result.event,
        outcome=result.outcome.value,
        applied=result.applied,
    )


@router.get("/experiments/{experiment_id}/bandit/stats", response_model=ContextualStatsRead)
def stats(
    experiment_id: str,
    contextual: Contextual,
    days: Annotated[float | None, Query(gt=0, le=3660)] = None,
) -> ContextualStatsRead:
    """Success rates overall, per arm and per context, and the bandit against the control."""
    return ContextualStatsRead.of(contextual.stats(experiment_id, days=days))


@router.get("/experiments/{experiment_id}/performance", response_model=PerformanceRead)
def performance(
    experiment_id: str, contextual: Contextual, days: Annotated[int, Query(ge=1, le=3660)] = 30
) -> PerformanceRead:
    """Daily success rates of the bandit and the control over the last ``days`` days."""
    found = contextual.performance(experiment_id, days=days)
    experiment = contextual.lookup.get(experiment_id)
    return PerformanceRead(experiment_id=experiment.id, days=[DayRead.of(d) for d in found])


@router.get("/experiments/{experiment_id}/offpolicy", response_model=OffPolicyRead)
def offpolicy(
    experiment_id: str,
    contextual: Contextual,
    policy: Annotated[str, Query(min_length=1, max_length=200)] = "control",
) -> OffPolicyRead:
    """What a policy would have achieved on the logged decisions: ``control``, ``uniform``,
    ``greedy`` or ``arm:<key>``; IPS, self-normalised IPS and doubly robust estimates."""
    return OffPolicyRead.of(contextual.offpolicy(experiment_id, policy=policy))
