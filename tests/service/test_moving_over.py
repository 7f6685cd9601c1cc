"""The Python calls users of OpenInsight and SONA bring with them, on every store: experiments
made from names alone, metrics a conversion registers, assignment and exposure in one step.

The OpenInsight calls are copied from its documentation (the ``create_experiment``,
``get_variant_for_user``, ``record_conversion``, ``analyze_experiment`` and ``end_experiment``
examples); docs/migrating/openinsight.md runs the same calls end to end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import abpilot
from abpilot.domain.errors import (
    DuplicateKey,
    UnitNotAssigned,
    ValidationError,
    WrongStatus,
)
from abpilot.domain.experiment import ExperimentStatus, MetricKind
from abpilot.service import ExperimentChanges, ExperimentService
from abpilot.store.base import Store
from tests.conftest import BARRIER_SECONDS, StoreFactory


def openinsight_homepage_test(manager: ExperimentService) -> abpilot.Experiment:
    """OpenInsight's "Creating an Experiment" call, as its documentation prints it."""
    experiment = manager.create_experiment(
        name="Homepage Button Color Test",
        variants=[
            {"name": "Blue Button", "description": "Standard blue button"},
            {"name": "Green Button", "description": "New green button"},
        ],
        experiment_type="ab_test",
        traffic_allocation=1.0,
        description="Testing whether a green CTA button performs better than our standard blue",
    )
    return experiment


# ---- experiments from names ------------------------------------------------------------------


def test_openinsight_create_experiment_works_as_written(store: Store) -> None:
    manager = ExperimentService(store)
    experiment = openinsight_homepage_test(manager)
    assert experiment.key == "homepage-button-color-test"
    assert experiment.experiment_id == experiment.id
    assert [(v.key, v.name, v.weight, v.is_control) for v in experiment.variants] == [
        ("blue-button", "Blue Button", 0.5, True),
        ("green-button", "Green Button", 0.5, False),
    ]
    assert experiment.variants[1].description == "New green button"
    assert experiment.description.startswith("Testing whether a green CTA")
    assert manager.get_experiment("homepage-button-color-test") == experiment


def test_a_taken_key_made_from_a_name_is_a_409_naming_it(store: Store) -> None:
    manager = ExperimentService(store)
    openinsight_homepage_test(manager)
    with pytest.raises(DuplicateKey, match="homepage-button-color-test") as refused:
        openinsight_homepage_test(manager)
    assert refused.value.field == "key"
    assert len(manager.list_experiments()) == 1


def test_without_weights_variants_split_equally_in_basis_points(store: Store) -> None:
    manager = ExperimentService(store)
    three = manager.create_experiment(
        name="Three ways", variants=[{"name": n} for n in ("A", "B", "C")]
    )
    assert [v.weight for v in three.variants] == [0.3334, 0.3333, 0.3333]
    seven = manager.create_experiment(key="seven", variants=[{"key": f"v{i}"} for i in range(7)])
    assert [round(v.weight * 10_000) for v in seven.variants] == [1429] * 4 + [1428] * 3
    assert sum(round(v.weight * 10_000) for v in seven.variants) == 10_000


AB = [{"key": "a"}, {"key": "b"}]


@pytest.mark.parametrize(
    ("call", "field", "words"),
    [
        ({"variants": [{"name": "a"}, {"name": "b"}]}, "key", "name"),
        ({"name": "日本", "variants": AB}, "key", "no key"),
        (
            {"name": "x", "variants": [{"name": "Blue"}, {"name": "blue"}]},
            "variants[1].key",
            "blue",
        ),
        (
            {"name": "x", "variants": [{"name": "a", "weight": 1}, {"name": "b"}]},
            "variants[1].weight",
            "none",
        ),
        (
            {"name": "x", "variants": [{"description": "?"}, {"key": "b"}]},
            "variants[0].key",
            "name",
        ),
        (
            {"name": "x", "experiment_type": "interleave", "variants": AB},
            "experiment_type",
            "allowed",
        ),
        (
            {"name": "x", "type": "bandit", "experiment_type": "ab_test", "variants": AB},
            "experiment_type",
            "disagree",
        ),
    ],
)
def test_what_cannot_be_derived_is_a_422_naming_the_field(
    store: Store, call: dict[str, Any], field: str, words: str
) -> None:
    manager = ExperimentService(store)
    with pytest.raises(ValidationError, match=words) as refused:
        manager.create_experiment(**call)
    assert refused.value.field == field
    assert manager.list_experiments() == []


