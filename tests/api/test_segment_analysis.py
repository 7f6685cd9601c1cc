"""The analysis per segment (``?dimension=``) through REST on every store: each segment's
analysis matches SciPy's Welch test on that segment's units, the p-values across segments
statsmodels' Benjamini-Hochberg, the heterogeneity Cochran's Q computed in NumPy, and the
overall result is the one without ``dimension``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from scipy import stats
from statsmodels.stats.multitest import multipletests

from tests.api.conftest import API, running

VARIANTS = ("control", "green")
COUNTRIES = ("de", "fr", "nl")
EFFECT = {"de": 0.0, "fr": 1.0, "nl": 6.0}  # the effect differs across segments


def units(seed: int = 21, per_cell: int = 40) -> list[tuple[str, str, str, float]]:
    """(unit, variant, country, revenue) of every unit."""
    rng = np.random.default_rng(seed)
    found = []
    for variant in VARIANTS:
        for country in COUNTRIES:
            shift = EFFECT[country] if variant == "green" else 0.0
            for i, value in enumerate(rng.normal(20 + shift, 4, size=per_cell).round(2)):
                found.append((f"{variant}-{country}-{i}", variant, country, float(value)))
    return found


def post(client: TestClient, data: list[tuple[str, str, str, float]]) -> None:
    events: list[dict[str, Any]] = []
    for unit, variant, country, value in data:
        base = {"experiment_id": "button", "unit_id": unit}
        events.append(
            {**base, "type": "exposure", "variant": variant, "dimensions": {"country": country}}
        )
        events.append({**base, "type": "conversion", "metric": "revenue", "value": value})
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 200, response.text


def test_analysis_per_segment(client: TestClient) -> None:
    running(client, dimensions=["country"])
    data = units()
    post(client, data)
    plain = client.get(f"{API}/experiments/button/analysis?metric=revenue").json()
    body = client.get(f"{API}/experiments/button/analysis?metric=revenue&dimension=country")
    assert body.status_code == 200, body.text
    found = body.json()
    breakdown = found.pop("segments")
    assert plain.pop("segments") is None
    assert found == plain  # the overall result is unchanged
    assert breakdown["dimension"] == "country"
    segments = {s["value"]: s for s in breakdown["segments"]}
    assert set(segments) == set(COUNTRIES)
    differences, variances, p_values = [], [], []
    for country in COUNTRIES:
        y = {v: np.array([r for _, vv, c, r in data if vv == v and c == country]) for v in VARIANTS}
        welch = stats.ttest_ind(y["green"], y["control"], equal_var=False)
        green = segments[country]["analysis"]["variants"][1]
        assert math.isclose(green["difference"], y["green"].mean() - y["control"].mean())
        assert math.isclose(green["p_value"], welch.pvalue, rel_tol=1e-6)
        assert green["units"] == y["green"].size
        differences.append(y["green"].mean() - y["control"].mean())
        variances.append(sum(np.var(a, ddof=1) / a.size for a in y.values()))
        p_values.append(welch.pvalue)
    bh = multipletests(p_values, method="fdr_bh")[1]
    for country, want in zip(COUNTRIES, bh, strict=True):
        control_p, green_p = segments[country]["p_values_across_segments"]
        assert control_p is None
        assert math.isclose(green_p, want, rel_tol=1e-6)
    w = 1 / np.array(variances)
    pooled = np.dot(w, differences) / w.sum()
    q = float(np.dot(w, (np.array(differences) - pooled) ** 2))
    (revenue,) = [h for h in breakdown["heterogeneity"] if h["metric"] == "revenue"]
    assert revenue["variant"] == "green"
    assert math.isclose(revenue["q"], q, rel_tol=1e-6)
    assert revenue["df"] == 2
    assert math.isclose(revenue["p_value"], stats.chi2.sf(q, 2), rel_tol=1e-6)
    assert revenue["heterogeneous"] is True


def test_an_undeclared_dimension_is_a_422(client: TestClient) -> None:
    running(client, dimensions=["country"])
    response = client.get(f"{API}/experiments/button/analysis?dimension=platform")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "dimension"


def test_monitoring_warns_when_the_effect_differs_across_segments(client: TestClient) -> None:
    running(client, dimensions=["country"], metrics=[{"key": "revenue", "kind": "value"}])
    post(client, units())
    response = client.get(f"{API}/monitoring/report")
    assert response.status_code == 200, response.text
    (experiment,) = response.json()["experiments"]
    checks = {c["name"]: c for c in experiment["checks"]}
    found = checks["heterogeneity"]
    assert found["status"] == "warning"
    assert "'green' on 'revenue' across 'country'" in found["message"]
    (comparison,) = found["figures"]["comparisons"]
    assert comparison["heterogeneous"] is True


def test_monitoring_is_quiet_when_the_effect_is_the_same(client: TestClient) -> None:
    running(client, dimensions=["country"], metrics=[{"key": "revenue", "kind": "value"}])
    same = [(u, v, c, r - (EFFECT[c] if v == "green" else 0.0)) for u, v, c, r in units()]
    post(client, same)
    experiment = client.get(f"{API}/monitoring/report").json()["experiments"][0]
    checks = {c["name"]: c for c in experiment["checks"]}
    assert checks["heterogeneity"]["status"] == "ok"
