"""Lay new weights onto a rule's bucket ranges, moving the fewest users (pure).

A rule's allocation covers some bucket space (usually ``[0, percentage]``). Re-laying it from zero
for new weights would move users whose variation did not need to change. Instead each variation
whose share shrinks gives up buckets from the end of its last ranges, and the freed pieces go to
the variations that grow, so the bucket space that changes variation is exactly the total
variation distance ``0.5 * sum |w - w'|`` of the space (to the bucket, after rounding the targets
to whole buckets). A variation may then hold several ranges; the SDKs take the first that matches.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from abpilot.featurevisor.datafile import Segment


def integer_shares(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` buckets in proportion to ``weights`` (largest remainder; sums to total)."""
    mass = sum(weights)
    if total <= 0 or mass <= 0:
        return [0 for _ in weights]
    exact = [total * w / mass for w in weights]
    shares = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def rebalance(
    segments: Sequence[Segment], variations: Sequence[str], weights: Mapping[str, float]
) -> list[Segment]:
    """The segments of the same bucket space re-split by ``weights`` with minimal movement."""
    ordered = sorted((s for s in segments if s.length > 0), key=lambda s: s.start)
    space = sum(s.length for s in ordered)
    targets = dict(
        zip(
            variations,
            integer_shares(space, [weights.get(v, 0.0) for v in variations]),
            strict=True,
        )
    )
    held = dict.fromkeys(variations, 0)
    for s in ordered:
        held[s.variation] += s.length
    surplus = {v: held[v] - targets[v] for v in variations if held[v] > targets[v]}
    deficit = {v: targets[v] - held[v] for v in variations if held[v] < targets[v]}

    kept: list[Segment] = []
    freed: list[tuple[int, int]] = []
    for s in reversed(ordered):  # shrink from the end of each variation's last ranges
        give = min(surplus.get(s.variation, 0), s.length)
        if give:
            surplus[s.variation] -= give
            freed.append((s.end - give, s.end))
        if s.length - give:
            kept.append(Segment(s.variation, s.start, s.end - give))
    freed.sort()

    granted: list[Segment] = []
    queue = [v for v in variations if deficit.get(v, 0) > 0]
    for start, end in freed:
        while start < end and queue:
            variation = queue[0]
            take = min(deficit[variation], end - start)
            granted.append(Segment(variation, start, start + take))
            deficit[variation] -= take
            start += take
            if deficit[variation] == 0:
                queue.pop(0)
    return merge([*kept, *granted])


def merge(segments: Sequence[Segment]) -> list[Segment]:
    """Sorted, with touching ranges of one variation joined."""
    out: list[Segment] = []
    for s in sorted(segments, key=lambda s: s.start):
        if out and out[-1].variation == s.variation and out[-1].end == s.start:
            out[-1] = Segment(s.variation, out[-1].start, s.end)
        else:
            out.append(s)
    return out


def shares(segments: Sequence[Segment], variations: Sequence[str]) -> dict[str, float]:
    """Each variation's fraction of the segments' bucket space."""
    space = sum(s.length for s in segments)
    held = dict.fromkeys(variations, 0)
    for s in segments:
        held[s.variation] += s.length
    return {v: (held[v] / space if space else 0.0) for v in variations}


def moved_buckets(before: Sequence[Segment], after: Sequence[Segment]) -> int:
    """Buckets of the space whose variation differs between two layouts of the same space."""
    points = sorted({p for s in (*before, *after) for p in (s.start, s.end)})
    moved = 0
    for lo, hi in itertools.pairwise(points):
        a = next((s.variation for s in before if s.start <= lo and hi <= s.end), None)
        b = next((s.variation for s in after if s.start <= lo and hi <= s.end), None)
        if a != b:
            moved += hi - lo
    return moved