def test_experiment_type_is_an_alias_of_type(store: Store) -> None:
    manager = ExperimentService(store)
    variants = [{"name": "control", "is_control": True}, {"name": "variant_a"}]
    made = manager.create_experiment(name="by alias", experiment_type="bandit", variants=variants)
    both = manager.create_experiment(
        name="both", type="bandit", experiment_type="bandit", variants=variants
    )
    assert made.type == both.type == abpilot.ExperimentType.BANDIT


# ---- metrics registered on first use ---------------------------------------------------------


def started(manager: ExperimentService, **fields: Any) -> abpilot.Experiment:
    fields.setdefault("variants", [{"key": "control"}, {"key": "treatment"}])
    experiment = manager.create_experiment(**fields)
    return manager.start_experiment(experiment.key)


def test_metrics_are_open_only_when_none_is_declared(store: Store) -> None:
    manager = ExperimentService(store)
    assert started(manager, key="open").open_metrics
    assert not started(manager, key="declared", metrics=[{"key": "conversion"}]).open_metrics


def test_a_new_metric_name_is_registered_and_its_conversion_counted(store: Store) -> None:
    manager = ExperimentService(store)
    started(manager, key="sona")
    for unit in ("u1", "u2"):
        manager.get_variant_for_user("sona", unit)
    manager.record_conversion(experiment="sona", unit_id="u1", metric="watch_completion", value=1.0)
    manager.record_conversion(experiment="sona", unit_id="u2", metric="engagement_time", value=42.5)
    manager.record_conversion(experiment="sona", unit_id="u2", metric="watch_completion")
    metrics = manager.get_experiment("sona").metrics
    assert [(m.key, m.kind) for m in metrics] == [
        ("conversion", MetricKind.BINARY),
        ("watch_completion", MetricKind.BINARY),
        ("engagement_time", MetricKind.VALUE),
    ]
    counted = manager.get_metrics("sona").variants
    assert sum(v.metrics["watch_completion"].units for v in counted) == 2
    assert sum(v.metrics["engagement_time"].sum for v in counted) == 42.5
    analysis = manager.analyze_experiment("sona", metric="engagement_time")
    assert analysis.kind == "value"


def test_one_batch_naming_an_experiment_by_id_and_key_registers_a_metric_once(
    store: Store,
) -> None:
    manager = ExperimentService(store)
    experiment = started(manager, key="sona")
    manager.get_variant_for_user("sona", "u1")
    batch = [
        abpilot.EventInput(abpilot.EventKind.CONVERSION, "sona", "u1", metric="watch", value=2.0),
        abpilot.EventInput(
            abpilot.EventKind.CONVERSION, experiment.id, "u1", metric="watch", value=3.0
        ),
    ]
    assert manager.record_events(batch).applied == 2
    metrics = manager.get_experiment("sona").metrics
    assert [(m.key, m.kind) for m in metrics] == [
        ("conversion", MetricKind.BINARY),
        ("watch", MetricKind.VALUE),
    ]


def test_a_value_metric_then_needs_values_as_a_declared_one_does(store: Store) -> None:
    manager = ExperimentService(store)
    started(manager, key="sona")
    manager.get_variant_for_user("sona", "u1")
    manager.record_conversion(experiment="sona", unit_id="u1", metric="revenue", value=3.5)
    with pytest.raises(ValidationError) as refused:
        manager.record_conversion(experiment="sona", unit_id="u1", metric="revenue")
    assert refused.value.field == "value"


