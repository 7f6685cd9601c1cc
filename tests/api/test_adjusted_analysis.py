"""The analysis of an adjusted metric (CUPED) through REST on every store, against an independent
computation on the unit-level data posted: NumPy for theta and the adjusted values, SciPy's
Welch test on the units' y - theta x (the adjusted difference is the difference of their means)
and on y for the unadjusted figures beside it, the mSPRT closed form under ``sequential=true``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from tests.api.conftest import API, new_weights, running

METRICS = [
    {"key": "revenue", "kind": "value", "covariate": "pre_revenue"},
    {"key": "conversion", "kind": "binary"},
]
VARIANTS = ("control", "green")


def unit_data(seed: int = 7, units: int = 120) -> dict[str, dict[str, Any]]:
    """Per variant: each unit's covariate (None: not sent, counts as 0) and its conversions'
    values (some units convert twice, some never)."""
    rng = np.random.default_rng(seed)
    data: dict[str, dict[str, Any]] = {}
    for v, variant in enumerate(VARIANTS):
        x = rng.gamma(2.0, 10.0, size=units).round(2)
        y_base = 0.8 * x + rng.normal(0, 6, size=units) + 3.0 * v
        values = []
        for i in range(units):
            total = max(0.0, float(y_base[i]))
            if i % 7 == 0:
                values.append([])  # never converts
            elif i % 5 == 0:
                values.append([round(total / 2, 2), round(total / 2, 2)])  # twice
            else:
                values.append([round(total, 2)])
        covariates: list[float | None] = [float(a) for a in x]
        covariates[3] = None  # exposed without the covariate: x = 0
        data[variant] = {"x": covariates, "values": values}
    return data


def post(client: TestClient, data: dict[str, dict[str, Any]], prefix: str = "") -> None:
    """Each unit's exposure (with its covariate) and conversions; ``prefix`` gives another
    period's units ids of their own."""
    events: list[dict[str, Any]] = []
    for variant, d in data.items():
        for i, (x, values) in enumerate(zip(d["x"], d["values"], strict=True)):
            unit = f"{variant}-{prefix}{i}"
            exposure: dict[str, Any] = {
                "type": "exposure",
                "experiment_id": "button",
                "unit_id": unit,
                "variant": variant,
            }
            if x is not None:
                exposure["covariates"] = {"pre_revenue": x}
            conversions = [
                {
                    "type": "conversion",
                    "experiment_id": "button",
                    "unit_id": unit,
                    "metric": "revenue",
                    "value": value,
                }
                for value in values
            ]
            events.extend([exposure, *conversions])
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text


