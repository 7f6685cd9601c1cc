"""The FeatureVisor companion's pure core: datafiles, range layouts, rendering learned weights."""

from abpilot.featurevisor.datafile import (
    Datafile,
    DatafileError,
    Feature,
    Rule,
    Segment,
    parse_datafile,
)
from abpilot.featurevisor.layout import moved_buckets, rebalance, shares
from abpilot.featurevisor.render import render

__all__ = [
    "Datafile",
    "DatafileError",
    "Feature",
    "Rule",
    "Segment",
    "moved_buckets",
    "parse_datafile",
    "rebalance",
    "render",
    "shares",
]
