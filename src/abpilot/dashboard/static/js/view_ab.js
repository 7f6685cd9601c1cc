// The experiment page for A/B tests and bandits: allocation over time, rates with intervals,
// posteriors, units per variant, the verdict and the per-variant table.

import * as charts from "./charts.js";
import {
  byId,
  chartFigure,
  fmtDate,
  fmtDateTime,
  fmtInt,
  fmtInterval,
  fmtP,
  fmtPct,
  fmtProb,
  fmtSignedPct,
  h,
  keyText,
  pText,
} from "./dom.js";
import { banditBelief, controlKey, failed, variantRows } from "./summary.js";
import { verdict } from "./verdict_ab.js";
import { historySection, renderHistory } from "./view_history.js";
import { metricsSection, renderMetrics } from "./view_metrics.js";
import { renderSegments, segmentsSection } from "./view_segments.js";
import { renderWarehouse, warehouseSection } from "./view_warehouse.js";

export function panels(experiment) {
  return [
    warehouseSection(experiment),
    metricsSection(),
    segmentsSection(experiment),
    historySection(experiment),
  ];
}

export function figures(experiment) {
  const bandit = experiment.type === "bandit";
  return [
    bandit
      ? chartFigure(
          "chart-allocation",
          "Weights by period",
          "The share of traffic per variant in each period: the start, then each weight change.",
        )
      : null,
    chartFigure("chart-rates", "Conversion rate per variant", ""),
    chartFigure(
      "chart-posteriors",
      "Posterior of each rate",
      "Beta(1 + conversions, 1 + units − conversions) per variant, computed in the browser: " +
        "where each true rate plausibly lies.",
    ),
    chartFigure("chart-units", "Units per variant", ""),
  ];
}

/** [{label, weights, detail}]: the start, then one per weight change; labelled by date when
 * every change fell on a day of its own (a daily bandit, the demo's simulated days), else by
 * period number. */
function periodsOf(experiment, changes) {
  const initial = Object.fromEntries(experiment.variants.map((v) => [v.key, v.weight]));
  const days = changes.map((c) => c.computed_at.slice(0, 10));
  const byDay = new Set(days).size === days.length;
  return [
    { label: "Start", weights: initial, detail: "The weights it was created with" },
    ...changes.map((change, i) => ({
      label: byDay ? fmtDate(change.computed_at) : `Period ${change.period}`,
      weights: change.weights,
      detail: `Period ${change.period}, from ${fmtDateTime(change.computed_at)}`,
      index: i,
    })),
  ];
}

const describeWeights = (weights, keys) =>
  keys.map((key) => `${key} ${fmtPct(weights[key] ?? 0)}`).join(", ");

const dayLabel = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  timeZone: "UTC",
});

function cumulativeByDate(daily, keys) {
  const dates = [...new Set(daily.map((row) => row.date))].sort();
  const perDate = new Map(dates.map((d) => [d, {}]));
  for (const row of daily) perDate.get(row.date)[row.variant_name] = row.impressions;
  return {
    dates,
    series: keys.map((key) => {
      let total = 0;
      return dates.map((d) => {
        total += perDate.get(d)[key] || 0;
        return total;
      });
    }),
  };
}