def test_a_refused_event_registers_nothing(store: Store) -> None:
    manager = ExperimentService(store)
    before = started(manager, key="sona")
    with pytest.raises(UnitNotAssigned):
        manager.record_conversion(experiment="sona", unit_id="stranger", metric="watch")
    manager.get_variant_for_user("sona", "u1")
    with pytest.raises(ValidationError) as bad_name:
        manager.record_conversion(experiment="sona", unit_id="u1", metric="watch completion")
    assert bad_name.value.field == "metric"
    batch = [
        abpilot.EventInput(abpilot.EventKind.CONVERSION, "sona", "u1", metric="first"),
        abpilot.EventInput(abpilot.EventKind.CONVERSION, "sona", "stranger", metric="second"),
    ]
    with pytest.raises(UnitNotAssigned):
        manager.record_events(batch, field_prefix="events")
    assert manager.get_experiment("sona").metrics == before.metrics


def test_declared_metrics_keep_refusing_unknown_names(store: Store) -> None:
    manager = ExperimentService(store)
    started(manager, key="declared", metrics=[{"key": "conversion"}])
    manager.get_variant_for_user("declared", "u1")
    with pytest.raises(ValidationError, match="add it to the experiment's metrics") as refused:
        manager.record_conversion(experiment="declared", unit_id="u1", metric="watch_completion")
    assert refused.value.field == "metric"
    assert [m.key for m in manager.get_experiment("declared").metrics] == ["conversion"]


def test_metrics_may_be_added_while_running_without_moving_anyone(store: Store) -> None:
    manager = ExperimentService(store)
    started(manager, key="declared", metrics=[{"key": "conversion"}], traffic_allocation=0.5)
    units = [f"u{i}" for i in range(300)]
    before = [manager.get_variant_for_user("declared", u) for u in units]
    changes = ExperimentChanges(metrics=[{"key": "conversion"}, {"key": "watch_completion"}])
    updated = manager.update_experiment("declared", changes)
    assert [m.key for m in updated.metrics] == ["conversion", "watch_completion"]
    assert (updated.status, updated.open_metrics) == (ExperimentStatus.RUNNING, False)
    assert [manager.get_variant_for_user("declared", u) for u in units] == before
    inside = next(a for a in before if a)
    manager.record_conversion(
        experiment="declared", unit_id=inside.unit_id, metric="watch_completion"
    )
    counted = manager.get_metrics("declared").variants
    assert sum(v.metrics["watch_completion"].units for v in counted) == 1


@pytest.mark.parametrize(
    "metrics",
    [
        [{"key": "watch_completion"}],  # drops conversion
        [{"key": "conversion", "kind": "value"}, {"key": "watch"}],  # changes its kind
        [{"key": "watch"}, {"key": "conversion"}],  # another primary metric
    ],
)
def test_running_metrics_can_only_be_added_to(store: Store, metrics: list[dict[str, str]]) -> None:
    manager = ExperimentService(store)
    started(manager, key="declared", metrics=[{"key": "conversion"}])
    with pytest.raises(WrongStatus, match="can only be added to") as refused:
        manager.update_experiment("declared", ExperimentChanges(metrics=metrics))
    assert refused.value.field == "metrics[0]"
    assert [m.key for m in manager.get_experiment("declared").metrics] == ["conversion"]


def test_completed_experiments_take_no_metrics(store: Store) -> None:
    manager = ExperimentService(store)
    started(manager, key="done", metrics=[{"key": "conversion"}])
    manager.end_experiment("done", winner="treatment", override=True)
    with pytest.raises(WrongStatus):
        manager.update_experiment(
            "done", ExperimentChanges(metrics=[{"key": "conversion"}, {"key": "late"}])
        )


