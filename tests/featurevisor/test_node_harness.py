"""The Node harness itself: the official FeatureVisor SDKs and CLI, checked against datafiles.

None of this uses abpilot: it pins down what the reference implementation does, so tests that
compare abpilot with FeatureVisor compare with the real thing.

Bucketing, as both SDK majors do it (and as checked per user below): the bucket key is
``f"{userId}.{featureKey}"``, hash = MurmurHash3 x86 32-bit with seed 1 (unsigned), and
bucket = floor(hash / 2**32 * 100000), an integer in 0..99999.

Boundary semantics, observed with the SDKs (``test_sdk_agrees_with_mmh3_per_user``):
- an allocation range ``[start, end]`` is inclusive at BOTH ends and the first entry that
  contains the bucket wins, so a bucket exactly equal to a boundary goes to the EARLIER entry
  (bucket 40000 → "control" for ranges [0, 40000], [40000, 80000]);
- a rule's percentage is inclusive too: bucket == percentage is IN (bucket 80000 →
  "treatment" under percentage 80000) and percentage + 1 is out (no variation).
So a rule with percentage 80000 serves 80001 of the 100000 buckets, and the first entry of an
allocation gets one bucket more than its width.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import mmh3
import pytest

from tests.featurevisor.node_sdk import (
    build_v1_project,
    evaluate,
    require_node,
)
from tests.fixtures import FEATUREVISOR_DATAFILES, FEATUREVISOR_PROJECT_V1

BUCKETS = 100_000
USERS = 100_000
FEATURE = "checkoutButton"


def bucket(user_id: str, feature: str) -> int:
    """The SDKs' bucket, computed the way their JavaScript does (float64 arithmetic)."""
    hashed = mmh3.hash(f"{user_id}.{feature}", 1, signed=False)
    return math.floor(hashed / 2**32 * BUCKETS)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def feature_of(datafile: dict[str, Any], key: str) -> dict[str, Any]:
    features = datafile["features"]
    if datafile["schemaVersion"] == "1":  # a list of features with "key"
        found: dict[str, Any] = next(f for f in features if f["key"] == key)
        return found
    by_key: dict[str, Any] = features[key]  # schemaVersion "2": keyed by feature key
    return by_key


def rule_of(datafile: dict[str, Any], feature: str, rule_key: str) -> dict[str, Any]:
    rules = feature_of(datafile, feature)["traffic"]
    rule: dict[str, Any] = next(r for r in rules if r["key"] == rule_key)
    # Users without a "country" attribute match no segment-gated rule before it.
    for earlier in rules[: rules.index(rule)]:
        assert earlier["segments"] != "*", f"rule {earlier['key']} would shadow {rule_key}"
    return rule


def allocate(rule: dict[str, Any], bucket_value: int) -> str | None:
    """The variation that the observed semantics (module docstring) give a bucket."""
    if bucket_value > rule["percentage"]:
        return None
    for entry in rule["allocation"]:
        start, end = entry["range"]
        if start <= bucket_value <= end:
            variation: str = entry["variation"]
            return variation
    return None


def expected_shares(rule: dict[str, Any]) -> dict[str, float]:
    counts = Counter(str(allocate(rule, b)) for b in range(BUCKETS))
    return {variation: n / BUCKETS for variation, n in counts.items()}


def assert_shares(counts: dict[str, int], expected: dict[str, float], users: int) -> None:
    assert sum(counts.values()) == users
    assert set(counts) <= set(expected) | {"null"}
    for variation, share in expected.items():
        observed = counts.get(variation, 0) / users
        assert observed == pytest.approx(share, abs=0.005), (variation, observed, share)


@pytest.mark.parametrize(
    ("sdk_major", "datafile_name"),
    [(1, "v1-production.json"), (2, "v2-production.json")],
)
def test_shares_match_datafile_ranges(sdk_major: int, datafile_name: str) -> None:
    require_node()
    path = FEATUREVISOR_DATAFILES / datafile_name
    rule = rule_of(load(path), FEATURE, "everyone")
    expected = expected_shares(rule)
    # percentage 80000 with ranges [0, 40000] and [40000, 80000]: about 40/40/20.
    assert expected["None"] == pytest.approx(1 - rule["percentage"] / BUCKETS, abs=1e-4)
    expected["null"] = expected.pop("None")

    result = evaluate(sdk_major, path, FEATURE, USERS)

    assert result["sdk"].startswith(f"@featurevisor/sdk@{sdk_major}.")
    assert_shares(result["counts"], expected, USERS)


def test_known_user_bucket() -> None:
    assert bucket("user-1", FEATURE) == 92762


def _first_user_with_bucket(targets: set[int], limit: int = 2_000_000) -> dict[int, int]:
    found: dict[int, int] = {}
    for i in range(limit):
        b = bucket(f"user-{i}", FEATURE)
        if b in targets and b not in found:
            found[b] = i
            if len(found) == len(targets):
                break
    assert set(found) == targets, f"no user-<i> below {limit} for buckets {targets - set(found)}"
    return found


@pytest.mark.parametrize(
    ("sdk_major", "datafile_name"),
    [(1, "v1-production.json"), (2, "v2-production.json")],
)
def test_sdk_agrees_with_mmh3_per_user(sdk_major: int, datafile_name: str) -> None:
    require_node()
    path = FEATUREVISOR_DATAFILES / datafile_name
    rule = rule_of(load(path), FEATURE, "everyone")
    percentage: int = rule["percentage"]
    inner_bounds = {entry["range"][1] for entry in rule["allocation"]} - {percentage, BUCKETS}
    # Exact boundaries and their neighbours. For this datafile the users are user-24993 (0),
    # user-67517 (40000), user-24685 (40001), user-51076 (80000), user-161351 (80001).
    targets = {0, *inner_bounds, *(b + 1 for b in inner_bounds), percentage, percentage + 1}
    boundary_users = _first_user_with_bucket(targets)
    users = max(USERS, *boundary_users.values()) + 1

    result = evaluate(sdk_major, path, FEATURE, users, dump=True)
    variations: list[str | None] = result["variations"]
    assert len(variations) == users

    predicted = [allocate(rule, bucket(f"user-{i}", FEATURE)) for i in range(users)]
    mismatches = [i for i in range(users) if variations[i] != predicted[i]]
    assert mismatches == [], f"{len(mismatches)} users differ, first user-{mismatches[0]}"

    # The boundary facts spelled out (predicted == SDK was checked for these users above).
    assert variations[1] is None  # bucket 92762 > 80000
    for bound in inner_bounds:
        earlier = next(e for e in rule["allocation"] if e["range"][1] == bound)
        later = next(e for e in rule["allocation"] if e["range"][0] == bound)
        assert variations[boundary_users[bound]] == earlier["variation"]  # end is inclusive
        assert variations[boundary_users[bound + 1]] == later["variation"]
    last = next(e for e in rule["allocation"] if e["range"][1] == percentage)
    assert variations[boundary_users[percentage]] == last["variation"]  # == percentage is in
    assert variations[boundary_users[percentage + 1]] is None  # above percentage is out


@pytest.fixture(scope="module")
def built_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_node()
    return build_v1_project(FEATUREVISOR_PROJECT_V1, tmp_path_factory.mktemp("fv-v1"))


def test_cli_builds_v1_datafiles(built_v1: Path) -> None:
    built = sorted(p.relative_to(built_v1).as_posix() for p in built_v1.rglob("*.json"))
    assert built == ["production/datafile-tag-all.json", "staging/datafile-tag-all.json"]
    datafile = load(built_v1 / "production" / "datafile-tag-all.json")
    assert datafile["schemaVersion"] == "1"
    assert {f["key"] for f in datafile["features"]} >= {"checkoutButton", "pricingPage"}


@pytest.mark.parametrize(
    ("feature", "rule_key"), [("checkoutButton", "everyone"), ("pricingPage", "1")]
)
def test_sdk1_evaluates_built_datafile(built_v1: Path, feature: str, rule_key: str) -> None:
    path = built_v1 / "production" / "datafile-tag-all.json"
    rule = rule_of(load(path), feature, rule_key)
    expected = expected_shares(rule)
    expected["null"] = expected.pop("None", 0.0)

    result = evaluate(1, path, feature, USERS)

    assert result["sdk"].startswith("@featurevisor/sdk@1.")
    assert_shares(result["counts"], expected, USERS)
