"""A small FeatureVisor v2 datafile written into a ``DATAFILES_DIR``, for tests that serve one."""

from __future__ import annotations

import json
from pathlib import Path

PATH = "production/datafile.json"
FEATURE = "checkoutButton"
DATAFILE = {
    "schemaVersion": "2",
    "revision": "1",
    "segments": {},
    "features": {
        FEATURE: {
            "bucketBy": "userId",
            "variations": [
                {"value": "control", "weight": 50},
                {"value": "treatment", "weight": 50},
            ],
            "traffic": [
                {
                    "key": "everyone",
                    "segments": "*",
                    "percentage": 100000,
                    "allocation": [
                        {"variation": "control", "range": [0, 50000]},
                        {"variation": "treatment", "range": [50000, 100000]},
                    ],
                }
            ],
        }
    },
}


def write_datafiles(root: Path) -> Path:
    """``root`` with the datafile at ``PATH`` under it (the directory to set as DATAFILES_DIR)."""
    target = root / PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(DATAFILE), encoding="utf-8")
    return root
