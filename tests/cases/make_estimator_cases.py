"""Write ``cuped.json``, ``ratio.json``, ``capping.json`` and ``heterogeneity.json``: the inputs
(sufficient statistics, as the stores keep them) and the reference values computed from seeded
UNIT-LEVEL data with NumPy, SciPy and statsmodels, independently of abpilot's code. Run
``python tests/cases/make_estimator_cases.py`` to regenerate.

- CUPED: theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1) over every unit of every variant; the
  adjusted values y - theta x per unit, and SciPy's Welch t-test (``ttest_ind``, its interval
  too) on them, and on y for the unadjusted effect; the lift's variance by gbstats' formula
  (``frequentist_variance_relative_cuped``) written out with np.var / np.cov of the units; and
  statsmodels OLS of the ANCOVA ``y ~ C(variant) + x`` (coefficient, standard error, slope).
- Ratio: the delta method by linearisation, z_u = (N_u - R D_u) / mean(D) per unit, Var(R) =
  var(z) / n, and SciPy's Welch t-test on R + z_u; a seeded bootstrap of units (2,000 resamples)
  for the standard error of the difference, as a cross-check.
- Capping: np.quantile(method="linear") of every unit's total (zeros written out as units);
  the capped sums by np.minimum.
- Heterogeneity: statsmodels ``combine_effects`` (Q, I^2 clipped at 0, fixed-effect mean and
  variance) and its ``test_homogeneity`` p-value; Benjamini-Hochberg by statsmodels
  ``multipletests``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

HERE = Path(__file__).parent
ALPHA = 0.05


def fsum(values: np.ndarray) -> float:
    return math.fsum(values.tolist())


# ---------------------------------------------------------------------------------------------
# CUPED


def cuped_units(seed: int, scenario: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per variant (x, y) unit arrays: x ~ N(mx, sx), y = a + b x + noise + effect (or y a
    Bernoulli draw of a logistic in x for a binary metric)."""
    rng = np.random.default_rng(seed)
    arms = []
    for n, effect in zip(scenario["n"], scenario["effects"], strict=True):
        x = rng.normal(scenario["mx"], scenario["sx"], n)
        if scenario.get("constant_x"):
            x = np.full(n, scenario["mx"])
        if scenario["binary"]:
            logit = -1.0 + scenario["b"] * (x - scenario["mx"]) / scenario["sx"] + effect
            y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        else:
            y = scenario["a"] + scenario["b"] * x + rng.normal(0, scenario["noise"], n) + effect
        arms.append((x, y))
    return arms


