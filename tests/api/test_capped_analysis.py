"""The analysis of a capped metric through REST on every store, against the same analysis of
the unit-level data posted, capped in NumPy (one threshold for every variant: the absolute cap,
or NumPy's linear quantile of every unit's total, zeros included) and tested by SciPy's Welch
test."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from tests.api.conftest import API, running

VARIANTS = ("control", "green")


def unit_values(seed: int, units: int = 100) -> dict[str, list[list[float]]]:
    """Per variant, each unit's conversion values: heavy tailed, some units twice, some never."""
    rng = np.random.default_rng(seed)
    data = {}
    for v, variant in enumerate(VARIANTS):
        totals = rng.lognormal(2.5 + 0.2 * v, 1.0, size=units).round(2)
        data[variant] = [
            [] if i % 6 == 0 else [float(t)] if i % 4 else [float(t) / 2, float(t) / 2]
            for i, t in enumerate(totals)
        ]
    return data


def post(client: TestClient, data: dict[str, list[list[float]]]) -> None:
    events: list[dict[str, Any]] = []
    for variant, units in data.items():
        for i, values in enumerate(units):
            unit = f"{variant}-{i}"
            events.append(
                {"type": "exposure", "experiment_id": "button", "unit_id": unit, "variant": variant}
            )
            events.extend(
                {
                    "type": "conversion",
                    "experiment_id": "button",
                    "unit_id": unit,
                    "metric": "revenue",
                    "value": value,
                }
                for value in values
            )
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text


def close(got: float | None, want: float, rel: float = 1e-6) -> None:
    assert got is not None
    assert math.isclose(got, want, rel_tol=rel, abs_tol=1e-9), (got, want)


@pytest.mark.parametrize("cap", [{"absolute": 30.0}, {"percentile": 0.9}])
def test_capped_metric_matches_the_capped_units(client: TestClient, cap: dict[str, float]) -> None:
    running(client, metrics=[{"key": "revenue", "kind": "value", "cap": cap}])
    data = unit_values(13)
    post(client, data)
    y = {v: np.array([sum(values) for values in units]) for v, units in data.items()}
    if "absolute" in cap:
        threshold = cap["absolute"]
    else:
        threshold = float(np.quantile(np.concatenate(list(y.values())), cap["percentile"]))
    capped = {v: np.minimum(a, threshold) for v, a in y.items()}
    assert any((capped[v] < y[v]).any() for v in VARIANTS)  # the cap lowers some totals
    welch = stats.ttest_ind(capped["green"], capped["control"], equal_var=False)
    body = client.get(f"{API}/experiments/button/analysis").json()
    close(body["cap"], threshold)
    assert body["cap_percentile"] == cap.get("percentile")
    control, green = body["variants"]
    close(control["mean"], capped["control"].mean())
    close(green["variance"], np.var(capped["green"], ddof=1))
    close(green["difference"], capped["green"].mean() - capped["control"].mean())
    close(green["difference_ci"][0], welch.confidence_interval(0.95)[0])
    close(green["difference_ci"][1], welch.confidence_interval(0.95)[1])
    close(green["p_value"], welch.pvalue)
    assert green["conversions"] == sum(1 for values in data["green"] if values)
