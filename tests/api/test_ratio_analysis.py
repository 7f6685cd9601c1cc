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

from tests.api.conftest import API, new_weights, running

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


def post(client: TestClient, data: dict[str, list[list[float]]], prefix: str = "") -> None:
    events: list[dict[str, Any]] = []
    for variant, units in data.items():
        for i, orders in enumerate(units):
            unit = f"{prefix}{variant}-{i}"
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


def test_a_ratio_with_data_is_not_reported_as_having_none(client: TestClient) -> None:
    """A ratio has no conversions of its own: its data are its parts' totals."""
    running(client, metrics=METRICS)
    empty = client.get(f"{API}/experiments/button/analysis?metric=rpo").json()
    assert empty["reason"] == "insufficient_data"
    post(client, unit_orders(5))
    body = client.get(f"{API}/experiments/button/analysis?metric=rpo").json()
    assert body["variants"][1]["p_value"] is not None
    assert body["reason"] != "insufficient_data", body["message"]


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


def test_a_ratio_within_periods_of_constant_weights(client: TestClient) -> None:
    """Once a bandit moved the weights, a ratio is compared within each period (its
    delta-method difference there) and the periods combined by inverse-variance weights, as
    for a value metric: the world changes between periods (revenue per order doubles) while
    the weights do, which would bias the pooled ratios."""
    exp = running(client, metrics=METRICS, type="bandit")
    first, second = unit_orders(seed=8, units=80), unit_orders(seed=9, units=120)
    second = {
        v: [[2 * value for value in orders] for orders in units] for v, units in second.items()
    }
    second["green"] = second["green"][:40]  # green's share falls in the second period
    post(client, first)
    new_weights(client, exp, {"control": 0.75, "green": 0.25})
    post(client, second, prefix="p2-")
    differences, weights = [], []
    for period in (first, second):
        lin = {v: linearised(units)[1] for v, units in period.items()}
        differences.append(lin["green"].mean() - lin["control"].mean())
        weights.append(1 / sum(np.var(a, ddof=1) / a.size for a in lin.values()))
    w = np.array(weights)
    difference = float(np.dot(w, differences) / w.sum())
    se = 1 / math.sqrt(w.sum())
    body = client.get(f"{API}/experiments/button/analysis").json()
    assert (body["kind"], body["stratified"], body["periods"]) == ("ratio", True, 2)
    assert body["method"] == "delta_ratio_stratified"
    green = body["variants"][1]
    close(green["difference"], difference)
    close(green["p_value"], float(2 * stats.norm.sf(abs(difference) / se)))
    close(green["difference_ci"][0], difference - stats.norm.ppf(0.975) * se)
    # The pooled ratios, mixing the periods in other proportions per variant, differ.
    pooled = {v: linearised(first[v] + second[v])[0] for v in VARIANTS}
    assert abs((pooled["green"] - pooled["control"]) - difference) > 2 * se
