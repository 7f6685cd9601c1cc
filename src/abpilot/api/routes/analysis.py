"""Analysis of an experiment, and sample-size planning."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from abpilot.api.deps import Service
from abpilot.api.routes.experiments import ERRORS
from abpilot.api.schemas.analysis import AnalysisRead, SampleSizeRead, SegmentBreakdownRead
from abpilot.api.schemas.interleaving import InterleavingAnalysisRead
from abpilot.domain.experiment import ExperimentType
from abpilot.stats.power import plan_sample_size

router = APIRouter(tags=["analysis"], responses=ERRORS)
AnyAnalysis = AnalysisRead | InterleavingAnalysisRead  # by the experiment's type


def _analysis(
    experiment_id: str,
    service: Service,
    metric: str | None,
    correction: Literal["holm", "bh", "none"] | None,
    sequential: bool | None,
    alpha: float | None,
    dimension: str | None = None,
) -> AnalysisRead | InterleavingAnalysisRead:
    experiment = service.get_experiment(experiment_id)
    if experiment.type is ExperimentType.INTERLEAVING:
        interleaved = service.interleaving.analyse(experiment_id, alpha=alpha or 0.05)
        return InterleavingAnalysisRead.of(experiment.id, interleaved)
    analysis = service.analyze_experiment(
        experiment_id, metric=metric, correction=correction, sequential=sequential, alpha=alpha
    )
    found = AnalysisRead.of(experiment.id, analysis)
    if dimension is not None:
        segments = service.analyze_segments(
            experiment_id,
            dimension=dimension,
            metric=metric,
            correction=correction,
            sequential=sequential,
            alpha=alpha,
        )
        found.segments = SegmentBreakdownRead.of(experiment.id, segments)
    return found


Metric = Annotated[str | None, Query(max_length=100, description="Metric key (default: primary).")]
CorrectionParam = Annotated[
    Literal["holm", "bh", "none"] | None,
    Query(description="Multiple-comparison correction (default: the experiment's, else holm)."),
]
Sequential = Annotated[bool | None, Query(description="Use the always-valid (mSPRT) test.")]
Dimension = Annotated[
    str | None,
    Query(max_length=100, description="A declared dimension: the analysis per segment too."),
]
Alpha = Annotated[
    float | None, Query(ge=1e-6, le=0.5, description="Significance level (1e-6 to 0.5).")
]


@router.get(
    "/experiments/{experiment_id}/analysis", response_model=AnalysisRead | InterleavingAnalysisRead
)
def analysis(
    experiment_id: str,
    service: Service,
    metric: Metric = None,
    correction: CorrectionParam = None,
    sequential: Sequential = None,
    alpha: Alpha = None,
    dimension: Dimension = None,
) -> AnalysisRead | InterleavingAnalysisRead:
    """Each variant against the control: rates with intervals, lift, p-values (raw and
    corrected), Bayesian chance to beat control, probability of being best, expected loss, sample
    ratio mismatch, progress toward the planned sample size, and the winner or why there is none.
    With ``dimension``, the same analysis per segment in ``segments`` (BH across segments,
    Cochran's Q per metric and variant); the overall result is unchanged."""
    return _analysis(experiment_id, service, metric, correction, sequential, alpha, dimension)


@router.get(
    "/experiments/{experiment_id}/analyze", response_model=AnalysisRead | InterleavingAnalysisRead
)
def analyze(
    experiment_id: str,
    service: Service,
    metric: Metric = None,
    correction: CorrectionParam = None,
    sequential: Sequential = None,
    alpha: Alpha = None,
) -> AnalysisRead | InterleavingAnalysisRead:
    """Alias of ``/analysis`` (the name OpenInsight clients use)."""
    return _analysis(experiment_id, service, metric, correction, sequential, alpha)


@router.get("/sample-size", response_model=SampleSizeRead)
def sample_size(
    mde: Annotated[
        float, Query(description="Minimum detectable effect (absolute unless relative).")
    ],
    baseline_rate: Annotated[float | None, Query(gt=0, lt=1)] = None,
    baseline_mean: float | None = None,
    standard_deviation: Annotated[float | None, Query(gt=0)] = None,
    relative: bool = False,
    alpha: Annotated[float, Query(ge=1e-6, le=0.5)] = 0.05,
    power: Annotated[float, Query(gt=0, lt=1)] = 0.8,
    variants: Annotated[int, Query(ge=2, le=100)] = 2,
) -> SampleSizeRead:
    """Units per variant for a rate (``baseline_rate``) or a mean (``baseline_mean`` and
    ``standard_deviation``), each variant compared with the control at alpha / (variants - 1)."""
    plan = plan_sample_size(
        mde=mde,
        baseline_rate=baseline_rate,
        baseline_mean=baseline_mean,
        standard_deviation=standard_deviation,
        relative=relative,
        alpha=alpha,
        power=power,
        variants=variants,
    )
    return SampleSizeRead.of(plan)
