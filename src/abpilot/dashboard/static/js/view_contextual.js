// The experiment page for contextual bandits, from GET .../bandit/stats: how often each arm is
// chosen, success rates with intervals, the arms' posteriors, and the bandit against its control.

import * as charts from "./charts.js";
import {
  byId,
  chartFigure,
  fmtInt,
  fmtInterval,
  fmtPct,
  fmtPoints,
  h,
  keyText,
  pText,
} from "./dom.js";
import { betaMean } from "./stats.js";
import { controlKey, failed } from "./summary.js";

export function figures() {
  return [
    chartFigure(
      "chart-allocation",
      "How often each arm is chosen",
      "Share of all decisions per arm so far; the bandit chooses per request and context.",
    ),
    chartFigure(
      "chart-rates",
      "Success rate per arm, over all contexts",
      "Decisions with at least one success / decisions, with 95% Wilson intervals. An arm best " +
        "in one context can look average here: the table per context below tells them apart.",
    ),
    chartFigure(
      "chart-posteriors",
      "Posterior of each arm's success rate",
      "Beta(alpha, beta) of each arm over all contexts, as the bandit holds it " +
        "(prior included), drawn in the browser.",
    ),
    chartFigure(
      "chart-units",
      "Decisions per arm",
      "Totals to date; the service keeps no per-arm time series of decisions.",
    ),
  ];
}

export function render(experiment, data) {
  const stats = data.stats && !failed(data.stats) ? data.stats : null;
  if (!stats) {
    return {
      verdict: {
        tone: "neutral",
        headline: "Bandit statistics are unavailable",
        lines: [data.stats ? data.stats.message : ""],
      },
      tiles: [],
      tables: [],
    };
  }
  const keys = experiment.variants.map((v) => v.key);
  const colours = charts.colourMap(keys, controlKey(experiment));
  const arms = stats.arms;
  const labels = arms.map((a) => a.arm);
  const armColours = arms.map((a) => colours[a.arm] || charts.CONTROL_COLOUR);

  charts.draw(
    byId("chart-allocation"),
    charts.barsConfig(
      labels,
      arms.map((a) => a.selection_rate ?? 0),
      armColours,
      {
        axisTitle: "share of decisions",
        percent: true,
      },
    ),
    `Selection rate per arm: ${arms.map((a) => `${a.arm} ${fmtPct(a.selection_rate)}`).join(", ")}`,
  );
  const rateRows = arms.map((a, i) => ({
    label: a.arm,
    value: a.performance.success_rate,
    ci: a.performance.ci,
    colour: armColours[i],
    detail: ` ${fmtInt(a.performance.successes)} successes / ${fmtInt(a.performance.decisions)}`,
  }));
  charts.draw(
    byId("chart-rates"),
    charts.ratesConfig(rateRows, { axisTitle: "success rate" }),
    "Success rate per arm with 95% intervals: " +
      rateRows.map((r) => `${r.label} ${fmtPct(r.value)} (${fmtInterval(r.ci)})`).join("; "),
  );
  charts.draw(
    byId("chart-posteriors"),
    charts.posteriorConfig(
      arms.map((a, i) => ({ label: a.arm, a: a.alpha, b: a.beta, colour: armColours[i] })),
      { axisTitle: "success rate" },
    ),
    `Posteriors: ${arms.map((a) => `${a.arm} Beta(${a.alpha}, ${a.beta})`).join("; ")}`,
  );
  charts.draw(
    byId("chart-units"),
    charts.barsConfig(
      labels,
      arms.map((a) => a.performance.decisions),
      armColours,
      {
        axisTitle: "decisions",
      },
    ),
    "Decisions per arm: " +
      arms.map((a) => `${a.arm} ${fmtInt(a.performance.decisions)}`).join(", "),
  );

  return { verdict: verdict(stats), tiles: tiles(stats), tables: tables(stats) };
}