def reference(data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """CUPED computed from the units: theta over every unit pooled, Welch on y - theta x."""
    y = {v: np.array([sum(vals) for vals in d["values"]]) for v, d in data.items()}
    x = {v: np.array([0.0 if a is None else a for a in d["x"]]) for v, d in data.items()}
    all_x, all_y = np.concatenate(list(x.values())), np.concatenate(list(y.values()))
    theta = np.cov(all_y, all_x, ddof=1)[0, 1] / np.var(all_x, ddof=1)
    adjusted = {v: y[v] - theta * x[v] for v in data}
    welch = stats.ttest_ind(adjusted["green"], adjusted["control"], equal_var=False)
    plain = stats.ttest_ind(y["green"], y["control"], equal_var=False)
    var_adj = sum(np.var(adjusted[v], ddof=1) / adjusted[v].size for v in data)
    var_plain = sum(np.var(y[v], ddof=1) / y[v].size for v in data)
    difference = adjusted["green"].mean() - adjusted["control"].mean()
    return {
        "theta": theta,
        "difference": difference,
        "variance": var_adj,
        "ci": tuple(welch.confidence_interval(0.95)),
        "p_value": welch.pvalue,
        "lift": difference / y["control"].mean(),
        "unadjusted_difference": y["green"].mean() - y["control"].mean(),
        "unadjusted_ci": tuple(plain.confidence_interval(0.95)),
        "unadjusted_p_value": plain.pvalue,
        "variance_reduction": 1 - var_adj / var_plain,
        "units": {v: y[v].size for v in data},
    }


def close(got: float | None, want: float, rel: float = 1e-7) -> None:
    assert got is not None
    assert math.isclose(got, want, rel_tol=rel, abs_tol=1e-9), (got, want)


def analysis(client: TestClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"{API}/experiments/button/analysis?metric=revenue{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_adjusted_metric_matches_cuped_on_the_units(client: TestClient) -> None:
    running(client, metrics=METRICS)
    data = unit_data()
    post(client, data)
    want = reference(data)
    body = analysis(client)
    assert body["covariate"] == "pre_revenue"
    assert body["method"] == "cuped"
    control, green = body["variants"]
    assert control["theta"] is None
    assert control["difference"] is None
    assert green["units"] == want["units"]["green"]
    close(green["theta"], want["theta"])
    close(green["difference"], want["difference"])
    close(green["difference_ci"][0], want["ci"][0], 1e-6)
    close(green["difference_ci"][1], want["ci"][1], 1e-6)
    close(green["p_value"], want["p_value"], 1e-6)
    close(green["lift"], want["lift"])
    close(green["unadjusted_difference"], want["unadjusted_difference"])
    close(green["unadjusted_difference_ci"][0], want["unadjusted_ci"][0], 1e-6)
    close(green["unadjusted_difference_ci"][1], want["unadjusted_ci"][1], 1e-6)
    close(green["unadjusted_p_value"], want["unadjusted_p_value"], 1e-6)
    close(green["variance_reduction"], want["variance_reduction"], 1e-6)
    assert want["variance_reduction"] > 0.5  # the covariate predicts the metric
    # The winner rule reads the adjusted test: its p-value is the one corrected.
    close(green["p_value_adjusted"], want["p_value"], 1e-6)


def test_the_sequential_test_uses_the_adjusted_variance(client: TestClient) -> None:
    tau = 2.5
    running(client, metrics=METRICS, settings={"analysis": {"tau": tau}})
    data = unit_data(seed=11)
    post(client, data)
    want = reference(data)
    body = analysis(client, "&sequential=true")
    green = body["variants"][1]
    assert body["method"] == "cuped_msprt"
    d, v, t2 = want["difference"], want["variance"], tau * tau
    log_lambda = 0.5 * math.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    close(green["p_value"], min(1.0, math.exp(-log_lambda)) if log_lambda > 0 else 1.0, 1e-6)
    half = math.sqrt(v * (v + t2) / t2 * math.log((v + t2) / (v * 0.05**2)))
    close(green["difference_ci"][0], d - half, 1e-6)
    close(green["difference_ci"][1], d + half, 1e-6)
    close(green["difference"], d)
    close(green["theta"], want["theta"])
    assert green["unadjusted_p_value"] is not None


@pytest.mark.parametrize("query", ["", "&sequential=true"])
def test_a_metric_without_a_covariate_is_unchanged(client: TestClient, query: str) -> None:
    running(client, metrics=[{"key": "revenue", "kind": "value"}])
    post(client, unit_data())
    body = analysis(client, query)
    assert body["covariate"] is None
    green = body["variants"][1]
    assert green["theta"] is None
    assert green["unadjusted_difference"] is None
    assert body["method"] in {"welch_t", "msprt"}


def period_reference(periods: list[dict[str, dict[str, Any]]]) -> dict[str, float]:
    """The per-period form from the units: theta from each period's co-moments about its own
    pooled means, then each period's Welch difference of y - theta x, weighted by the inverse
    of its variance."""
    s_xy = s_xx = 0.0
    arrays = []
    for data in periods:
        y = {v: np.array([sum(vals) for vals in d["values"]]) for v, d in data.items()}
        x = {v: np.array([0.0 if a is None else a for a in d["x"]]) for v, d in data.items()}
        all_x, all_y = np.concatenate(list(x.values())), np.concatenate(list(y.values()))
        s_xy += float(np.dot(all_x - all_x.mean(), all_y - all_y.mean()))
        s_xx += float(np.dot(all_x - all_x.mean(), all_x - all_x.mean()))
        arrays.append((y, x))
    theta = s_xy / s_xx
    differences, weights = [], []
    for y, x in arrays:
        adjusted = {v: y[v] - theta * x[v] for v in y}
        differences.append(adjusted["green"].mean() - adjusted["control"].mean())
        weights.append(1 / sum(np.var(a, ddof=1) / a.size for a in adjusted.values()))
    w = np.array(weights)
    difference = float(np.dot(w, differences) / w.sum())
    se = 1 / math.sqrt(w.sum())
    return {
        "theta": theta,
        "difference": difference,
        "p_value": float(2 * stats.norm.sf(abs(difference) / se)),
        "low": difference - stats.norm.ppf(0.975) * se,
    }


def test_within_periods_of_constant_weights_theta_is_pooled_over_periods(
    client: TestClient,
) -> None:
    exp = running(client, metrics=METRICS, type="bandit")
    first, second = unit_data(seed=3, units=60), unit_data(seed=4, units=90)
    for variant in VARIANTS:  # the second period's units are other units, shifted
        second[variant]["x"] = [None if a is None else a + 5.0 for a in second[variant]["x"]]
    post(client, first)
    new_weights(client, exp, {"control": 0.4, "green": 0.6})
    post(client, second, prefix="p2-")
    want = period_reference([first, second])
    body = analysis(client)
    assert body["stratified"] is True
    assert body["periods"] == 2
    assert body["method"] == "cuped_welch_stratified"
    green = body["variants"][1]
    close(green["theta"], want["theta"])
    close(green["difference"], want["difference"])
    close(green["p_value"], want["p_value"], 1e-6)
    close(green["difference_ci"][0], want["low"], 1e-6)
    assert green["variance_reduction"] > 0.3


def test_a_binary_metric_is_adjusted_on_converted_or_not(client: TestClient) -> None:
    """A binary metric's y is 1 for a unit that converted, however often and at whatever
    values: units converting twice or three times count once in the adjusted estimate, which
    matches CUPED on the units' 0/1 outcomes."""
    running(client, metrics=[{"key": "signup", "kind": "binary", "covariate": "pre_revenue"}])
    rng = np.random.default_rng(5)
    data: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for v, variant in enumerate(VARIANTS):
        x = rng.gamma(2.0, 10.0, size=150).round(2)
        chance = 1 / (1 + np.exp(-(x - 20.0) / 6.0 - 0.4 * v))
        converted = rng.random(150) < chance
        data[variant] = {"x": x, "y": converted.astype(float)}
        for i in range(150):
            unit = f"{variant}-{i}"
            events.append(
                {
                    "type": "exposure",
                    "experiment_id": "button",
                    "unit_id": unit,
                    "variant": variant,
                    "covariates": {"pre_revenue": float(x[i])},
                }
            )
            repeats = 1 + i % 3 if converted[i] else 0  # some units convert 2 or 3 times
            events.extend(
                {
                    "type": "conversion",
                    "experiment_id": "button",
                    "unit_id": unit,
                    "metric": "signup",
                    "value": 1.0 + k,
                }
                for k in range(repeats)
            )
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text
    all_x = np.concatenate([d["x"] for d in data.values()])
    all_y = np.concatenate([d["y"] for d in data.values()])
    theta = np.cov(all_y, all_x, ddof=1)[0, 1] / np.var(all_x, ddof=1)
    adjusted = {v: d["y"] - theta * d["x"] for v, d in data.items()}
    welch = stats.ttest_ind(adjusted["green"], adjusted["control"], equal_var=False)
    body = client.get(f"{API}/experiments/button/analysis").json()
    assert body["method"] == "cuped"
    green = body["variants"][1]
    assert green["conversions"] == int(data["green"]["y"].sum())
    close(green["theta"], theta)
    close(green["difference"], adjusted["green"].mean() - adjusted["control"].mean())
    close(green["difference_ci"][0], welch.confidence_interval(0.95)[0], 1e-6)
    close(green["difference_ci"][1], welch.confidence_interval(0.95)[1], 1e-6)
    close(green["p_value"], welch.pvalue, 1e-6)
