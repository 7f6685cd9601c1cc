"""Guardrails on an adjusted (CUPED) and on a ratio metric through REST on every store: the
one-sided test, its bound and the posteriors use the adjusted or the delta-method estimate,
checked against an independent computation on the unit-level data posted (NumPy and SciPy:
Welch's test on the units' y - theta x, the linearised ratio z_u = (N_u - R D_u) / mean(D))."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from tests.api.conftest import API, running

VARIANTS = ("control", "green")
ALPHA = 0.05


def close(got: float | None, want: float, rel: float = 1e-6) -> None:
    assert got is not None
    assert math.isclose(got, want, rel_tol=rel, abs_tol=1e-9), (got, want)


def exposure(unit: str, variant: str, x: float | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "exposure",
        "experiment_id": "button",
        "unit_id": unit,
        "variant": variant,
    }
    if x is not None:
        event["covariates"] = {"pre": x}
    return event


def conversion(unit: str, metric: str, value: float) -> dict[str, Any]:
    return {
        "type": "conversion",
        "experiment_id": "button",
        "unit_id": unit,
        "metric": metric,
        "value": value,
    }


def post(client: TestClient, events: list[dict[str, Any]]) -> None:
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text


def welch_df(se2_t: float, se2_c: float, n_t: int, n_c: int) -> float:
    return (se2_t + se2_c) ** 2 / (se2_t**2 / (n_t - 1) + se2_c**2 / (n_c - 1))


def non_inferiority(
    estimate: float, variance: float, df: float | None, margin: float, sign: float
) -> tuple[float, float]:
    """(p-value, one-sided bound) of H0 "harm of at least ``margin``"."""
    dist = stats.norm if df is None else stats.t(df)
    se = math.sqrt(variance)
    return float(dist.sf((sign * estimate + margin) / se)), estimate - sign * dist.ppf(
        1 - ALPHA
    ) * se


def latency_units(seed: int = 21, units: int = 150) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, each unit's covariate x and latency total y (two requests each); green is
    slower by 2 on average, which the covariate's noise hides from the unadjusted test."""
    rng = np.random.default_rng(seed)
    data = {}
    for v, variant in enumerate(VARIANTS):
        x = rng.normal(100.0, 20.0, size=units).round(2)
        y = (x + rng.normal(0.0, 4.0, size=units) + 2.0 * v).round(2)
        data[variant] = {"x": x, "y": y}
    return data


def post_latency(client: TestClient, data: dict[str, dict[str, np.ndarray]]) -> None:
    events = []
    for variant, d in data.items():
        for i, (x, y) in enumerate(zip(d["x"], d["y"], strict=True)):
            unit = f"{variant}-{i}"
            events += [exposure(unit, variant, float(x)), conversion(unit, "latency", y / 2)]
            events.append(conversion(unit, "latency", float(y) - float(y) / 2))
    post(client, events)


@pytest.mark.parametrize("relative", [False, True])
def test_an_adjusted_guardrail_is_tested_on_the_cuped_estimate(
    client: TestClient, relative: bool
) -> None:
    margin = 0.03 if relative else 3.0
    latency = {
        "key": "latency",
        "kind": "value",
        "covariate": "pre",
        "role": "guardrail",
        "margin": margin,
        "margin_relative": relative,
        "higher_is_better": False,
    }
    running(client, metrics=[{"key": "conversion"}, latency])
    data = latency_units()
    post_latency(client, data)
    x = {v: d["x"] for v, d in data.items()}
    y = {v: d["y"] for v, d in data.items()}
    all_x, all_y = np.concatenate(list(x.values())), np.concatenate(list(y.values()))
    theta = np.cov(all_y, all_x, ddof=1)[0, 1] / np.var(all_x, ddof=1)
    adjusted = {v: y[v] - theta * x[v] for v in VARIANTS}
    n = {v: adjusted[v].size for v in VARIANTS}
    se2 = {v: np.var(adjusted[v], ddof=1) / n[v] for v in VARIANTS}
    difference = adjusted["green"].mean() - adjusted["control"].mean()
    if relative:
        # The lift (adjusted difference over the control's mean) linearised per unit.
        m_t, m_c = y["green"].mean(), y["control"].mean()
        z_t = adjusted["green"] / m_c
        z_c = (-(m_t / m_c) * y["control"] + theta * x["control"]) / m_c
        estimate = difference / abs(m_c)
        variance = np.var(z_t, ddof=1) / n["green"] + np.var(z_c, ddof=1) / n["control"]
        df = None
    else:
        estimate, variance = difference, se2["green"] + se2["control"]
        df = welch_df(se2["green"], se2["control"], n["green"], n["control"])
    p_value, bound = non_inferiority(estimate, variance, df, margin, sign=-1.0)
    body = client.get(f"{API}/experiments/button/analysis?metric=latency").json()
    (check,) = body["guardrails"]
    assert check["metric"] == "latency"
    close(check["estimate"], estimate)
    close(check["p_value"], p_value)
    close(check["bound"], bound)
    assert check["method"] == ("z" if relative else "welch_t")
    assert check["harm_ruled_out"] is (p_value < ALPHA)
    green = body["variants"][1]
    close(green["difference"], difference)  # the comparison reported is the same estimate
    # The posteriors are the adjusted arms': normal, N(adjusted mean, adjusted variance / n).
    pooled_x = all_x.mean()
    means = {v: y[v].mean() - theta * (x[v].mean() - pooled_x) for v in VARIANTS}
    chance = stats.norm.cdf(
        (means["green"] - means["control"]) / math.sqrt(se2["green"] + se2["control"])
    )
    close(green["chance_to_beat_control"], float(chance), 1e-5)