function verdict(stats) {
  const overall = stats.overall;
  if (overall.decisions === 0) {
    return { tone: "neutral", headline: "No decisions yet", lines: [] };
  }
  const best = [...stats.arms].sort(
    (x, y) => betaMean(y.alpha, y.beta) - betaMean(x.alpha, x.beta),
  )[0];
  const bestLine =
    `Best arm over all contexts: ${best.arm} (posterior mean ` +
    `${fmtPct(betaMean(best.alpha, best.beta))}, ` +
    `chosen in ${fmtPct(best.selection_rate)} of decisions).`;
  const comparison = stats.bandit_vs_control;
  if (!comparison.control) {
    return {
      tone: "neutral",
      headline: "No control holdout to compare with",
      lines: [
        `Overall success rate ${fmtPct(overall.success_rate)} over ${fmtInt(overall.decisions)} ` +
          "decisions. Configure settings.contextual.holdout to compare the bandit with a " +
          "control policy.",
        bestLine,
      ],
    };
  }
  const { bandit, control, difference, difference_ci: ci, p_value: p } = comparison;
  let tone = "neutral";
  let headline = "No significant difference between the bandit and the control yet";
  if (p !== null && p < 0.05 && difference > 0) {
    tone = "success";
    headline = "The bandit beats the control policy";
  } else if (p !== null && p < 0.05 && difference < 0) {
    tone = "danger";
    headline = "The control policy beats the bandit";
  }
  const interval = ci ? ` (95% CI ${fmtPoints(ci[0])} to ${fmtPoints(ci[1])})` : "";
  return {
    tone,
    headline,
    lines: [
      `The bandit's decisions succeeded ${fmtPct(bandit.success_rate)} of the time ` +
        `(${fmtInt(bandit.decisions)} decisions); the control policy's, on the holdout, ` +
        `${fmtPct(control.success_rate)} (${fmtInt(control.decisions)} decisions): a ` +
        `difference of ${fmtPoints(difference)}${interval}, ${pText(p)}.`,
      bestLine,
    ],
  };
}

function tiles(stats) {
  const comparison = stats.bandit_vs_control;
  return [
    {
      label: "Decisions",
      value: fmtInt(stats.overall.decisions),
      hint: `${stats.arms.length} arms`,
    },
    {
      label: "Success rate",
      value: fmtPct(stats.overall.success_rate),
      hint: stats.overall.ci ? `95% CI ${fmtInterval(stats.overall.ci)}` : "no decisions yet",
    },
    { label: "Contexts seen", value: fmtInt(stats.contexts.length), hint: "distinct context keys" },
    {
      label: "Bandit − control",
      value: fmtPoints(comparison.difference),
      hint: comparison.control ? pText(comparison.p_value) : "no holdout",
    },
  ];
}

function tables(stats) {
  return [
    {
      caption: "Arms",
      columns: [
        { label: "Arm" },
        { label: "Decisions", numeric: true },
        { label: "Successes", numeric: true },
        { label: "Success rate (95% CI)", numeric: true },
        { label: "Chosen", numeric: true },
        { label: "Posterior", numeric: true },
      ],
      rows: stats.arms.map((a) => [
        keyText(a.arm),
        fmtInt(a.performance.decisions),
        fmtInt(a.performance.successes),
        `${fmtPct(a.performance.success_rate)} (${fmtInterval(a.performance.ci)})`,
        fmtPct(a.selection_rate),
        `Beta(${a.alpha}, ${a.beta})`,
      ]),
    },
    {
      caption: "Arm results per context",
      columns: [
        { label: "Context" },
        { label: "Decisions", numeric: true },
        ...stats.arms.map((a) => ({ label: a.arm, numeric: true })),
        { label: "Best arm" },
      ],
      rows: stats.contexts.map((c) => {
        const byArm = new Map((c.arms || []).map((a) => [a.arm, a]));
        return [
          keyText(c.context_key.replace(/\|/g, " · "), "mono small"),
          fmtInt(c.performance.decisions),
          ...stats.arms.map((arm) => {
            const found = byArm.get(arm.arm);
            return found && found.performance.decisions
              ? `${fmtPct(found.performance.success_rate)} of ${fmtInt(found.performance.decisions)}`
              : "—";
          }),
          keyText(c.best_arm),
        ];
      }),
    },
  ];
}
