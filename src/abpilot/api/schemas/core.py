"""Request and response bodies of the REST API (snake_case JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from abpilot.domain.experiment import Experiment
from abpilot.domain.inputs import EventInput, EventKind
from abpilot.domain.records import ApplyResult
from abpilot.domain.rules import cap_input
from abpilot.service import Assignment, ExperimentMetrics

Key = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Id = Field(min_length=1, max_length=256)
ExperimentType = Literal["ab_test", "bandit", "contextual_bandit", "interleaving"]
Status = Literal["draft", "running", "paused", "completed"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=10_000)


class Lenient(BaseModel):
    """Event bodies ignore fields they do not know, as SDKs often send extra properties."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, str_max_length=10_000)


OptionalKey = Field(
    default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
)


class VariantIn(Strict):
    """Without a key the variant takes one made from its name; without weights on every variant
    the variants split the traffic equally."""

    key: str | None = OptionalKey
    name: str | None = Field(default=None, max_length=200)
    description: str = ""
    weight: float | None = None
    is_control: bool = False
    config: dict[str, Any] = Field(default_factory=dict)


class MetricIn(Strict):
    """A metric; a guardrail (``role``) names the harm it tolerates, its ``margin``: a difference
    of rates or means, or with ``margin_relative`` a fraction of the control's."""

    key: str = Key
    kind: Literal["binary", "value", "ratio"] = "binary"
    description: str = ""
    role: Literal["goal", "guardrail"] = "goal"
    higher_is_better: bool = Field(default=True, strict=True)
    margin: float | None = Field(default=None, ge=0, strict=True)
    margin_relative: bool = Field(default=False, strict=True)
    # A metric of a "source": "warehouse" experiment: where its values come from.
    fact_source: str | None = Field(default=None, max_length=100)
    column: str | None = Field(default=None, max_length=128)
    aggregation: Literal["count", "sum", "count_distinct", "max", "any"] | None = None
    window_hours: float | None = Field(default=None, gt=0)
    covariate: str | None = Field(
        default=None, description="The covariate (an exposure's covariates name) it is adjusted by"
    )
    cap: dict[str, float] | None = Field(
        default=None, description='{"absolute": 500} or {"percentile": 0.99} (value metrics)'
    )
    numerator: str | None = Field(default=None, description="A ratio's numerator metric")
    denominator: str | None = Field(default=None, description="A ratio's denominator metric")


class ExperimentCreate(Strict):
    """Without a key the experiment takes one made from its name (lowercase, ``-`` between
    words); ``experiment_type`` is an alias of ``type`` (``ab_test`` when neither is given)."""

    key: str | None = OptionalKey
    name: str | None = Field(default=None, max_length=200)
    description: str = ""
    type: ExperimentType | None = None
    experiment_type: ExperimentType | None = None
    traffic_allocation: float = 1.0
    variants: list[VariantIn] = Field(min_length=2, max_length=100)
    metrics: list[MetricIn] = Field(default_factory=list, max_length=50)
    salt: str | None = Field(default=None, min_length=1, max_length=200)
    settings: dict[str, Any] = Field(default_factory=dict)
    source: Literal["events", "warehouse"] | None = Field(
        default=None,
        description="Where the analysis reads the data: the events abpilot ingests (default), "
        "or the warehouse (WAREHOUSE_URL) through refreshes.",
    )
    assignment_source: str | None = Field(default=None, max_length=100)
    dimension: str | None = Field(
        default=None,
        max_length=128,
        description="An alias of dimensions with one column (a warehouse experiment).",
    )
    daily_source: str | None = Field(
        default=None,
        max_length=100,
        description="A bandit fed daily totals: the warehouse source of each day's impressions "
        "and clicks per variant, recorded by each refresh.",
    )
    dimensions: list[str] | None = Field(
        default=None,
        description="Unit dimensions the counters are broken down by (a warehouse experiment: "
        "columns of its assignment source)",
    )