def test_metrics_listed_in_a_draft_are_declared(store: Store) -> None:
    manager = ExperimentService(store)
    draft = manager.create_experiment(key="draft", variants=[{"key": "a"}, {"key": "b"}])
    assert draft.open_metrics
    listed = manager.update_experiment("draft", ExperimentChanges(metrics=[{"key": "signup"}]))
    assert not listed.open_metrics
    renamed = manager.update_experiment("draft", ExperimentChanges(name="Renamed"))
    assert not renamed.open_metrics


WORKERS, UNITS = 4, 48


def test_workers_registering_at_once_lose_no_event(store_factory: StoreFactory) -> None:
    """Four workers, each its own service on its own store client, send conversions that name
    three new metrics at the same time: every metric is registered once and every conversion
    is counted."""
    services = [ExperimentService(store_factory(), cache_seconds=0) for _ in range(WORKERS)]
    started(services[0], key="race")
    units = [f"u{i}" for i in range(UNITS)]
    for unit in units:
        services[0].get_variant_for_user("race", unit)
    barrier = threading.Barrier(WORKERS, timeout=BARRIER_SECONDS)

    def worker(index: int) -> None:
        barrier.wait()
        for unit in units[index::WORKERS]:
            metric = f"m{int(unit[1:]) % 3}"
            services[index].record_conversion(experiment="race", unit_id=unit, metric=metric)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(worker, range(WORKERS)))
    metrics = services[0].get_experiment("race").metrics
    assert sorted(m.key for m in metrics) == ["conversion", "m0", "m1", "m2"]
    counted = services[0].get_metrics("race").variants
    for name in ("m0", "m1", "m2"):
        assert sum(v.metrics[name].units for v in counted) == UNITS // 3


# ---- assignment and exposure in one step -----------------------------------------------------