export function render(experiment, data, app) {
  const keys = experiment.variants.map((v) => v.key);
  const control = controlKey(experiment);
  const colours = charts.colourMap(keys, control);
  const analysis = data.analysis && !failed(data.analysis) ? data.analysis : null;
  const history = data.history && !failed(data.history) ? data.history : null;
  const { source, rows } = variantRows(experiment, analysis, history);
  const daily = source === "daily";
  const unitWord = daily ? "impressions" : "units";
  const hitWord = daily ? "clicks" : "conversions";

  // Weights by period (bandits); an A/B test's fixed weights are said in the table.
  const changes = history ? history.weight_changes : [];
  const periods = periodsOf(experiment, changes);
  const now = periods[periods.length - 1].weights;
  if (experiment.type === "bandit") {
    charts.draw(
      byId("chart-allocation"),
      charts.periodsConfig(periods, keys, colours),
      `Weights by period: ${changes.length} weight changes; now ${describeWeights(now, keys)}.`,
    );
    byId("chart-allocation-note").textContent =
      experiment.status === "draft"
        ? `Not started: it will start with ${describeWeights(now, keys)}.`
        : `${changes.length} weight change${changes.length === 1 ? "" : "s"} since the start; ` +
          `in force now: ${describeWeights(now, keys)}.`;
  }
  const primary = analysis && !daily ? analysis : null;
  const srmFlagged = Boolean(primary && primary.srm.flagged);
  renderWarehouse(experiment, data, app);
  renderMetrics(experiment, data);
  if (!daily) renderSegments(experiment, data);
  renderHistory(experiment, data, colours);
  for (const id of ["metrics", "segments", "history"]) {
    const section = byId(id);
    if (section) section.hidden = daily; // a bandit fed daily totals has no events to analyse
  }

  // Rates with 95% intervals.
  const rateRows = rows.map((row) => ({
    label: row.key,
    value: row.rate,
    ci: row.ci,
    colour: colours[row.key],
    detail: ` ${fmtInt(row.conversions)} ${hitWord} / ${fmtInt(row.units)} ${unitWord}`,
  }));
  charts.draw(
    byId("chart-rates"),
    charts.ratesConfig(rateRows, { axisTitle: daily ? "click-through rate" : "conversion rate" }),
    "Rate per variant with 95% intervals: " +
      rateRows.map((r) => `${r.label} ${fmtPct(r.value)} (${fmtInterval(r.ci)})`).join("; "),
  );
  byId("chart-rates-title").textContent = daily
    ? "Click-through rate per variant"
    : "Conversion rate per variant";
  byId("chart-rates-note").textContent = daily
    ? "Clicks / impressions over every posted day, with 95% Wilson intervals."
    : analysis
      ? `Converting units / units on the primary metric “${analysis.metric}”, with 95% ` +
        `Wilson intervals.${srmFlagged ? " Not trustworthy: the sample ratio is off." : ""}`
      : `The analysis is unavailable: ${data.analysis ? data.analysis.message : "no data"}.`;
  byId("chart-rates").closest("figure").classList.toggle("invalidated", srmFlagged);
  byId("chart-posteriors").closest("figure").classList.toggle("invalidated", srmFlagged);

  // Posteriors.
  const posteriors = rows.map((row) => ({
    label: row.key,
    a: 1 + row.conversions,
    b: 1 + row.units - row.conversions,
    colour: colours[row.key],
  }));
  if (posteriors.length) {
    charts.draw(
      byId("chart-posteriors"),
      charts.posteriorConfig(posteriors),
      "Posterior densities: " +
        posteriors.map((p) => `${p.label} Beta(${fmtInt(p.a)}, ${fmtInt(p.b)})`).join("; "),
    );
  }

  // Units: cumulative when a daily series exists, else totals (and say so).
  if (daily) {
    const { dates, series: cumulative } = cumulativeByDate(history.daily_metrics, keys);
    charts.draw(
      byId("chart-units"),
      charts.linesConfig(
        dates.map((d) => dayLabel.format(new Date(`${d}T00:00:00Z`))),
        keys.map((key, i) => ({ label: key, data: cumulative[i], colour: colours[key] })),
        "cumulative impressions",
      ),
      `Cumulative impressions per variant over ${dates.length} days: ` +
        keys.map((key, i) => `${key} ${fmtInt(cumulative[i][dates.length - 1])}`).join(", "),
    );
    byId("chart-units-title").textContent = "Cumulative impressions per variant";
    byId("chart-units-note").textContent = "Running totals of the daily intake, by date.";
  } else {
    charts.draw(
      byId("chart-units"),
      charts.barsConfig(
        rows.map((r) => r.key),
        rows.map((r) => r.units),
        rows.map((r) => colours[r.key]),
        { axisTitle: "units" },
      ),
      `Units per variant: ${rows.map((r) => `${r.key} ${fmtInt(r.units)}`).join(", ")}`,
    );
    byId("chart-units-title").textContent = "Units per variant";
    byId("chart-units-note").textContent =
      "Totals to date; units per day are under Results over time.";
  }

  return {
    verdict: verdict(experiment, analysis, history, rows, source),
    tiles: tiles(experiment, analysis, rows, changes, daily),
    tables: [table(analysis, history, rows, daily, now, srmFlagged)],
  };
}

