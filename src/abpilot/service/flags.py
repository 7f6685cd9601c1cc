"""Experiments as feature flags: what a flag client (OpenFeature, through OFREP) is served.

An ``ab_test`` or ``bandit`` experiment is a flag whose key is the experiment's key (or id) and
whose variants are the experiment's variants. For one unit (OpenFeature's targeting key):

- running, unit inside the traffic allocation: the unit's variant from ``get_variant_for_user``,
  which records the assignment as ``POST /experiments/{id}/assign`` does (first one wins; sticky
  bandits keep the unit's variant) — reason ``SPLIT``;
- running, unit outside the traffic allocation: the control — reason ``DEFAULT`` (nothing is
  recorded: the unit is not in the experiment);
- completed with a winner: the winner, for every unit — reason ``STATIC``;
- draft, paused, or completed without a winner: the control — reason ``DISABLED``.

The value served is the variant's ``config["value"]`` when its config has that key (any JSON:
string, number, boolean, object, list; ``null`` means "no value": the client keeps its code
default), else the variant's key. ``contextual_bandit`` and ``interleaving`` experiments are not
flags (their variants are chosen per request by a policy, or merged): evaluating one is refused.

Neither are the FeatureVisor companion's feature experiments (``fv-…``, with
``settings["featurevisor"]``): the FeatureVisor SDKs bucket units by their own hash, segments and
rules from the served datafile, and ``/expose`` counts a unit under its first recorded variation.
An OFREP evaluation by abpilot's hash would record a variation the SDK may never show, so they
are refused one by one and left out of the bulk evaluation (nothing is recorded).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from abpilot.domain.errors import Conflict, WrongStatus
from abpilot.domain.experiment import (
    FEATUREVISOR,
    Experiment,
    ExperimentStatus,
    ExperimentType,
    Variant,
)
from abpilot.service.core import Assignment
from abpilot.service.lookup import ExperimentLookup
from abpilot.service.specs import check_unit_id

FLAG_TYPES = frozenset({ExperimentType.AB_TEST, ExperimentType.BANDIT})
VALUE_KEY = "value"


class FlagService(Protocol):
    """What evaluating flags calls (``ExperimentService`` has it)."""

    @property
    def lookup(self) -> ExperimentLookup: ...

    def list_experiments(
        self, status: ExperimentStatus | str | None = None
    ) -> list[Experiment]: ...

    def get_variant_for_user(self, experiment: str, unit_id: str) -> Assignment: ...


class FlagReason(enum.StrEnum):
    """Why a unit got its variant, in OpenFeature's vocabulary."""

    SPLIT = "SPLIT"
    DEFAULT = "DEFAULT"
    STATIC = "STATIC"
    DISABLED = "DISABLED"


class NotAFlag(Conflict):
    code = "not_a_flag"


@dataclass(frozen=True, slots=True)
class FlagEvaluation:
    flag_key: str
    experiment: Experiment
    variant: Variant
    reason: FlagReason
    in_experiment: bool

    @property
    def value(self) -> Any:
        return flag_value(self.variant)


def flag_value(variant: Variant) -> Any:
    """The variant's ``config["value"]`` when the config has that key, else the variant's key."""
    return variant.config.get(VALUE_KEY, variant.key)


def evaluate_flag(service: FlagService, *, flag_key: str, unit_id: str) -> FlagEvaluation:
    """The flag ``flag_key`` (an experiment's key or id) for one unit; a running experiment
    records the unit's assignment."""
    check_unit_id(unit_id)
    experiment = service.lookup.cached(flag_key).experiment
    if experiment.type not in FLAG_TYPES:
        raise NotAFlag(
            f"experiment '{experiment.key}' is a {experiment.type} experiment, not a flag: only "
            "ab_test and bandit experiments are evaluated as flags",
            field="type",
        )
    if experiment.featurevisor_feature:
        origin = experiment.settings[FEATUREVISOR]
        raise NotAFlag(
            f"experiment '{experiment.key}' learns the weights of FeatureVisor feature "
            f"'{str(origin.get('feature'))[:100]}' (datafile "
            f"'{str(origin.get('datafile'))[:200]}'): FeatureVisor companion features are "
            "evaluated by the FeatureVisor SDKs from the served datafile, not as OFREP flags",
            field="settings.featurevisor",
        )
    if experiment.status is ExperimentStatus.RUNNING:
        return _running(service, flag_key, experiment, unit_id)
    return _at_rest(flag_key, experiment)


def evaluate_flags(service: FlagService, *, unit_id: str) -> list[FlagEvaluation]:
    """Every running ab_test and bandit experiment for one unit (oldest first), each recorded as
    ``evaluate_flag`` does. Experiments that are not running, and the FeatureVisor companion's
    feature experiments, are left out (nothing is recorded for them)."""
    check_unit_id(unit_id)
    return [
        _running(service, experiment.key, experiment, unit_id)
        for experiment in service.list_experiments(ExperimentStatus.RUNNING)
        if experiment.type in FLAG_TYPES and not experiment.featurevisor_feature
    ]


def _running(
    service: FlagService, flag_key: str, experiment: Experiment, unit_id: str
) -> FlagEvaluation:
    try:
        assignment = service.get_variant_for_user(experiment.id, unit_id)
    except WrongStatus:  # paused or completed since it was read (by another worker)
        return _at_rest(flag_key, service.lookup.get(experiment.id))
    return _assigned(flag_key, experiment, assignment)


def _assigned(flag_key: str, experiment: Experiment, assignment: Assignment) -> FlagEvaluation:
    if assignment.variant is None:
        return FlagEvaluation(flag_key, experiment, experiment.control, FlagReason.DEFAULT, False)
    return FlagEvaluation(flag_key, experiment, assignment.variant, FlagReason.SPLIT, True)


def _at_rest(flag_key: str, experiment: Experiment) -> FlagEvaluation:
    winner = experiment.variant(experiment.winner) if experiment.winner else None
    if experiment.status is ExperimentStatus.COMPLETED and winner is not None:
        return FlagEvaluation(flag_key, experiment, winner, FlagReason.STATIC, False)
    return FlagEvaluation(flag_key, experiment, experiment.control, FlagReason.DISABLED, False)