class CountingStore:
    """A store that notes every method called on it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.store, name)
        if not callable(found):
            return found

        def noted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return found(*args, **kwargs)

        return noted


def test_assign_with_expose_is_one_store_step(store: Store) -> None:
    counting = CountingStore(store)
    manager = ExperimentService(counting)  # type: ignore[arg-type]
    started(manager, key="recs", traffic_allocation=0.5)
    manager.get_variant_for_user("recs", "warm-up", record=False)  # loads the cache
    inside = next(
        f"u{i}" for i in range(100) if manager.get_variant_for_user("recs", f"u{i}", record=False)
    )
    counting.calls.clear()
    assignment = manager.get_variant_for_user("recs", inside, expose=True)
    assert counting.calls == ["assign_and_expose"]
    assert assignment
    counters = store.get_counters(assignment.experiment_id)
    assert assignment.variant is not None
    mine = counters[assignment.variant.key]
    assert (mine.assigned_units, mine.exposures, mine.unique_units) == (1, 1, 1)


def test_expose_counts_every_call_unless_its_event_id_repeats(store: Store) -> None:
    manager = ExperimentService(store)
    started(manager, key="recs")
    first = manager.get_variant_for_user("recs", "u1", expose=True)
    manager.get_variant_for_user("recs", "u1", expose=True, event_id="page-1")
    manager.get_variant_for_user("recs", "u1", expose=True, event_id="page-1")
    assert first.variant is not None
    counted = {v.key: v for v in manager.get_metrics("recs").variants}[first.variant.key]
    assert (counted.assigned_units, counted.exposures, counted.unique_units) == (1, 2, 1)
    with pytest.raises(ValidationError) as refused:
        manager.get_variant_for_user("recs", "u1", event_id="page-2")
    assert refused.value.field == "event_id"
    with pytest.raises(ValidationError) as unrecorded:
        manager.get_variant_for_user("recs", "u1", record=False, expose=True)
    assert unrecorded.value.field == "expose"


def test_outside_the_traffic_nothing_is_assigned_or_exposed(store: Store) -> None:
    manager = ExperimentService(store)
    experiment = started(manager, key="recs", traffic_allocation=0.01)
    outside = [manager.get_variant_for_user("recs", f"u{i}", expose=True) for i in range(50)]
    left_out = [a for a in outside if not a]
    assert left_out
    assert all(a.variant is None and not a.in_experiment for a in left_out)
    counters = store.get_counters(experiment.id).values()
    assert sum(c.exposures for c in counters) == 50 - len(left_out)


# ---- the rest of OpenInsight's Python API ----------------------------------------------------


def test_openinsight_walk_through_as_written(store: Store) -> None:
    """Assign (``if variant:`` is false outside the traffic), record conversions by
    ``experiment_id``/``variant_id`` with a value, analyse (a winner with its name), end."""
    manager = ExperimentService(store)
    experiment = manager.create_experiment(
        name="Homepage Button Color Test",
        variants=[
            {"name": "Blue Button", "description": "Standard blue button"},
            {"name": "Green Button", "description": "New green button"},
        ],
        experiment_type="ab_test",
        traffic_allocation=0.8,
        description="Testing whether a green CTA button performs better than our standard blue",
        settings={"analysis": {"sample_size_per_variant": 100}},
    )
    manager.start_experiment(experiment.experiment_id)
    shown: dict[str, int] = {}
    outside = conversions = 0
    for i in range(600):
        user_id = f"user{i}"
        variant = manager.get_variant_for_user(experiment.experiment_id, user_id)
        if variant:
            assert variant.variant is not None
            button_color = "green" if variant.variant.name == "Green Button" else "blue"
            shown[button_color] = shown.get(button_color, 0) + 1
            if i % (2 if button_color == "green" else 10) == 0:  # green converts 5x as often
                purchase_amount = 20.0 + i % 7
                manager.record_conversion(
                    experiment_id=experiment.experiment_id,
                    variant_id=variant.variant.key,
                    value=purchase_amount,
                )
                conversions += 1
        else:
            assert (variant.in_experiment, variant.variant) == (False, None)
            outside += 1
    assert outside > 0
    assert set(shown) == {"blue", "green"}
    analysis = manager.analyze_experiment(experiment.experiment_id)
    assert sum(v.conversions for v in analysis.variants) == conversions
    assert analysis.winner is not None
    assert (analysis.winner.name, analysis.winner.key) == ("Green Button", "green-button")
    assert analysis.winner.relative_improvement > 1
    ended = manager.end_experiment(experiment.experiment_id)
    assert (ended.status, ended.winner) == (ExperimentStatus.COMPLETED, "green-button")


def test_aliases_that_disagree_are_refused(store: Store) -> None:
    manager = ExperimentService(store)
    started(manager, key="a")
    started(manager, key="b")
    with pytest.raises(ValidationError) as refused:
        manager.record_conversion(experiment="a", experiment_id="b", variant="control")
    assert refused.value.field == "experiment_id"
    with pytest.raises(ValidationError) as missing:
        manager.record_conversion(variant="control")
    assert missing.value.field == "experiment"


REFUSED_OPTIONS: list[tuple[Callable[[Path], str], dict[str, Any], str]] = [
    (lambda _: "redis://127.0.0.1:1/0", {"key_prefix": "myapp:experiments:"}, "'prefix'"),
    (lambda tmp: f"sqlite:///{tmp / 'x.db'}", {"autosave_interval": 60}, "pool_size"),
    (lambda _: "memory://", {"expire_time": 604800}, "cache_seconds"),
]


@pytest.mark.parametrize(("url", "options", "listed"), REFUSED_OPTIONS)
def test_open_refuses_unknown_options_listing_the_accepted_ones(
    tmp_path: Path, url: Callable[[Path], str], options: dict[str, Any], listed: str
) -> None:
    with pytest.raises(TypeError) as refused:
        abpilot.open(url(tmp_path), **options)
    message = str(refused.value)
    assert next(iter(options)) in message
    assert "accepted: " in message
    assert listed in message
    assert "cache_seconds" in message
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened
