"""FeatureVisor datafiles, schema v1 and v2: read and validate what the companion needs (pure).

Only the parts the SDKs bucket by are modelled (docs/architecture.md §5): each feature's variations
and its traffic rules with their ``percentage`` and ``allocation`` ranges. Everything else in the
document (segments, attributes, variables, force entries) is carried through untouched by
``render``.

A datafile that breaks these rules is refused with a ``DatafileError`` naming the JSON path, so
the registry can report it and keep serving the last good one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from abpilot.domain.errors import ValidationError

MAX_BUCKET = 100_000
SCHEMA_VERSIONS = ("1", "2")


class DatafileError(ValidationError):
    """The datafile is not one the FeatureVisor SDKs could evaluate."""

    code = "invalid_datafile"


@dataclass(frozen=True, slots=True)
class Segment:
    """Buckets ``start..end`` of a rule served ``variation``. The SDKs match ``start <= bucket <=
    end``, first entry first, so neighbours share a boundary and a length is ``end - start``."""

    variation: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    percentage: int
    allocation: tuple[Segment, ...]
    forced: bool  # the rule names one ``variation`` for everyone it matches


@dataclass(frozen=True, slots=True)
class Feature:
    key: str
    variations: tuple[str, ...]
    weights: tuple[float, ...]  # variations[].weight as fractions summing to 1
    rules: tuple[Rule, ...]

    @property
    def adaptive(self) -> bool:
        """Whether learned weights can reach users: two or more variations, and a rule that
        buckets among them."""
        return len(self.variations) >= 2 and any(
            not rule.forced and rule.allocation for rule in self.rules
        )


@dataclass(frozen=True, slots=True)
class Datafile:
    schema_version: str
    revision: str
    features: Mapping[str, Feature]


def feature_documents(document: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(key, feature object, JSON path) of every feature, whatever the schema version."""
    features = document["features"]
    if isinstance(features, list):
        for i, feature in enumerate(features):
            yield feature["key"], feature, f"features[{i}]"
    else:
        for key, feature in features.items():
            yield key, feature, f"features.{key}"


def parse_datafile(document: Any) -> Datafile:
    """Check a decoded datafile and return its features; raise ``DatafileError`` otherwise."""
    if not isinstance(document, dict):
        raise DatafileError("a datafile must be a JSON object", field="$")
    version = document.get("schemaVersion")
    if version not in SCHEMA_VERSIONS:
        raise DatafileError(
            f"schemaVersion must be one of {', '.join(SCHEMA_VERSIONS)} (got {version!r})",
            field="schemaVersion",
        )
    revision = document.get("revision")
    if not isinstance(revision, str | int) or isinstance(revision, bool):
        raise DatafileError("revision must be a string", field="revision")
    features = document.get("features")
    expected: type = list if version == "1" else dict
    if not isinstance(features, expected):
        kind = "a list" if version == "1" else "an object keyed by feature key"
        raise DatafileError(f"features must be {kind} in schema v{version}", field="features")
    if isinstance(features, list):
        for i, feature in enumerate(features):
            if not isinstance(feature, dict) or not isinstance(feature.get("key"), str):
                raise DatafileError("a feature needs a string key", field=f"features[{i}].key")
    parsed: dict[str, Feature] = {}
    for key, feature, path in feature_documents(document):
        if key in parsed:
            raise DatafileError(f"feature '{key}' is defined twice", field=path)
        parsed[key] = _feature(key, feature, path)
    return Datafile(schema_version=version, revision=str(revision), features=parsed)


def _feature(key: str, feature: Any, path: str) -> Feature:
    if not isinstance(feature, dict):
        raise DatafileError("a feature must be an object", field=path)
    raw_variations = feature.get("variations") or []
    if not isinstance(raw_variations, list):
        raise DatafileError("variations must be a list", field=f"{path}.variations")
    values: list[str] = []
    raw_weights: list[float] = []
    for i, variation in enumerate(raw_variations):
        where = f"{path}.variations[{i}]"
        value = variation.get("value") if isinstance(variation, dict) else None
        if not isinstance(value, str):
            raise DatafileError("a variation needs a string value", field=f"{where}.value")
        if value in values:
            raise DatafileError(f"variation '{value}' is listed twice", field=f"{where}.value")
        weight = variation.get("weight", 0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise DatafileError("a variation weight must be a number >= 0", field=f"{where}.weight")
        values.append(value)
        raw_weights.append(float(weight))
    traffic = feature.get("traffic", [])
    if not isinstance(traffic, list):
        raise DatafileError("traffic must be a list of rules", field=f"{path}.traffic")
    rules = tuple(_rule(rule, f"{path}.traffic[{i}]", values) for i, rule in enumerate(traffic))
    total = sum(raw_weights)
    weights = (
        tuple(w / total for w in raw_weights)
        if total > 0
        else tuple(1.0 / len(values) for _ in values)
    )
    return Feature(key=key, variations=tuple(values), weights=weights, rules=rules)


def _rule(rule: Any, path: str, variations: Sequence[str]) -> Rule:
    if not isinstance(rule, dict):
        raise DatafileError("a traffic rule must be an object", field=path)
    percentage = rule.get("percentage")
    if (
        isinstance(percentage, bool)
        or not isinstance(percentage, int)
        or not 0 <= percentage <= MAX_BUCKET
    ):
        raise DatafileError(
            f"percentage must be an integer from 0 to {MAX_BUCKET} (got {percentage!r})",
            field=f"{path}.percentage",
        )
    raw = rule.get("allocation") or []
    if not isinstance(raw, list):
        raise DatafileError("allocation must be a list", field=f"{path}.allocation")
    segments = []
    for i, entry in enumerate(raw):
        where = f"{path}.allocation[{i}]"
        variation = entry.get("variation") if isinstance(entry, dict) else None
        if variation not in variations:
            raise DatafileError(
                f"allocation names variation {variation!r}, which the feature does not have "
                f"(variations: {', '.join(variations) or 'none'})",
                field=f"{where}.variation",
            )
        bounds = entry.get("range")
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            or not 0 <= bounds[0] <= bounds[1] <= MAX_BUCKET
        ):
            raise DatafileError(
                f"range must be [start, end] with 0 <= start <= end <= {MAX_BUCKET} "
                f"(got {bounds!r})",
                field=f"{where}.range",
            )
        segments.append(Segment(str(variation), bounds[0], bounds[1]))
    ordered = sorted(segments, key=lambda s: (s.start, s.end))
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise DatafileError(
                f"allocation ranges overlap ({before.start}-{before.end} and "
                f"{after.start}-{after.end})",
                field=f"{path}.allocation",
            )
    key = rule.get("key")
    return Rule(
        key=str(key) if key is not None else "",
        percentage=percentage,
        allocation=tuple(segments),
        forced=rule.get("variation") is not None,
    )
