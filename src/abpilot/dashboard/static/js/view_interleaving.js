// The experiment page for interleaving: wins per ranker, the preference share with its interval,
// and the posterior of the preference.

import * as charts from "./charts.js";
import { byId, chartFigure, fmtInt, fmtInterval, fmtP, fmtPct, h, pText } from "./dom.js";
import { failed } from "./summary.js";

export function figures() {
  return [
    chartFigure(
      "chart-units",
      "Impressions by outcome",
      "Each merged list shown is won by the ranker with more credited clicks, or is a tie " +
        "(including no clicks).",
    ),
    chartFigure(
      "chart-rates",
      "Share of decided impressions won",
      "Wins / (wins of A + wins of B), with the 95% Wilson interval; the dashed line is no " +
        "preference (50%).",
    ),
    chartFigure(
      "chart-posteriors",
      "Posterior of the preference",
      "Beta(1 + wins, 1 + the other ranker's wins) per ranker, computed in the browser.",
    ),
  ];
}

export function render(experiment, data) {
  const analysis = data.analysis && !failed(data.analysis) ? data.analysis : null;
  if (!analysis || analysis.type !== "interleaving") {
    return {
      verdict: {
        tone: "neutral",
        headline: "The analysis is unavailable",
        lines: [data.analysis ? data.analysis.message : ""],
      },
      tiles: [],
      tables: [],
    };
  }
  const [a, b] = experiment.variants.map((v) => v.key);
  const [colourA, colourB] = ["#2563eb", "#ea580c"];
  const { wins_a: winsA, wins_b: winsB, ties } = analysis;
  const shareA = analysis.preference_a;
  const ciA = analysis.preference_a_ci;

  charts.draw(
    byId("chart-units"),
    charts.barsConfig(
      [`${a} (A) wins`, `${b} (B) wins`, "ties"],
      [winsA, winsB, ties],
      [colourA, colourB, charts.CONTROL_COLOUR],
      { axisTitle: "impressions" },
    ),
    `Impressions: ${a} won ${winsA}, ${b} won ${winsB}, ${ties} ties`,
  );
  const rows = [
    { label: `${a} (A)`, value: shareA, ci: ciA, colour: colourA },
    {
      label: `${b} (B)`,
      value: shareA === null ? null : 1 - shareA,
      ci: ciA ? [1 - ciA[1], 1 - ciA[0]] : null,
      colour: colourB,
    },
  ];
  charts.draw(
    byId("chart-rates"),
    charts.ratesConfig(rows, { axisTitle: "share of decided impressions", reference: 0.5 }),
    "Share of decided impressions won: " +
      rows.map((r) => `${r.label} ${fmtPct(r.value)} (${fmtInterval(r.ci)})`).join("; "),
  );
  charts.draw(
    byId("chart-posteriors"),
    charts.posteriorConfig(
      [
        { label: `${a} (A)`, a: 1 + winsA, b: 1 + winsB, colour: colourA },
        { label: `${b} (B)`, a: 1 + winsB, b: 1 + winsA, colour: colourB },
      ],
      { axisTitle: "share of decided impressions" },
    ),
    `Posterior of the preference: ${a} Beta(${1 + winsA}, ${1 + winsB})`,
  );

  return {
    verdict: verdict(analysis, a, b),
    tiles: [
      { label: "Impressions", value: fmtInt(analysis.impressions), hint: "merged lists shown" },
      { label: "Decided", value: fmtInt(winsA + winsB), hint: "won by one ranker" },
      { label: "Ties", value: fmtInt(ties), hint: "equal clicks or none" },
      {
        label: "p-value",
        value: fmtP(analysis.p_value),
        hint: `sign test, alpha ${analysis.alpha}`,
      },
    ],
    tables: [
      {
        caption: "Rankers",
        columns: [
          { label: "Ranker" },
          { label: "Team" },
          { label: "Wins", numeric: true },
          { label: "Share of decided (95% CI)", numeric: true },
        ],
        rows: rows.map((r, i) => [
          h("span", { class: "mono" }, i === 0 ? a : b),
          i === 0 ? "A" : "B",
          fmtInt(i === 0 ? winsA : winsB),
          `${fmtPct(r.value)} (${fmtInterval(r.ci)})`,
        ]),
      },
    ],
  };
}

function verdict(analysis, a, b) {
  if (analysis.impressions === 0) {
    return {
      tone: "neutral",
      headline: "No impressions yet",
      lines: ["Request merged lists (POST …/interleave) and send clicks (POST …/clicks)."],
    };
  }
  const summary =
    `Of ${fmtInt(analysis.impressions)} impressions, ${a} (A) won ${fmtInt(analysis.wins_a)}, ` +
    `${b} (B) won ${fmtInt(analysis.wins_b)} and ${fmtInt(analysis.ties)} were ties. ` +
    (analysis.preference_a === null
      ? "No impression was decided yet."
      : `A's share of decided impressions is ${fmtPct(analysis.preference_a)} ` +
        `(95% CI ${fmtInterval(analysis.preference_a_ci)}), ${pText(analysis.p_value)}.`);
  if (analysis.winner) {
    const name = analysis.winner === "a" ? `${a} (A)` : `${b} (B)`;
    return { tone: "success", headline: `Users prefer ${name}`, lines: [summary] };
  }
  return { tone: "neutral", headline: "No significant preference yet", lines: [summary] };
}