def test_an_adjusted_binary_guardrail_is_tested_on_the_cuped_estimate(
    client: TestClient,
) -> None:
    churn = {
        "key": "churn",
        "kind": "binary",
        "covariate": "pre",
        "role": "guardrail",
        "margin": 0.05,
        "higher_is_better": False,
    }
    running(client, metrics=[{"key": "conversion"}, churn])
    rng = np.random.default_rng(8)
    events: list[dict[str, Any]] = []
    x, y = {}, {}
    for v, variant in enumerate(VARIANTS):
        x[variant] = rng.normal(0.0, 1.0, size=200).round(3)
        chance = 1 / (1 + np.exp(-1.5 * x[variant] + 1.0 - 0.2 * v))
        y[variant] = (rng.random(200) < chance).astype(float)
        for i in range(200):
            unit = f"{variant}-{i}"
            events.append(exposure(unit, variant, float(x[variant][i])))
            if y[variant][i]:
                events += [conversion(unit, "churn", 1.0)] * (1 + i % 2)  # some twice
    post(client, events)
    all_x, all_y = np.concatenate(list(x.values())), np.concatenate(list(y.values()))
    theta = np.cov(all_y, all_x, ddof=1)[0, 1] / np.var(all_x, ddof=1)
    adjusted = {v: y[v] - theta * x[v] for v in VARIANTS}
    se2 = {v: np.var(adjusted[v], ddof=1) / adjusted[v].size for v in VARIANTS}
    difference = adjusted["green"].mean() - adjusted["control"].mean()
    df = welch_df(se2["green"], se2["control"], 200, 200)
    p_value, bound = non_inferiority(difference, se2["green"] + se2["control"], df, 0.05, -1.0)
    (check,) = client.get(f"{API}/experiments/button/analysis").json()["guardrails"]
    close(check["estimate"], difference)
    close(check["p_value"], p_value)
    close(check["bound"], bound)
    churn_body = client.get(f"{API}/experiments/button/analysis?metric=churn").json()
    assert churn_body["bayesian_method"] is not None
    chance = stats.norm.cdf(difference / math.sqrt(se2["green"] + se2["control"]))
    close(churn_body["variants"][1]["chance_to_beat_control"], float(chance), 1e-5)


@pytest.mark.parametrize("relative", [False, True])
def test_a_ratio_guardrail_is_tested_on_the_delta_method_estimate(
    client: TestClient, relative: bool
) -> None:
    margin = 0.1 if relative else 1.0
    aov = {
        "key": "aov",
        "kind": "ratio",
        "numerator": "revenue",
        "denominator": "orders",
        "role": "guardrail",
        "margin": margin,
        "margin_relative": relative,
    }
    metrics = [{"key": "conversion"}, {"key": "revenue", "kind": "value"}]
    running(client, metrics=[*metrics, {"key": "orders", "kind": "value"}, aov])
    rng = np.random.default_rng(4)
    events: list[dict[str, Any]] = []
    numerator, denominator = {}, {}
    for v, variant in enumerate(VARIANTS):
        orders = rng.poisson(2.0, size=160)
        values = [rng.gamma(3.0, 4.0 - 0.3 * v, size=k).round(2) for k in orders]
        numerator[variant] = np.array([float(a.sum()) for a in values])
        denominator[variant] = orders.astype(float)
        for i, order_values in enumerate(values):
            unit = f"{variant}-{i}"
            events.append(exposure(unit, variant))
            for value in order_values:
                events += [conversion(unit, "revenue", float(value)), conversion(unit, "orders", 1)]
    post(client, events)
    ratio, var_ratio, n = {}, {}, {}
    for variant in VARIANTS:
        big_n, big_d = numerator[variant], denominator[variant]
        ratio[variant] = big_n.sum() / big_d.sum()
        z = (big_n - ratio[variant] * big_d) / big_d.mean()
        n[variant] = z.size
        var_ratio[variant] = np.var(z, ddof=1) / z.size
    r_t, r_c = ratio["green"], ratio["control"]
    if relative:
        estimate = r_t / r_c - 1
        variance = var_ratio["green"] / r_c**2 + r_t**2 * var_ratio["control"] / r_c**4
        df = None
    else:
        estimate = r_t - r_c
        variance = var_ratio["green"] + var_ratio["control"]
        df = welch_df(var_ratio["green"], var_ratio["control"], n["green"], n["control"])
    p_value, bound = non_inferiority(estimate, variance, df, margin, sign=1.0)
    (check,) = client.get(f"{API}/experiments/button/analysis").json()["guardrails"]
    assert check["metric"] == "aov"
    close(check["estimate"], estimate)
    close(check["p_value"], p_value)
    close(check["bound"], bound)
