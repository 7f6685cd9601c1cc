"""Deterministic assignment: salted MurmurHash3 bucketing (docs/architecture.md §5).

The variant hash is MurmurHash3 x86 32-bit (seed 0) of ``"{salt}.{experiment_key}.{unit_id}"``;
bucket = floor(hash / 2**32 * 10000), so 0..9999. The traffic gate uses an independent hash of
``"{salt}.traffic.{experiment_key}.{unit_id}"``: raising traffic from 20% to 50% keeps every unit
already included in the experiment, in the same variant.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import mmh3
import numpy as np
import numpy.typing as npt

from abpilot.domain.experiment import Experiment

BUCKETS = 10_000
NOT_IN_EXPERIMENT = -1


def bucket(key: str) -> int:
    """Bucket 0..9999 of a string: floor(murmur3_32(key) / 2**32 * 10000), in integer math.

    The UTF-8 bytes are hashed (the same value mmh3 gives for the ``str``): text UTF-8 cannot
    carry then raises ``UnicodeEncodeError`` here instead of crashing mmh3's C code."""
    return (mmh3.hash(key.encode(), 0, signed=False) * BUCKETS) >> 32


def bucket_bounds(weights: Sequence[float]) -> tuple[int, ...]:
    """Exclusive upper bucket bound of each variant; the last bound is always 10000."""
    total = 0.0
    bounds = []
    for weight in weights:
        total += weight
        bounds.append(round(total * BUCKETS))
    bounds[-1] = BUCKETS
    return tuple(bounds)


@dataclass(frozen=True, slots=True)
class Bucketing:
    """Everything needed to assign units of one experiment, precomputed once per definition."""

    variant_prefix: str
    traffic_prefix: str
    traffic_threshold: int
    bounds: tuple[int, ...]

    @classmethod
    def for_experiment(
        cls, experiment: Experiment, weights: Sequence[float] | None = None
    ) -> Bucketing:
        """Bucketing by the experiment's weights, or by ``weights`` (a bandit's current ones)."""
        salt, key = experiment.salt, experiment.key
        return cls(
            variant_prefix=f"{salt}.{key}.",
            traffic_prefix=f"{salt}.traffic.{key}.",
            traffic_threshold=round(experiment.traffic_allocation * BUCKETS),
            bounds=bucket_bounds(weights or [v.weight for v in experiment.variants]),
        )

    def variant_index(self, unit_id: str) -> int:
        """Index of the unit's variant, or -1 when the unit is outside the traffic allocation."""
        # ``bucket`` inlined: this runs on every assignment, and the call is a fifth of it
        if self.traffic_threshold < BUCKETS and (
            (mmh3.hash((self.traffic_prefix + unit_id).encode(), 0, False) * BUCKETS) >> 32
            >= self.traffic_threshold
        ):
            return NOT_IN_EXPERIMENT
        hashed = mmh3.hash((self.variant_prefix + unit_id).encode(), 0, False)
        return bisect_right(self.bounds, (hashed * BUCKETS) >> 32)

    def variant_indices(self, unit_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Vectorised ``variant_index`` for many units (-1 marks units outside the traffic)."""
        hash32 = mmh3.hash
        prefix = self.variant_prefix
        hashes = np.fromiter(
            (hash32((prefix + u).encode(), 0, False) for u in unit_ids),
            dtype=np.uint64,
            count=len(unit_ids),
        )
        buckets = (hashes * np.uint64(BUCKETS)) >> np.uint64(32)
        indices = np.searchsorted(np.asarray(self.bounds, dtype=np.uint64), buckets, side="right")
        indices = indices.astype(np.int64)
        if self.traffic_threshold < BUCKETS:
            tprefix = self.traffic_prefix
            traffic = np.fromiter(
                (hash32((tprefix + u).encode(), 0, False) for u in unit_ids),
                dtype=np.uint64,
                count=len(unit_ids),
            )
            out = ((traffic * np.uint64(BUCKETS)) >> np.uint64(32)) >= self.traffic_threshold
            indices[out] = NOT_IN_EXPERIMENT
        return indices
