"""The analysis of a ratio metric (revenue per order) through REST on every store, against the
delta method computed independently on the unit-level data posted: each unit's linearised value
R + (N_u - R D_u) / mean(D) has the ratio R as its mean and the delta-method variance of R over
n as the variance of its mean, so SciPy's Welch test on those values gives the difference,
interval and p-value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from tests.api.conftest import API, running

METRICS = [
    {"key": "rpo", "kind": "ratio", "numerator": "revenue", "denominator": "orders"},
    {"key": "revenue", "kind": "value"},
    {"key": "orders", "kind": "value"},
]
VARIANTS = ("control", "green")


def unit_orders(seed: int = 5, units: int = 100) -> dict[str, list[list[float]]]:
    """Per variant, each unit's orders' revenues (none for some units)."""
    rng = np.random.default_rng(seed)
    data = {}
    for v, variant in enumerate(VARIANTS):
        counts = rng.poisson(1.3, size=units)
        data[variant] = [
            [round(float(rng.gamma(3.0, 8.0 + 2.0 * v)), 2) for _ in range(k)] for k in counts
        ]
    return data


def post(client: TestClient, data: dict[str, list[list[float]]]) -> None:
    events: list[dict[str, Any]] = []
    for variant, units in data.items():
        for i, orders in enumerate(units):
            unit = f"{variant}-{i}"
            events.append(
                {"type": "exposure", "experiment_id": "button", "unit_id": unit, "variant": variant}
            )
            for value in orders:
                for metric, amount in (("revenue", value), ("orders", 1.0)):
                    events.append(
                        {
                            "type": "conversion",
                            "experiment_id": "button",
                            "unit_id": unit,
                            "metric": metric,
                            "value": amount,
                        }
                    )
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text


def linearised(orders: list[list[float]]) -> tuple[float, np.ndarray]:
    n = np.array([sum(o) for o in orders])
    d = np.array([float(len(o)) for o in orders])
    r = n.sum() / d.sum()
    return r, r + (n - r * d) / d.mean()


def close(got: float | None, want: float, rel: float = 1e-6) -> None:
    assert got is not None
    assert math.isclose(got, want, rel_tol=rel, abs_tol=1e-9), (got, want)


@pytest.mark.parametrize("seed", [5, 6])
def test_ratio_metric_matches_the_delta_method_on_the_units(client: TestClient, seed: int) -> None:
    running(client, metrics=METRICS)
    data = unit_orders(seed)
    post(client, data)
    (r_c, z_c), (r_t, z_t) = (linearised(data[v]) for v in VARIANTS)
    welch = stats.ttest_ind(z_t, z_c, equal_var=False)
    var_t, var_c = np.var(z_t, ddof=1) / z_t.size, np.var(z_c, ddof=1) / z_c.size
    response = client.get(f"{API}/experiments/button/analysis?metric=rpo")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "ratio"
    assert body["method"] == "delta_ratio"
    control, green = body["variants"]
    close(control["mean"], r_c, 1e-9)
    close(green["mean"], r_t, 1e-9)
    close(green["variance"] / green["units"], var_t)
    close(green["difference"], r_t - r_c, 1e-9)
    close(green["difference_ci"][0], welch.confidence_interval(0.95)[0])
    close(green["difference_ci"][1], welch.confidence_interval(0.95)[1])
    close(green["p_value"], welch.pvalue)
    close(green["lift"], r_t / r_c - 1, 1e-9)
    lift_se = math.sqrt(var_t / r_c**2 + r_t**2 * var_c / r_c**4)
    low = green["lift_ci"][0]
    assert low is not None
    assert (r_t / r_c - 1) - low > 1.9 * lift_se  # a Welch t interval on the delta variance
    assert (r_t / r_c - 1) - low < 2.1 * lift_se


def test_sequential_ratio_is_always_valid(client: TestClient) -> None:
    tau = 3.0
    running(client, metrics=METRICS, settings={"analysis": {"tau": tau}})
    data = unit_orders(9)
    post(client, data)
    (r_c, z_c), (r_t, z_t) = (linearised(data[v]) for v in VARIANTS)
    v = float(np.var(z_t, ddof=1) / z_t.size + np.var(z_c, ddof=1) / z_c.size)
    d, t2 = r_t - r_c, tau * tau
    log_lambda = 0.5 * math.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    body = client.get(f"{API}/experiments/button/analysis?metric=rpo&sequential=true").json()
    green = body["variants"][1]
    assert body["method"] == "delta_ratio_msprt"
    close(green["p_value"], min(1.0, math.exp(-log_lambda)) if log_lambda > 0 else 1.0)
    half = math.sqrt(v * (v + t2) / t2 * math.log((v + t2) / (v * 0.05**2)))
    close(green["difference_ci"][1], d + half)
