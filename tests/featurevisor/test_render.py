"""Learned weights written into datafiles, checked with the official Python SDK (4.x)."""

from __future__ import annotations

import copy
import json
from typing import Any

import featurevisor
import pytest

from abpilot.featurevisor import DatafileError, parse_datafile, render
from tests.fixtures import FEATUREVISOR_DATAFILES

USERS = 100_000


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FEATUREVISOR_DATAFILES / name).read_text())
    return data


def evaluate(datafile: dict[str, Any], feature: str, **attributes: str) -> list[str | None]:
    """Every user's variation under the Python SDK (None: not in the feature's traffic)."""
    sdk = featurevisor.create_featurevisor({"datafile": datafile, "logLevel": "fatal"})
    return [sdk.get_variation(feature, {"userId": f"user-{i}", **attributes}) for i in range(USERS)]


def test_the_python_sdk_follows_learned_weights_and_moves_the_fewest_users() -> None:
    base = load("v2-production.json")
    parsed = parse_datafile(base)
    learned = {"control": 0.2, "treatment": 0.8}
    served = render(base, parsed, {"checkoutButton": [learned]}, revision="1.1")

    before = evaluate(base, "checkoutButton", country="de")  # the "everyone" rule: 80%
    after = evaluate(served, "checkoutButton", country="de")
    # Users outside the rule's percentage stay outside.
    assert [v is None for v in before] == [v is None for v in after]
    included = [v for v in after if v is not None]
    assert len(included) / USERS == pytest.approx(0.8, abs=0.005)
    share = included.count("treatment") / len(included)
    assert share == pytest.approx(0.8, abs=0.005)
    # 50/50 -> 20/80 moves 30% of the included users, and no one else.
    moved = sum(b != a for b, a in zip(before, after, strict=True)) / len(included)
    assert moved == pytest.approx(0.30, abs=0.005)

    # The NL rule (70/30 in the build) is re-laid too, with its variationWeights kept consistent.
    nl = evaluate(served, "checkoutButton", country="nl")
    assert nl.count("treatment") / USERS == pytest.approx(0.8, abs=0.005)
    rule = served["features"]["checkoutButton"]["traffic"][0]
    assert rule["variationWeights"] == {"control": 20.0, "treatment": 80.0}
    assert [v["weight"] for v in served["features"]["checkoutButton"]["variations"]] == [20, 80]
    assert served["revision"] == "1.1"
    assert (
        served["features"]["checkoutButton"]["hash"] != base["features"]["checkoutButton"]["hash"]
    )
    # Another feature is untouched, and so is the input document.
    assert served["features"]["pricingPage"] == base["features"]["pricingPage"]
    assert base == load("v2-production.json")


def test_three_variations_follow_a_sequence_of_changes() -> None:
    base = load("v2-production.json")
    history = [
        {"control": 0.1, "b": 0.6, "c": 0.3},
        {"control": 0.05, "b": 0.25, "c": 0.7},
    ]
    served = render(base, parse_datafile(base), {"pricingPage": history}, revision="1.2")
    after = evaluate(served, "pricingPage")
    for variation, weight in history[-1].items():
        assert after.count(variation) / USERS == pytest.approx(weight, abs=0.005)
    once = render(base, parse_datafile(base), {"pricingPage": history[:1]}, revision="1.1")
    moved = sum(a != b for a, b in zip(evaluate(once, "pricingPage"), after, strict=True))
    tvd = 0.5 * sum(abs(history[0][v] - history[1][v]) for v in history[0])
    assert moved / USERS == pytest.approx(tvd, abs=0.005)


def test_v1_datafiles_keep_their_shape() -> None:
    base = load("v1-production.json")
    served = render(
        base, parse_datafile(base), {"checkoutButton": [{"control": 0.3, "treatment": 0.7}]}, "1.1"
    )
    feature = served["features"][0]
    assert feature["key"] == "checkoutButton"
    assert "hash" not in feature
    assert feature["traffic"][1]["allocation"] == [
        {"variation": "control", "range": [0, 24_000]},
        {"variation": "treatment", "range": [24_000, 80_000]},
    ]


def test_forced_rules_and_force_entries_are_left_alone() -> None:
    base = load("v2-production.json")
    doc = copy.deepcopy(base)
    feature = doc["features"]["checkoutButton"]
    feature["traffic"][0]["variation"] = "control"
    feature["force"] = [{"conditions": [], "variation": "treatment"}]
    served = render(
        doc, parse_datafile(doc), {"checkoutButton": [{"control": 0.9, "treatment": 0.1}]}, "9"
    )
    out = served["features"]["checkoutButton"]
    assert out["traffic"][0] == feature["traffic"][0]
    assert out["force"] == feature["force"]
    assert out["traffic"][1]["allocation"] != feature["traffic"][1]["allocation"]


def test_no_history_serves_the_build_as_it_is() -> None:
    base = load("v2-staging.json")
    assert render(base, parse_datafile(base), {}, revision="ignored") == base


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda d: d.update(schemaVersion="3"), "schemaVersion", "must be one of 1, 2"),
        (lambda d: d.update(features=[]), "features", "an object keyed by feature key"),
        (
            lambda d: d["features"]["checkoutButton"]["traffic"][1]["allocation"][0].update(
                variation="nope"
            ),
            "features.checkoutButton.traffic[1].allocation[0].variation",
            "does not have",
        ),
        (
            lambda d: d["features"]["checkoutButton"]["traffic"][1]["allocation"][0].update(
                range=[0, 200_000]
            ),
            "features.checkoutButton.traffic[1].allocation[0].range",
            "0 <= start <= end <= 100000",
        ),
        (
            lambda d: d["features"]["checkoutButton"]["traffic"][1].update(percentage="80"),
            "features.checkoutButton.traffic[1].percentage",
            "integer from 0 to 100000",
        ),
        (
            lambda d: d["features"]["checkoutButton"]["traffic"][1]["allocation"][0].update(
                range=[0, 50_000]
            ),
            "features.checkoutButton.traffic[1].allocation",
            "overlap",
        ),
    ],
)
def test_malformed_datafiles_are_refused_with_the_path(
    mutate: Any, field: str, message: str
) -> None:
    doc = load("v2-production.json")
    mutate(doc)
    with pytest.raises(DatafileError, match=message) as caught:
        parse_datafile(doc)
    assert caught.value.field == field


def test_every_sample_datafile_parses() -> None:
    paths = sorted(FEATUREVISOR_DATAFILES.glob("*.json"))
    assert paths, f"no sample datafile in {FEATUREVISOR_DATAFILES}"
    schemas = set()
    for path in paths:
        doc = json.loads(path.read_text())
        parsed = parse_datafile(doc)
        assert parsed.features["checkoutButton"].adaptive, path.name
        schemas.add(doc["schemaVersion"])
    assert schemas == {"1", "2"}  # the samples cover both datafile schemas
