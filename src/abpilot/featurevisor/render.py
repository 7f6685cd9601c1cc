"""Write learned weights into a FeatureVisor datafile so that the SDKs follow them (pure).

The SDKs bucket only by ``traffic[].allocation[].range`` (docs/architecture.md §5), so for every
feature with learned weights each bucketing rule's ranges are re-laid by ``layout.rebalance``,
replaying the feature's weight changes in order from the built datafile: every change moves the
fewest users, and every worker derives the same ranges from the same history.
``variations[].weight`` and v2 ``variationWeights`` are set to the weights in force, the revision is
the caller's, and in v2 the feature's ``hash`` changes with its ranges so SDKs see the feature as
changed. Rules that force one ``variation``, features without variations, ``force`` entries and
everything else are left as they are."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from abpilot.featurevisor.datafile import Datafile, Segment, feature_documents
from abpilot.featurevisor.layout import integer_shares, rebalance

Weights = Mapping[str, float]


def percentages(variations: Sequence[str], weights: Weights) -> dict[str, float]:
    """Weights as percentages with two decimals that sum to exactly 100 (as the CLI writes)."""
    hundredths = integer_shares(10_000, [weights.get(v, 0.0) for v in variations])
    return {v: h / 100 for v, h in zip(variations, hundredths, strict=True)}


def feature_hash(previous: str, traffic: Any) -> str:
    """A new 10-character hash for a v2 feature whose ranges changed (deterministic)."""
    digest = hashlib.sha256((previous + json.dumps(traffic, sort_keys=True)).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:10]


def render(
    document: Mapping[str, Any],
    parsed: Datafile,
    history: Mapping[str, Sequence[Weights]],
    revision: str,
) -> dict[str, Any]:
    """A copy of ``document`` with each feature's weight changes (``history``: feature key ->
    weights by variation value, oldest first) laid into its ranges. Features absent from
    ``history`` or with an empty one are copied unchanged; so is the revision when nothing
    changed."""
    out = copy.deepcopy(dict(document))
    changed = False
    for key, feature_doc, _ in feature_documents(out):
        changes = history.get(key) or ()
        feature = parsed.features.get(key)
        if not changes or feature is None or not feature.adaptive:
            continue
        changed = True
        current = changes[-1]
        for rule_doc, rule in zip(feature_doc.get("traffic", []), feature.rules, strict=True):
            if rule.forced or not rule.allocation:
                continue
            segments: list[Segment] = list(rule.allocation)
            for weights in changes:
                segments = rebalance(segments, feature.variations, weights)
            rule_doc["allocation"] = [
                {"variation": s.variation, "range": [s.start, s.end]} for s in segments
            ]
            if "variationWeights" in rule_doc:
                rule_doc["variationWeights"] = percentages(feature.variations, current)
        percent = percentages(feature.variations, current)
        for variation in feature_doc.get("variations", []):
            variation["weight"] = percent[variation["value"]]
        if parsed.schema_version == "2":
            feature_doc["hash"] = feature_hash(
                str(feature_doc.get("hash", "")), feature_doc.get("traffic")
            )
    if changed:
        out["revision"] = revision
    return out
