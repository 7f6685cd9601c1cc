"""Write ``analysis.json``: reference values computed directly with SciPy, statsmodels and closed
forms, independently of abpilot's code. Run ``python tests/cases/make_cases.py`` to regenerate.

- rates and intervals: statsmodels (Wilson; Newcombe for the difference), Fisher's exact test and
  chi-square from SciPy, the two-proportion z-test from statsmodels;
- P(B > A) for Beta posteriors: Evan Miller's closed-form sum (integer parameters);
- P(best) and expected loss for more arms: scipy.integrate.quad, one integral per arm;
- relative lift: the delta-method closed form;
- Welch's t-test: scipy.stats.ttest_ind on the raw per-unit values;
- sample size: the closed form n = 2 ((z_{1-a/2} + z_{1-b}) / h)^2 with Cohen's h (the
  arcsine of a rate has variance 1/n, so a difference of two has 2/n);
- multiple comparisons: statsmodels' multipletests;
- Fisher's exact test on populations too large for SciPy (10^8 and 10^9 units, few
  successes): exact rational arithmetic (fractions, math.comb) over every table with the
  observed margins;
- small expected losses (two arms): scipy.integrate.quad of F_i(x) S_j(x), with SciPy's own
  CDF and survival function, at a relative tolerance of 1e-12.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import integrate, stats
from scipy.special import betaln
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

HERE = Path(__file__).parent
PRIOR = (1, 1)

BINARY = {
    "small_counts": [(3, 10), (9, 12)],
    "zero_conversions": [(0, 100), (0, 100)],
    "zero_in_control": [(0, 50), (5, 50)],
    "equal_rates": [(50, 500), (50, 500)],
    "large_counts": [(320, 10_000), (420, 10_000)],
    "three_arms": [(100, 1_000), (120, 1_000), (90, 1_000)],
    "all_converted": [(10, 10), (10, 10)],
    "ad_team_prior_seed": [(4480, 140_000), (5880, 140_000), (5320, 140_000)],
}


def miller(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Evan Miller: P(p_B > p_A) for Beta(a_a, b_a) and Beta(a_b, b_b), integer a_b."""
    total = 0.0
    for i in range(a_b):
        total += math.exp(
            betaln(a_a + i, b_a + b_b) - math.log(b_b + i) - betaln(1 + i, b_b) - betaln(a_a, b_a)
        )
    return total


def best_by_quad(dists: list) -> tuple[list[float], list[float]]:
    probabilities, expected_max = [], 0.0
    for i, d in enumerate(dists):

        def f(x: float, i: int = i, d=d) -> float:
            return d.pdf(x) * math.prod(o.cdf(x) for j, o in enumerate(dists) if j != i)

        lo, hi = d.ppf(1e-15), d.isf(1e-15)
        probabilities.append(
            integrate.quad(f, lo, hi, epsabs=1e-14, limit=500, points=[d.mean()])[0]
        )
        expected_max += integrate.quad(
            lambda x, f=f: x * f(x), lo, hi, epsabs=1e-14, limit=500, points=[d.mean()]
        )[0]
    return probabilities, [expected_max - d.mean() for d in dists]


def delta_lift(p_t: float, n_t: int, p_c: float, n_c: int) -> tuple[float, list[float]] | None:
    if p_c == 0:
        return None
    lift = p_t / p_c - 1
    var = (p_t * (1 - p_t) / n_t) / p_c**2 + p_t**2 * (p_c * (1 - p_c) / n_c) / p_c**4
    half = stats.norm.ppf(0.975) * math.sqrt(var)
    return lift, [lift - half, lift + half]


def binary_case(arms: list[tuple[int, int]], prior: tuple[float, float]) -> dict:
    dists = [stats.beta(prior[0] + s, prior[1] + n - s) for s, n in arms]
    p_best, loss = best_by_quad(dists)
    s_c, n_c = arms[0]
    variants = []
    for i, (s, n) in enumerate(arms):
        row = {
            "rate": s / n,
            "ci": list(proportion_confint(s, n, method="wilson")),
            "probability_best": p_best[i],
            "expected_loss": loss[i],
            "credible_interval": [dists[i].ppf(0.025), dists[i].ppf(0.975)],
        }
        if i > 0:
            table = [[s, n - s], [s_c, n_c - s_c]]
            row["p_value"] = stats.fisher_exact(table).pvalue
            if 0 < s + s_c < n + n_c:
                row["p_value_z"] = proportions_ztest([s, s_c], [n, n_c])[1]
            row["difference"] = s / n - s_c / n_c
            row["difference_ci"] = list(
                confint_proportions_2indep(s, n, s_c, n_c, method="newcomb", compare="diff")
            )
            lift = delta_lift(s / n, n, s_c / n_c, n_c)
            if lift:
                row["lift"], row["lift_ci"] = lift
            a_b, b_b = int(prior[0] + s), int(prior[1] + n - s)
            a_a, b_a = int(prior[0] + s_c), int(prior[1] + n_c - s_c)
            row["chance_to_beat_control"] = miller(a_a, b_a, a_b, b_b)
        variants.append(row)
    return {"arms": arms, "prior": list(prior), "variants": variants}