class ExperimentUpdate(Strict):
    name: str | None = Field(default=None, max_length=200)
    description: str | None = None
    traffic_allocation: float | None = None
    variants: list[VariantIn] | None = Field(default=None, min_length=2, max_length=100)
    metrics: list[MetricIn] | None = Field(default=None, max_length=50)
    salt: str | None = Field(default=None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None
    dimensions: list[str] | None = None


OVERRIDE = Field(
    default=False,
    strict=True,
    description="Complete with a winner the analysis' decision does not support; recorded in "
    "settings.completion",
)


class StatusUpdate(Strict):
    status: Status
    winner: str | None = Field(default=None, max_length=100)
    override: bool = OVERRIDE


class VariantRead(BaseModel):
    key: str
    name: str
    description: str
    weight: float
    is_control: bool
    config: dict[str, Any]


class MetricRead(BaseModel):
    key: str
    kind: str
    description: str
    role: str = "goal"
    higher_is_better: bool = True
    margin: float | None = None
    margin_relative: bool = False
    covariate: str | None = None
    cap: dict[str, float] | None = None
    numerator: str | None = None
    denominator: str | None = None


class ExperimentRead(BaseModel):
    id: str
    key: str
    name: str
    description: str
    type: str
    status: str
    traffic_allocation: float
    salt: str
    variants: list[VariantRead]
    metrics: list[MetricRead]
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    winner: str | None
    version: int
    open_metrics: bool = Field(
        description="Created without declared metrics: a conversion naming a new metric "
        "registers it instead of being refused."
    )
    source: str = Field(
        default="events", description="'events' or 'warehouse' (see settings.warehouse)"
    )
    dimensions: list[str] = Field(
        default_factory=list, description="Unit dimensions the counters are broken down by"
    )

    @classmethod
    def of(cls, experiment: Experiment) -> ExperimentRead:
        return cls(
            id=experiment.id,
            key=experiment.key,
            name=experiment.name,
            description=experiment.description,
            type=experiment.type.value,
            status=experiment.status.value,
            traffic_allocation=experiment.traffic_allocation,
            salt=experiment.salt,
            variants=[
                VariantRead(
                    key=v.key,
                    name=v.name,
                    description=v.description,
                    weight=v.weight,
                    is_control=v.is_control,
                    config=dict(v.config),
                )
                for v in experiment.variants
            ],
            metrics=[
                MetricRead(
                    key=m.key,
                    kind=m.kind.value,
                    description=m.description,
                    role=m.role.value,
                    higher_is_better=m.higher_is_better,
                    margin=m.margin,
                    margin_relative=m.margin_relative,
                    covariate=m.covariate,
                    cap=cap_input(m),
                    numerator=m.numerator,
                    denominator=m.denominator,
                )
                for m in experiment.metrics
            ],
            settings=dict(experiment.settings),
            created_at=experiment.created_at,
            updated_at=experiment.updated_at,
            started_at=experiment.started_at,
            ended_at=experiment.ended_at,
            winner=experiment.winner,
            version=experiment.version,
            open_metrics=experiment.open_metrics,
            source="warehouse" if "warehouse" in experiment.settings else "events",
            dimensions=list(experiment.dimensions),
        )


# An exposure's unit facts, checked by the service (``abpilot.domain.rules``): a 422 names the
# field there, whatever face sent them.
UNIT_COVARIATES = Field(
    default=None, description='The unit\'s covariates, e.g. {"pre_revenue": 12.3} (first wins)'
)
UNIT_DIMENSIONS = Field(
    default=None, description='The unit\'s dimensions, e.g. {"country": "nl"} (first wins)'
)


class AssignRequest(Lenient):
    """``user_id`` is an alias of ``unit_id`` (SONA's name). With ``expose`` the exposure is
    recorded with the assignment, in one atomic step (``event_id`` makes a retry count once)."""

    unit_id: str | None = Field(default=None, min_length=1, max_length=256)
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    expose: bool = False
    event_id: str | None = Field(default=None, min_length=1, max_length=256)
    covariates: dict[str, Any] | None = UNIT_COVARIATES
    dimensions: dict[str, Any] | None = UNIT_DIMENSIONS


class AssignedVariant(BaseModel):
    key: str
    name: str
    config: dict[str, Any]


class AssignmentRead(BaseModel):
    experiment_id: str
    unit_id: str
    in_experiment: bool
    variant: AssignedVariant | None

    @classmethod
    def of(cls, assignment: Assignment) -> AssignmentRead:
        v = assignment.variant
        return cls(
            experiment_id=assignment.experiment_id,
            unit_id=assignment.unit_id,
            in_experiment=assignment.in_experiment,
            variant=None
            if v is None
            else AssignedVariant(key=v.key, name=v.name, config=dict(v.config)),
        )


class ExposureIn(Lenient):
    unit_id: str | None = Field(default=None, min_length=1, max_length=256)
    variant: str | None = Field(default=None, max_length=100)
    event_id: str | None = Field(default=None, min_length=1, max_length=256)
    timestamp: datetime | None = None
    covariates: dict[str, Any] | None = UNIT_COVARIATES
    dimensions: dict[str, Any] | None = UNIT_DIMENSIONS


class ConversionIn(ExposureIn):
    metric: str | None = Field(default=None, max_length=100)
    value: float | None = None


class SonaConversionIn(Lenient):
    """The shape SONA clients send to ``POST /experiments/conversions``."""

    experiment_id: str = Id
    user_id: str = Id
    metric_name: str | None = Field(default=None, max_length=100)
    value: float | None = None
    event_id: str | None = Field(default=None, min_length=1, max_length=256)
    timestamp: datetime | None = None


class EndRequest(Strict):
    """OpenInsight's ``/end``: complete the experiment, naming the winner or letting the final
    analysis' decision name it."""

    winner: str | None = Field(default=None, max_length=100)
    override: bool = OVERRIDE


class EventIn(ConversionIn):
    """One event of ``POST /api/v1/events`` (and of a stream message, ``abpilot.streams``)."""

    type: Literal["exposure", "conversion"]
    experiment_id: str = Id

    def to_input(self, *, event_id: str | None = None) -> EventInput:
        """The service's record of this event; ``event_id`` is used when it has none."""
        return EventInput(
            kind=EventKind(self.type),
            experiment=self.experiment_id,
            unit_id=self.unit_id,
            variant=self.variant,
            metric=self.metric,
            value=self.value,
            event_id=self.event_id if self.event_id is not None else event_id,
            timestamp=self.timestamp,
            covariates=self.covariates,
            dimensions=self.dimensions,
        )


class EventBatch(Lenient):
    events: list[EventIn]


class EventResult(BaseModel):
    received: int
    applied: int
    duplicates: int
    # Only in the reply of a batch spanning experiments on a Redis Cluster: "per_experiment"
    # (each experiment's events were counted all or none, the batch as a whole was not).
    atomic: Literal["per_experiment"] | None = None

    @classmethod
    def of(cls, result: ApplyResult, received: int) -> EventResult:
        atomic: Literal["per_experiment"] | None = (
            "per_experiment" if result.per_experiment else None
        )
        return cls(
            received=received, applied=result.applied, duplicates=result.duplicates, atomic=atomic
        )

    @model_serializer(mode="wrap")
    def _without_plain_atomicity(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("atomic") is None:
            data.pop("atomic", None)
        return data


class MetricSummaryRead(BaseModel):
    count: int
    units: int
    sum: float
    sum_squares: float
    n: int
    basis: str
    mean: float | None
    variance: float | None
    conversions: int
    conversion_rate: float | None
    conversions_exceed_population: bool


class MetricBasisRead(BaseModel):
    basis: str
    mixed_populations: list[str]


class VariantMetricsRead(BaseModel):
    key: str
    name: str
    is_control: bool
    weight: float
    assigned_units: int
    exposures: int
    unique_units: int
    metrics: dict[str, MetricSummaryRead]


class MetricsRead(BaseModel):
    experiment_id: str
    experiment_key: str
    status: str
    variants: list[VariantMetricsRead]
    metrics: dict[str, MetricBasisRead]

    @classmethod
    def of(cls, metrics: ExperimentMetrics) -> MetricsRead:
        return cls(
            experiment_id=metrics.experiment_id,
            experiment_key=metrics.experiment_key,
            status=metrics.status.value,
            metrics={
                name: MetricBasisRead(
                    basis=b.basis.value, mixed_populations=list(b.mixed_populations)
                )
                for name, b in metrics.metrics.items()
            },
            variants=[
                VariantMetricsRead(
                    key=v.key,
                    name=v.name,
                    is_control=v.is_control,
                    weight=v.weight,
                    assigned_units=v.assigned_units,
                    exposures=v.exposures,
                    unique_units=v.unique_units,
                    metrics={
                        name: MetricSummaryRead(
                            count=s.count,
                            units=s.units,
                            sum=s.sum,
                            sum_squares=s.sum_squares,
                            n=s.n,
                            basis=s.basis.value,
                            mean=s.mean,
                            variance=s.variance,
                            conversions=s.conversions,
                            conversion_rate=s.conversion_rate,
                            conversions_exceed_population=s.conversions_exceed_population,
                        )
                        for name, s in v.metrics.items()
                    },
                )
                for v in metrics.variants
            ],
        )


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