function tiles(experiment, analysis, rows, changes, daily) {
  const units = rows.reduce((n, r) => n + r.units, 0);
  const hits = rows.reduce((n, r) => n + r.conversions, 0);
  const list = [
    {
      label: daily ? "Impressions" : "Units",
      value: fmtInt(units),
      hint: `${rows.length} variants`,
    },
    {
      label: daily ? "Clicks" : "Conversions",
      value: fmtInt(hits),
      hint: units ? `${fmtPct(hits / units)} overall` : "none yet",
    },
  ];
  if (experiment.type === "bandit") {
    const latest = changes[changes.length - 1];
    list.push({
      label: "Weight changes",
      value: fmtInt(changes.length),
      hint: latest ? `latest ${fmtDateTime(latest.computed_at)}` : "still on the initial split",
    });
  }
  if (analysis && !daily) {
    const plan = analysis.sample_size;
    list.push({
      label: "Sample size",
      value: plan.progress === null ? "—" : fmtPct(Math.min(1, plan.progress), 0),
      hint:
        plan.required_per_variant === null
          ? "not plannable yet"
          : `of ${fmtInt(plan.required_per_variant)} per variant`,
    });
    const srm = analysis.srm;
    list.push({
      label: "Sample ratio",
      value: srm.flagged ? "Mismatch" : srm.p_value === null ? "Not tested" : "Consistent",
      hint:
        srm.p_value === null
          ? `too few units yet (fewest ${fmtInt(Math.min(...srm.observed))})`
          : pText(srm.p_value),
      tone: srm.flagged ? "danger" : srm.p_value === null ? "muted" : null,
    });
  }
  return list;
}

const liftInterval = (ci) => (ci ? `${fmtSignedPct(ci[0])} … ${fmtSignedPct(ci[1])}` : "—");

function table(analysis, history, rows, daily, weightsNow, srmFlagged) {
  if (daily) {
    const belief = banditBelief(history) || {};
    return {
      caption: "Daily totals per variant",
      columns: [
        { label: "Variant" },
        { label: "Impressions", numeric: true },
        { label: "Clicks", numeric: true },
        { label: "CTR (95% CI)", numeric: true },
        { label: "Weight now", numeric: true },
        { label: "P(best)", numeric: true },
      ],
      rows: rows.map((r) => [
        keyText(r.key),
        fmtInt(r.units),
        fmtInt(r.conversions),
        `${fmtPct(r.rate)} (${fmtInterval(r.ci)})`,
        fmtPct(weightsNow[r.key] ?? 0),
        fmtProb(belief[r.key]),
      ]),
    };
  }
  return {
    caption: analysis
      ? `Variants on the primary metric, ${analysis.metric}` +
        (srmFlagged ? ": not trustworthy, the sample ratio is off" : "")
      : "Analysis",
    invalid: srmFlagged,
    columns: [
      { label: "Variant" },
      { label: "Units", numeric: true },
      { label: "Conversions", numeric: true },
      { label: "Rate (95% CI)", numeric: true },
      { label: "Lift (95% CI)", numeric: true },
      { label: "p (adjusted)", numeric: true },
      { label: "P(beat control)", numeric: true },
      { label: "P(best)", numeric: true },
    ],
    rows: rows.map((r) => {
      const v = r.analysed;
      return [
        h(
          "span",
          {},
          keyText(r.key),
          r.isControl && r.key !== "control" ? h("span", { class: "tag" }, "control") : null,
        ),
        fmtInt(r.units),
        fmtInt(r.conversions),
        r.rate === null ? "—" : `${fmtPct(r.rate)} (${fmtInterval(r.ci)})`,
        r.isControl || !v || v.lift === null
          ? "—"
          : `${fmtSignedPct(v.lift)} (${liftInterval(v.lift_ci)})`,
        r.isControl || !v ? "—" : fmtP(v.p_value_adjusted),
        r.isControl || !v ? "—" : fmtProb(v.chance_to_beat_control),
        v ? fmtProb(v.probability_best) : "—",
      ];
    }),
  };
}
