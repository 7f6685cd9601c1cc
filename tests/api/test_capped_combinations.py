"""A capped metric combined with a covariate and with segments, through REST on every store,
against the same estimators computed in NumPy and SciPy on the unit-level data posted:

- a capped metric with a covariate is adjusted on its capped values: CUPED (theta over every
  unit pooled, Welch's test on min(y, c) - theta x), for an absolute and a percentile cap, and
  within periods of constant weights;
- within segments, a percentile cap is the threshold of the whole experiment (NumPy's linear
  quantile of every unit's total, zeros included), applied to each segment's units."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from tests.api.conftest import API, new_weights, running

VARIANTS = ("control", "green")
COUNTRIES = ("de", "fr", "nl")


def close(got: float | None, want: float, rel: float = 1e-6) -> None:
    assert got is not None
    assert math.isclose(got, want, rel_tol=rel, abs_tol=1e-9), (got, want)


def unit_data(seed: int, units: int = 90, prefix: str = "") -> list[dict[str, Any]]:
    """Every unit: id, variant, covariate, country and conversion values (a heavy tail, some
    units twice, some never)."""
    rng = np.random.default_rng(seed)
    found = []
    for v, variant in enumerate(VARIANTS):
        x = rng.gamma(2.0, 10.0, size=units).round(2)
        y = np.exp(0.05 * x + rng.normal(0, 0.6, size=units)) * (1 + 0.15 * v)
        for i in range(units):
            total = round(float(y[i]), 2)
            values = [] if i % 9 == 0 else [total] if i % 4 else [total / 2, total / 2]
            found.append(
                {
                    "unit": f"{prefix}{variant}-{i}",
                    "variant": variant,
                    "x": float(x[i]),
                    "country": COUNTRIES[(i + v) % 3],
                    "values": values,
                }
            )
    return found


def post(client: TestClient, data: list[dict[str, Any]]) -> None:
    events: list[dict[str, Any]] = []
    for d in data:
        base = {"experiment_id": "button", "unit_id": d["unit"]}
        events.append(
            {
                **base,
                "type": "exposure",
                "variant": d["variant"],
                "covariates": {"pre": d["x"]},
                "dimensions": {"country": d["country"]},
            }
        )
        events.extend(
            {**base, "type": "conversion", "metric": "revenue", "value": value}
            for value in d["values"]
        )
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text


def arrays(data: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    y = {v: np.array([sum(d["values"]) for d in data if d["variant"] == v]) for v in VARIANTS}
    x = {v: np.array([d["x"] for d in data if d["variant"] == v]) for v in VARIANTS}
    return y, x


def threshold_of(y: dict[str, np.ndarray], cap: dict[str, float]) -> float:
    if "absolute" in cap:
        return cap["absolute"]
    return float(np.quantile(np.concatenate(list(y.values())), cap["percentile"]))


CAPS = [{"absolute": 12.0}, {"percentile": 0.9}]


@pytest.mark.parametrize("cap", CAPS)
def test_a_capped_metric_with_a_covariate_is_adjusted_on_its_capped_values(
    client: TestClient, cap: dict[str, float]
) -> None:
    metric = {"key": "revenue", "kind": "value", "covariate": "pre", "cap": cap}
    running(client, metrics=[metric])
    data = unit_data(31)
    post(client, data)
    y, x = arrays(data)
    c = threshold_of(y, cap)
    capped = {v: np.minimum(y[v], c) for v in VARIANTS}
    assert any((capped[v] < y[v]).any() for v in VARIANTS)  # the cap lowers some totals
    all_x, all_y = np.concatenate(list(x.values())), np.concatenate(list(capped.values()))
    theta = np.cov(all_y, all_x, ddof=1)[0, 1] / np.var(all_x, ddof=1)
    adjusted = {v: capped[v] - theta * x[v] for v in VARIANTS}
    welch = stats.ttest_ind(adjusted["green"], adjusted["control"], equal_var=False)
    plain = stats.ttest_ind(capped["green"], capped["control"], equal_var=False)
    body = client.get(f"{API}/experiments/button/analysis").json()
    assert (body["method"], body["covariate"]) == ("cuped", "pre")
    close(body["cap"], c)
    green = body["variants"][1]
    close(green["theta"], theta)
    close(green["difference"], adjusted["green"].mean() - adjusted["control"].mean())
    close(green["difference_ci"][0], welch.confidence_interval(0.95)[0])
    close(green["difference_ci"][1], welch.confidence_interval(0.95)[1])
    close(green["p_value"], welch.pvalue)
    close(green["unadjusted_difference"], capped["green"].mean() - capped["control"].mean())
    close(green["unadjusted_p_value"], plain.pvalue)
    assert green["variance_reduction"] > 0.2


@pytest.mark.parametrize("cap", CAPS)
def test_a_capped_adjusted_metric_within_periods(client: TestClient, cap: dict[str, float]) -> None:
    metric = {"key": "revenue", "kind": "value", "covariate": "pre", "cap": cap}
    exp = running(client, metrics=[metric], type="bandit")
    first, second = unit_data(3, units=60), unit_data(4, units=80, prefix="p2-")
    post(client, first)
    new_weights(client, exp, {"control": 0.4, "green": 0.6})
    post(client, second)
    periods = [arrays(first), arrays(second)]
    every = np.concatenate([a for y, _ in periods for a in y.values()])
    c = cap["absolute"] if "absolute" in cap else float(np.quantile(every, cap["percentile"]))
    s_xy = s_xx = 0.0
    for y, x in periods:
        all_x = np.concatenate(list(x.values()))
        all_y = np.minimum(np.concatenate(list(y.values())), c)
        s_xy += float(np.dot(all_x - all_x.mean(), all_y - all_y.mean()))
        s_xx += float(np.dot(all_x - all_x.mean(), all_x - all_x.mean()))
    theta = s_xy / s_xx
    differences, weights = [], []
    for y, x in periods:
        adjusted = {v: np.minimum(y[v], c) - theta * x[v] for v in VARIANTS}
        differences.append(adjusted["green"].mean() - adjusted["control"].mean())
        weights.append(1 / sum(np.var(a, ddof=1) / a.size for a in adjusted.values()))
    w = np.array(weights)
    difference = float(np.dot(w, differences) / w.sum())
    p_value = float(2 * stats.norm.sf(abs(difference) * math.sqrt(w.sum())))
    body = client.get(f"{API}/experiments/button/analysis").json()
    assert body["method"] == "cuped_welch_stratified"
    close(body["cap"], c)
    green = body["variants"][1]
    close(green["theta"], theta)
    close(green["difference"], difference)
    close(green["p_value"], p_value)


@pytest.mark.parametrize("covariate", [None, "pre"])
def test_a_percentile_cap_within_segments_is_the_overall_threshold(
    client: TestClient, covariate: str | None
) -> None:
    metric = {"key": "revenue", "kind": "value", "cap": {"percentile": 0.8}}
    if covariate:
        metric["covariate"] = covariate
    running(client, metrics=[metric], dimensions=["country"])
    data = unit_data(17)
    post(client, data)
    y, _ = arrays(data)
    c = float(np.quantile(np.concatenate(list(y.values())), 0.8))
    overall = client.get(f"{API}/experiments/button/analysis").json()
    close(overall["cap"], c)
    found = client.get(f"{API}/experiments/button/analysis?dimension=country").json()
    segments = {s["value"]: s["analysis"] for s in found["segments"]["segments"]}
    assert set(segments) == set(COUNTRIES)
    for country in COUNTRIES:
        here = [d for d in data if d["country"] == country]
        ys, xs = arrays(here)
        capped = {v: np.minimum(ys[v], c) for v in VARIANTS}
        # The segment's own quantile would be another threshold: the overall one is used.
        assert float(np.quantile(np.concatenate(list(ys.values())), 0.8)) != pytest.approx(c)
        analysis = segments[country]
        close(analysis["cap"], c)
        control, green = analysis["variants"]
        close(control["mean"], capped["control"].mean())
        if covariate is None:
            welch = stats.ttest_ind(capped["green"], capped["control"], equal_var=False)
            close(green["difference"], capped["green"].mean() - capped["control"].mean())
        else:
            all_x = np.concatenate(list(xs.values()))
            all_y = np.concatenate(list(capped.values()))
            theta = np.cov(all_y, all_x, ddof=1)[0, 1] / np.var(all_x, ddof=1)
            adjusted = {v: capped[v] - theta * xs[v] for v in VARIANTS}
            welch = stats.ttest_ind(adjusted["green"], adjusted["control"], equal_var=False)
            close(green["theta"], theta)
            close(green["difference"], adjusted["green"].mean() - adjusted["control"].mean())
        close(green["p_value"], welch.pvalue)
        assert green["units"] == ys["green"].size


def test_an_absolute_cap_with_a_covariate_within_segments(client: TestClient) -> None:
    metric = {"key": "revenue", "kind": "value", "covariate": "pre", "cap": {"absolute": 10.0}}
    running(client, metrics=[metric], dimensions=["country"])
    data = unit_data(23)
    post(client, data)
    found = client.get(f"{API}/experiments/button/analysis?dimension=country").json()
    segments = {s["value"]: s["analysis"] for s in found["segments"]["segments"]}
    for country in COUNTRIES:
        ys, xs = arrays([d for d in data if d["country"] == country])
        capped = {v: np.minimum(ys[v], 10.0) for v in VARIANTS}
        all_x, all_y = np.concatenate(list(xs.values())), np.concatenate(list(capped.values()))
        theta = np.cov(all_y, all_x, ddof=1)[0, 1] / np.var(all_x, ddof=1)
        adjusted = {v: capped[v] - theta * xs[v] for v in VARIANTS}
        welch = stats.ttest_ind(adjusted["green"], adjusted["control"], equal_var=False)
        green = segments[country]["variants"][1]
        close(green["theta"], theta)
        close(green["difference"], adjusted["green"].mean() - adjusted["control"].mean())
        close(green["p_value"], welch.pvalue)