def value_case(seed: int, sizes: tuple[int, int], means: tuple[float, float]) -> dict:
    rng = np.random.default_rng(seed)
    units = [
        np.round(rng.exponential(m, n) * (rng.random(n) < 0.3), 2).tolist()
        for m, n in zip(means, sizes, strict=True)
    ]
    control, variant = (np.array(u) for u in units)
    result = stats.ttest_ind(variant, control, equal_var=False)
    return {
        "units": units,
        "mean": [float(control.mean()), float(variant.mean())],
        "variance": [float(control.var(ddof=1)), float(variant.var(ddof=1))],
        "p_value": float(result.pvalue),
        "difference_ci": list(result.confidence_interval(0.95)),
    }


def small_loss_case(family: str, arms: list[tuple[float, float]]) -> dict:
    """Expected loss of each of two arms, E[(X_j - X_i)^+] = integral F_i(x) S_j(x) dx."""
    if family == "beta":
        dists = [stats.beta(a, b) for a, b in arms]
    else:
        dists = [stats.norm(m, s) for m, s in arms]
    lo = min(d.ppf(1e-15) for d in dists)
    hi = max(d.isf(1e-15) for d in dists)
    points = sorted({float(x) for d in dists for x in d.ppf([1e-9, 0.001, 0.5, 0.999, 1 - 1e-9])})
    losses = []
    for i, j in ((0, 1), (1, 0)):
        losses.append(
            integrate.quad(
                lambda x, i=i, j=j: dists[i].cdf(x) * dists[j].sf(x),
                lo,
                hi,
                points=points,
                epsabs=0,
                epsrel=1e-12,
                limit=1000,
            )[0]
        )
    return {"family": family, "arms": [list(a) for a in arms], "expected_loss": losses}


def exact_fisher(s_t: int, n_t: int, s_c: int, n_c: int) -> dict:
    """Two-sided Fisher p-value: the probability of every table with the observed margins at
    most as likely as the observed one, in exact rational arithmetic."""
    k = s_t + s_c
    support = range(max(0, k - n_c), min(k, n_t) + 1)
    weight = {x: math.comb(n_t, x) * math.comb(n_c, k - x) for x in support}
    total = sum(weight.values())
    extreme = sum(w for w in weight.values() if w <= weight[s_t])
    return {"table": [s_t, n_t, s_c, n_c], "p_value": float(Fraction(extreme, total))}


def sample_size(p1: float, p2: float, alpha: float, power: float, comparisons: int) -> int:
    h = abs(2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1)))
    z = stats.norm.ppf(1 - alpha / comparisons / 2) + stats.norm.ppf(power)
    return math.ceil(2 * (z / h) ** 2)


def main() -> None:
    cases = {
        "binary": {name: binary_case(arms, PRIOR) for name, arms in BINARY.items()},
        "binary_ad_prior": binary_case(BINARY["ad_team_prior_seed"], (1, 99)),
        "value": {
            "revenue": value_case(7, (400, 420), (30.0, 36.0)),
            "small": value_case(11, (12, 9), (10.0, 10.0)),
        },
        "srm": [
            {
                "observed": obs,
                "weights": w,
                "p_value": stats.chisquare(obs, [sum(obs) * x / sum(w) for x in w]).pvalue,
            }
            for obs, w in [
                ([5000, 5000], [0.5, 0.5]),
                ([5000, 5300], [0.5, 0.5]),
                ([2100, 7900], [0.2, 0.8]),
                ([2000, 8000], [0.25, 0.75]),
                ([1000, 1000, 1100], [1 / 3, 1 / 3, 1 / 3]),
            ]
        ],
        "corrections": {
            "p_values": [0.01, 0.04, 0.03, 0.2, 0.001],
            "holm": list(multipletests([0.01, 0.04, 0.03, 0.2, 0.001], method="holm")[1]),
            "bh": list(multipletests([0.01, 0.04, 0.03, 0.2, 0.001], method="fdr_bh")[1]),
        },
        "small_losses": [
            small_loss_case("beta", [(101, 901), (1 + s, 1001 - s)])
            for s in (150, 170, 190, 200, 210)
        ]
        + [
            small_loss_case("beta", [(0.5, 100.5), (8.5, 92.5)]),
            small_loss_case("normal", [(0.0, 0.1), (0.8, 0.1)]),
            small_loss_case("normal", [(10.0, 0.5), (14.0, 0.4)]),
        ],
        "fisher_large": [
            exact_fisher(*table)
            for table in [
                (3, 10**8, 9, 10**8),
                (3, 10**9, 9, 10**9),
                (0, 10**9, 4, 10**9),
                (20, 3 * 10**8, 45, 5 * 10**8),
                (1, 2_000_000, 0, 2_000_000),
                (150, 10**8, 210, 10**8),
            ]
        ],
        "sample_size": [
            {
                "baseline": p1,
                "target": p2,
                "alpha": a,
                "power": pw,
                "variants": k,
                "required": sample_size(p1, p2, a, pw, k - 1),
            }
            for p1, p2, a, pw, k in [
                (0.10, 0.12, 0.05, 0.8, 2),
                (0.10, 0.11, 0.05, 0.9, 2),
                (0.032, 0.042, 0.05, 0.8, 3),
                (0.5, 0.55, 0.01, 0.8, 4),
            ]
        ],
    }
    text = json.dumps(cases, indent=1, default=float)
    (HERE / "analysis.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
