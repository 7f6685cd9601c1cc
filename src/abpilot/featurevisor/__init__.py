"""The FeatureVisor companion's pure core: datafiles (``datafile``, ``registry``), range
layouts (``layout``), rendering learned weights (``render``).

Its other parts stay in their layers: the service ``abpilot.service.companion`` (``Companion``:
datafiles synced from disk into the store's ``featurevisor`` documents, served with learned
weights, fed by exposures and conversions) with ``abpilot.service.companion_features`` (a
feature as a bandit experiment); the REST face ``api/routes/featurevisor.py`` with
``api/schemas/featurevisor.py``; OFREP flags leave companion features to the SDKs
(``abpilot.service.flags``)."""

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
