"""How a daily snapshot is stored: one shared document per experiment and UTC day.

The namespace is ``snapshots/<experiment id>``, the key the day (``YYYY-MM-DD``), the content
canonical JSON (sorted keys, no NaN) of the day, the moment it was taken and, per variant, its
units and per metric the population, converting units, sum and sum of squares; the digest is
the content's SHA-256. ``service/snapshots.py`` takes and reads them; ``service/transfer.py``
exports them as rows and writes them back on import with the same encoding, so a snapshot that
went through a round trip is the same document, digest included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

NAMESPACE_PREFIX = "snapshots/"


def namespace(experiment_id: str) -> str:
    return f"{NAMESPACE_PREFIX}{experiment_id}"


def encode(
    *, day: date, taken_at: datetime, variants: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    """(content, digest) of one snapshot. ``variants``: ``{"key", "units", "metrics": {name:
    {"n", "conversions", "sum", "sum_squares"}}}`` each; counts are written as integers and sums
    as floats whatever numbers they arrive as."""
    content = json.dumps(
        {
            "date": day.isoformat(),
            "taken_at": taken_at.astimezone(UTC).isoformat(),
            "variants": [
                {
                    "key": str(v["key"]),
                    "units": int(v["units"]),
                    "metrics": {
                        str(name): {
                            "n": int(m["n"]),
                            "conversions": int(m["conversions"]),
                            "sum": float(m["sum"]),
                            "sum_squares": float(m["sum_squares"]),
                        }
                        for name, m in v["metrics"].items()
                    },
                }
                for v in variants
            ],
        },
        allow_nan=False,
        sort_keys=True,
    )
    return content, hashlib.sha256(content.encode()).hexdigest()