def welch(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    found = stats.ttest_ind(a, b, equal_var=False)
    ci = found.confidence_interval(1 - ALPHA)
    se2 = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size
    return {
        "difference": float(a.mean() - b.mean()),
        "variance": float(se2),
        "df": float(found.df),
        "ci": [float(ci.low), float(ci.high)],
        "p_value": float(found.pvalue),
    }


def gbstats_lift_variance(x_t, y_t, x_c, y_c, theta: float) -> float:
    """gbstats' ``frequentist_variance_relative_cuped``, from the units' moments."""
    m_t, m_c = y_t.mean(), y_c.mean()
    adjusted_t = y_t - theta * x_t
    v_t = adjusted_t.var(ddof=1) / (y_t.size * m_c**2)
    cov_c = np.cov(y_c, x_c, ddof=1)[0, 1]
    v_c = (
        y_c.var(ddof=1) * m_t**2 / m_c**2
        - 2 * theta * cov_c * m_t / m_c
        + theta**2 * x_c.var(ddof=1)
    ) / (y_c.size * m_c**2)
    return float(v_t + v_c)


def cuped_case(name: str, seed: int, scenario: dict[str, Any]) -> dict[str, Any]:
    arms = cuped_units(seed, scenario)
    x_all = np.concatenate([x for x, _ in arms])
    y_all = np.concatenate([y for _, y in arms])
    var_x = x_all.var(ddof=1)
    theta = float(np.cov(y_all, x_all, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    frame = pd.DataFrame(
        {
            "y": y_all,
            "x": x_all,
            "variant": np.repeat(np.arange(len(arms)), [x.size for x, _ in arms]),
        }
    )
    ols = None
    if var_x > 0:
        fit = smf.ols("y ~ C(variant) + x", frame).fit()
        ols = {"slope": float(fit.params["x"])}
    x_c, y_c = arms[0]
    comparisons = []
    for i, (x_t, y_t) in enumerate(arms[1:], start=1):
        adjusted = welch(y_t - theta * x_t, y_c - theta * x_c)
        unadjusted = welch(y_t, y_c)
        lift_variance = gbstats_lift_variance(x_t, y_t, x_c, y_c, theta)
        lift = adjusted["difference"] / abs(y_c.mean())
        t_quantile = stats.t.ppf(1 - ALPHA / 2, adjusted["df"])
        half = t_quantile * math.sqrt(lift_variance)
        comparison = {
            "adjusted": adjusted,
            "unadjusted": unadjusted,
            "lift": lift,
            "lift_variance": lift_variance,
            "lift_ci": [lift - half, lift + half],
            "variance_reduction": 1 - adjusted["variance"] / unadjusted["variance"],
        }
        if ols is not None:
            term = f"C(variant)[T.{i}]"
            comparison["ols"] = {
                "difference": float(fit.params[term]),
                "se": float(fit.bse[term]),
                "x_mean_difference": float(x_t.mean() - x_c.mean()),
            }
        comparisons.append(comparison)
    return {
        "name": name,
        "binary": scenario["binary"],
        "arms": [
            {
                "n": int(x.size),
                "sum_y": fsum(y),
                "sum_y2": fsum(y * y),
                "sum_x": fsum(x),
                "sum_x2": fsum(x * x),
                "sum_xy": fsum(x * y),
            }
            for x, y in arms
        ],
        "theta": theta,
        "ols": ols,
        "comparisons": comparisons,
    }


CUPED = {
    "two_arms_rho_07": (
        11,
        {
            "n": [800, 820],
            "effects": [0.0, 0.3],
            "mx": 20,
            "sx": 4,
            "a": 5,
            "b": 0.5,
            "noise": 2.04,
            "binary": False,
        },
    ),
    "three_arms_unequal": (
        12,
        {
            "n": [1000, 600, 1400],
            "effects": [0.0, 0.5, -0.2],
            "mx": 50,
            "sx": 10,
            "a": 0,
            "b": 1.2,
            "noise": 8,
            "binary": False,
        },
    ),
    "binary_metric": (
        13,
        {"n": [1500, 1500], "effects": [0.0, 0.15], "mx": 3, "sx": 1, "b": 1.0, "binary": True},
    ),
    "uncorrelated_covariate": (
        14,
        {
            "n": [400, 400],
            "effects": [0.0, 0.2],
            "mx": 0,
            "sx": 1,
            "a": 10,
            "b": 0.0,
            "noise": 1,
            "binary": False,
        },
    ),
    "negative_control_mean": (
        15,
        {
            "n": [700, 650],
            "effects": [0.0, -0.4],
            "mx": -5,
            "sx": 2,
            "a": -3,
            "b": 0.9,
            "noise": 1.5,
            "binary": False,
        },
    ),
    "constant_covariate": (
        16,
        {
            "n": [300, 300],
            "effects": [0.0, 0.25],
            "mx": 7,
            "sx": 1,
            "a": 1,
            "b": 0.0,
            "noise": 1,
            "binary": False,
            "constant_x": True,
        },
    ),
}


# ---------------------------------------------------------------------------------------------
# Ratio


def ratio_units(seed: int, n: int, orders: float, value: float) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: D orders (Poisson, many units with none), N their total revenue (gamma)."""
    rng = np.random.default_rng(seed)
    d = rng.poisson(orders, n).astype(float)
    unit_value = rng.gamma(2.0, value / 2.0, n)  # a unit's typical order value
    numerator = np.array(
        [rng.gamma(4.0, v / 4.0, int(k)).sum() for v, k in zip(unit_value, d, strict=True)]
    )
    return numerator, d


def linearised(numerator: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    ratio = numerator.sum() / d.sum()
    return float(ratio), (numerator - ratio * d) / d.mean()


def bootstrap_se(arms: list[tuple[np.ndarray, np.ndarray]], seed: int, draws: int = 2000) -> float:
    rng = np.random.default_rng(seed)
    differences = np.empty(draws)
    (n_c, d_c), (n_t, d_t) = arms
    for b in range(draws):
        i = rng.integers(0, n_c.size, n_c.size)
        j = rng.integers(0, n_t.size, n_t.size)
        differences[b] = n_t[j].sum() / d_t[j].sum() - n_c[i].sum() / d_c[i].sum()
    return float(differences.std(ddof=1))


def ratio_case(name: str, seed: int, spec: dict[str, Any]) -> dict[str, Any]:
    arms = [
        ratio_units(seed * 10 + i, n, orders, value)
        for i, (n, orders, value) in enumerate(
            zip(spec["n"], spec["orders"], spec["value"], strict=True)
        )
    ]
    ratios, influences = zip(*(linearised(num, d) for num, d in arms), strict=True)
    variances = [float(z.var(ddof=1) / z.size) for z in influences]
    comparisons = []
    for i in range(1, len(arms)):
        found = welch(ratios[i] + influences[i], ratios[0] + influences[0])
        r_t, r_c = ratios[i], ratios[0]
        lift_variance = variances[i] / r_c**2 + r_t**2 * variances[0] / r_c**4
        half = stats.t.ppf(1 - ALPHA / 2, found["df"]) * math.sqrt(lift_variance)
        lift = r_t / r_c - 1
        comparisons.append(
            {
                **found,
                "lift": lift,
                "lift_variance": lift_variance,
                "lift_ci": [lift - half, lift + half],
            }
        )
    case = {
        "name": name,
        "arms": [
            {
                "n": int(num.size),
                "sum_numerator": fsum(num),
                "sum_numerator_squares": fsum(num * num),
                "sum_denominator": fsum(d),
                "sum_denominator_squares": fsum(d * d),
                "sum_products": fsum(num * d),
            }
            for num, d in arms
        ],
        "ratios": list(ratios),
        "variances": variances,
        "comparisons": comparisons,
    }
    if len(arms) == 2:
        case["bootstrap_se"] = bootstrap_se(arms, seed)
    return case


RATIO = {
    "revenue_per_order": (21, {"n": [3000, 3000], "orders": [0.8, 0.8], "value": [40, 43]}),
    "few_orders_three_arms": (
        22,
        {"n": [1500, 1200, 1800], "orders": [0.3, 0.35, 0.3], "value": [25, 25, 30]},
    ),
    "busy_units": (23, {"n": [600, 650], "orders": [5.0, 5.5], "value": [12, 12]}),
}


# ---------------------------------------------------------------------------------------------
# Capping


def capping_case(name: str, seed: int, spec: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    variants = []
    for n_total, n_valued in zip(spec["population"], spec["valued"], strict=True):
        totals = np.round(rng.lognormal(spec["mu"], spec["sigma"], n_valued), 2)
        if spec.get("negative"):
            totals[: n_valued // 5] *= -1
        if spec.get("stored_zeros"):
            totals[-3:] = 0.0
        variants.append((n_total, totals))
    everything = np.concatenate([np.concatenate([t, np.zeros(n - t.size)]) for n, t in variants])
    nonzero = everything[everything != 0]
    cases = []
    for quantile in spec["quantiles"]:
        for ignore_zeros in (False, True):
            pool = nonzero if ignore_zeros else everything
            cap = float(np.quantile(pool, quantile, method="linear"))
            cases.append(
                {
                    "quantile": quantile,
                    "ignore_zeros": ignore_zeros,
                    "threshold": cap,
                    "units": int(pool.size),
                    "capped": [
                        {
                            "sum": fsum(np.minimum(t, cap)),
                            "sum_squares": fsum(np.minimum(t, cap) ** 2),
                            "capped": int((t > cap).sum()),
                        }
                        for _, t in variants
                    ],
                }
            )
    return {
        "name": name,
        "population": [n for n, _ in variants],
        "totals": [t.tolist() for _, t in variants],
        "cases": cases,
    }


CAPPING = {
    "revenue_with_zero_units": (
        31,
        {
            "population": [400, 420],
            "valued": [90, 110],
            "mu": 3,
            "sigma": 1.2,
            "quantiles": [0.5, 0.9, 0.95, 0.99],
        },
    ),
    "refunds_and_stored_zeros": (
        32,
        {
            "population": [60, 50, 70],
            "valued": [40, 35, 52],
            "mu": 2,
            "sigma": 0.8,
            "negative": True,
            "stored_zeros": True,
            "quantiles": [0.05, 0.3, 0.75, 0.999],
        },
    ),
    "every_unit_valued": (
        33,
        {
            "population": [25, 30],
            "valued": [25, 30],
            "mu": 1,
            "sigma": 2,
            "quantiles": [0.01, 0.5, 0.99],
        },
    ),
}


# ---------------------------------------------------------------------------------------------
# Heterogeneity


def heterogeneity_case(
    name: str, effects: list[float], variances: list[float], p_values: list[float]
) -> dict[str, Any]:
    found = combine_effects(np.array(effects), np.array(variances))
    test = found.test_homogeneity()
    return {
        "name": name,
        "effects": effects,
        "variances": variances,
        "q": float(found.q),
        "df": int(test.df),
        "p_value": float(test.pvalue),
        # statsmodels reports (Q - df) / Q unclipped; Higgins and Thompson's I^2 is clipped at 0.
        "i_squared": max(0.0, float(found.i2)),
        "i_squared_unclipped": float(found.i2),
        "pooled_effect": float(found.mean_effect_fe),
        "pooled_variance": float(found.var_eff_w_fe),
        "p_values": p_values,
        "bh": [float(p) for p in multipletests(p_values, method="fdr_bh")[1]],
    }


HETEROGENEITY = {
    "homogeneous": (
        [0.10, 0.12, 0.09, 0.11],
        [0.0004, 0.0009, 0.0005, 0.0016],
        [0.001, 0.02, 0.004, 0.3],
    ),
    "one_segment_differs": (
        [0.10, 0.11, -0.08, 0.12, 0.09],
        [0.0004, 0.0006, 0.0005, 0.001, 0.0008],
        [0.0001, 0.0002, 0.01, 0.003, 0.04],
    ),
    "two_segments": ([0.05, 0.25], [0.002, 0.003], [0.3, 0.0001]),
    "lifts_of_ten_countries": (
        [0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.06, 0.02, 0.15, 0.01],
        [1e-4, 2e-4, 1.5e-4, 3e-4, 1e-4, 5e-4, 2.5e-4, 1e-4, 4e-4, 2e-4],
        [0.05, 0.0004, 0.4, 0.08, 0.0001, 0.99, 0.0002, 0.04, 0.0001, 0.5],
    ),
}


def write(name: str, cases: list[dict[str, Any]]) -> None:
    text = json.dumps({"alpha": ALPHA, "cases": cases}, indent=1)
    (HERE / name).write_text(text + "\n")


def main() -> None:
    write("cuped.json", [cuped_case(k, seed, s) for k, (seed, s) in CUPED.items()])
    write("ratio.json", [ratio_case(k, seed, s) for k, (seed, s) in RATIO.items()])
    write("capping.json", [capping_case(k, seed, s) for k, (seed, s) in CAPPING.items()])
    write("heterogeneity.json", [heterogeneity_case(k, *v) for k, v in HETEROGENEITY.items()])


if __name__ == "__main__":
    main()
