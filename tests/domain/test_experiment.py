"""Lifecycle and validation rules of experiments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from abpilot.domain.errors import InvalidTransition, ValidationError
from abpilot.domain.experiment import (
    ExperimentStatus,
    Variant,
    normalise_variants,
    validate_experiment_key,
    validate_traffic_allocation,
)
from tests.factories import make_experiment

NOW = datetime(2026, 3, 1, tzinfo=UTC)
S = ExperimentStatus


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.DRAFT, S.RUNNING),
        (S.RUNNING, S.PAUSED),
        (S.PAUSED, S.RUNNING),
        (S.RUNNING, S.COMPLETED),
        (S.PAUSED, S.COMPLETED),
    ],
)
def test_allowed_transitions(start: ExperimentStatus, target: ExperimentStatus) -> None:
    moved = make_experiment(status=start).with_status(target, now=NOW)
    assert moved.status is target
    assert moved.updated_at == NOW


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.DRAFT, S.PAUSED),
        (S.DRAFT, S.COMPLETED),
        (S.COMPLETED, S.RUNNING),
        (S.COMPLETED, S.PAUSED),
        (S.RUNNING, S.DRAFT),
        (S.RUNNING, S.RUNNING),
    ],
)
def test_refused_transitions_name_both_states(
    start: ExperimentStatus, target: ExperimentStatus
) -> None:
    with pytest.raises(InvalidTransition) as caught:
        make_experiment(status=start).with_status(target, now=NOW)
    assert str(start) in caught.value.message
    assert str(target) in caught.value.message


def test_start_and_end_times() -> None:
    started = make_experiment(status=S.DRAFT).with_status(S.RUNNING, now=NOW)
    assert started.started_at == NOW
    later = datetime(2026, 3, 5, tzinfo=UTC)
    resumed = started.with_status(S.PAUSED, now=later).with_status(S.RUNNING, now=later)
    assert resumed.started_at == NOW
    assert resumed.with_status(S.COMPLETED, now=later).ended_at == later


def v(key: str, weight: float, control: bool = False) -> Variant:
    return Variant(key=key, name=key, weight=weight, is_control=control)


def test_first_variant_becomes_control_when_none_is_marked() -> None:
    variants = normalise_variants([v("a", 0.5), v("b", 0.5)])
    assert [x.is_control for x in variants] == [True, False]
    marked = normalise_variants([v("a", 0.5), v("b", 0.5, control=True)])
    assert [x.is_control for x in marked] == [False, True]


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([v("a", 1.0)], "at least 2 variants"),
        ([v("a", 0.5), v("a", 0.5)], "unique"),
        ([v("a", 0.5), v("b", 0.4)], "sum to 1.0 (got 0.9)"),
        ([v("a", 1.0), v("b", 0.0)], "must be > 0"),
        ([v("a", 1.5), v("b", -0.5)], "must be > 0"),
        ([v("a", 0.5, True), v("b", 0.5, True)], "exactly one"),
        ([v("a b", 0.5), v("b", 0.5)], "variants[0].key"),
        ([v("a", float("nan")), v("b", 0.5)], "must be > 0"),
    ],
)
def test_bad_variants_are_refused_with_a_sentence(variants: list[Variant], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalise_variants(variants)
    assert message in caught.value.message or message == caught.value.field


def test_weights_within_tolerance_are_accepted() -> None:
    normalise_variants([v("a", 1 / 3), v("b", 1 / 3), v("c", 1 / 3)])


@pytest.mark.parametrize("value", [0.0, -0.1, 1.01, float("inf"), float("nan")])
def test_traffic_allocation_range(value: float) -> None:
    with pytest.raises(ValidationError, match="traffic_allocation"):
        validate_traffic_allocation(value)


BAD_KEYS = ["", "has space", "-lead", "x" * 101, "a/b", "0b7e6c7e-6c1f-4c0e-9a53-6b8f0a3c2d1e"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys(key: str) -> None:
    with pytest.raises(ValidationError):
        validate_experiment_key(key)
