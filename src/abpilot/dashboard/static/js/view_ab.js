// The experiment page for A/B tests and bandits: allocation over time, rates with intervals,
// posteriors, units per variant, the verdict and the per-variant table.

import * as charts from "./charts.js";
import {
  byId,
  chartFigure,
  fmtDateTime,
  fmtInt,
  fmtInterval,
  fmtP,
  fmtPct,
  fmtProb,
  fmtSignedPct,
  h,
  pText,
  sentence,
} from "./dom.js";
import { banditBelief, controlKey, failed, variantRows } from "./summary.js";

export function figures(experiment) {
  const bandit = experiment.type === "bandit";
  return [
    chartFigure(
      "chart-allocation",
      "Allocation over time",
      bandit
        ? "Share of traffic per variant, stepping at each weight change in the history."
        : "Share of traffic per variant: an A/B test keeps the weights it was created with.",
    ),
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

/** [{t, weights}]: the weights in force from t (ms since the epoch); the last point closes. */
function allocationSeries(experiment, changes) {
  const start = Date.parse(experiment.started_at || experiment.created_at);
  const end = experiment.ended_at ? Date.parse(experiment.ended_at) : Date.now();
  const series = [
    { t: start, weights: Object.fromEntries(experiment.variants.map((v) => [v.key, v.weight])) },
  ];
  for (const change of changes) {
    series.push({ t: Math.max(start, Date.parse(change.computed_at)), weights: change.weights });
  }
  const last = series[series.length - 1];
  series.push({ t: Math.max(end, last.t + 1000), weights: last.weights });
  return series;
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

export function render(experiment, data) {
  const keys = experiment.variants.map((v) => v.key);
  const control = controlKey(experiment);
  const colours = charts.colourMap(keys, control);
  const analysis = data.analysis && !failed(data.analysis) ? data.analysis : null;
  const history = data.history && !failed(data.history) ? data.history : null;
  const { source, rows } = variantRows(experiment, analysis, history);
  const daily = source === "daily";
  const unitWord = daily ? "impressions" : "units";
  const hitWord = daily ? "clicks" : "conversions";

  // Allocation over time.
  const changes = history ? history.weight_changes : [];
  const series = allocationSeries(experiment, changes);
  const now = series[series.length - 1].weights;
  charts.draw(
    byId("chart-allocation"),
    charts.allocationConfig(series, keys, colours),
    `Allocation over time, stacked: ${changes.length} weight changes; ` +
      `now ${describeWeights(now, keys)}.`,
  );
  byId("chart-allocation-note").textContent =
    experiment.status === "draft"
      ? `Not started: it will start with ${describeWeights(now, keys)}.`
      : experiment.type === "bandit"
        ? `${changes.length} weight change${changes.length === 1 ? "" : "s"} since the start; ` +
          `in force now: ${describeWeights(now, keys)}.`
        : `Fixed weights: ${describeWeights(now, keys)}.`;

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
    ? "Clicks / impressions over every posted day, with 95% Wilson intervals computed here " +
      "(the analysis reads exposures and conversions, which this bandit has not received)."
    : analysis
      ? `Converting units / units on the metric “${analysis.metric}”, with 95% Wilson intervals.`
      : `The analysis is unavailable: ${data.analysis ? data.analysis.message : "no data"}.`;

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
      "Totals to date. The service keeps no time series of units for event-fed experiments, " +
      "so there is no cumulative curve to draw.";
  }

  return {
    verdict: verdict(experiment, analysis, history, rows, source),
    tiles: tiles(experiment, analysis, rows, changes, daily),
    tables: [table(analysis, history, rows, daily, now)],
  };
}

const HEADLINES = {
  insufficient_data: ["neutral", "Not enough data yet"],
  srm_detected: ["danger", "Traffic split is off: fix assignment before reading results"],
  not_significant: ["neutral", "No significant difference yet"],
  sample_size_not_reached: ["warn", "Promising, but too early to call"],
  not_confirmed: ["warn", "Promising, but not yet confirmed by the always-valid check"],
  mixed_populations: ["neutral", "Metrics counted over different populations: not compared"],
  conversions_exceed_units: ["danger", "More conversions than units: check the metric's events"],
  tau_required: ["warn", "Set tau, an absolute mde or a baseline to run the sequential test"],
};

function verdict(experiment, analysis, history, rows, source) {
  const lines = [];
  if (source === "daily") {
    const belief = banditBelief(history);
    const best = belief && Object.entries(belief).sort((x, y) => y[1] - x[1])[0];
    return {
      tone: "neutral",
      headline: best
        ? `${best[0]} looks best: ${fmtProb(best[1])} chance of being the best arm`
        : "Learning from the daily totals",
      lines: [
        "This bandit is fed daily totals (impressions and clicks). The analysis reads " +
          "exposures and conversions, so it has nothing to test yet; the figures here come " +
          "from the daily intake and the bandit's own posterior at its latest weight change.",
      ],
    };
  }
  if (!analysis) {
    return { tone: "neutral", headline: "The analysis is unavailable", lines: [] };
  }
  let tone;
  let headline;
  const winner = analysis.winner;
  if (experiment.status === "completed" && experiment.winner) {
    tone = "success";
    headline = `Completed: ${experiment.winner} was chosen`;
  } else if (experiment.status === "draft") {
    tone = "neutral";
    headline = "Not started yet";
  } else if (winner) {
    const controlRow = analysis.variants.find((v) => v.is_control);
    tone = "success";
    headline = `${winner.key} wins on ${analysis.metric}`;
    lines.push(
      `${winner.key} converts at ${fmtPct(winner.conversion_rate)} against ` +
        `${fmtPct(controlRow && controlRow.conversion_rate)} for ${analysis.control}: ` +
        `${fmtSignedPct(winner.relative_improvement)} relative, ${pText(winner.p_value)}.`,
    );
  } else {
    [tone, headline] = HEADLINES[analysis.reason] || ["neutral", sentence(analysis.reason)];
  }
  if (analysis.message) lines.push(sentence(analysis.message));
  const decision = analysis.decision;
  if (decision) {
    // What the primary metric, the guardrails, SRM and the plan decide; each reason's code
    // with its sentence (the code alone where that sentence is the message above).
    const target = decision.variant ? ` ${decision.variant}` : "";
    const reasons = decision.reasons.map((r) =>
      r.message === analysis.message ? r.code : `${r.code}: ${r.message}`,
    );
    lines.push(`Decision: ${decision.action}${target} (${reasons.join("; ")}).`);
  }
  const analysed = rows.filter((r) => r.analysed && r.units > 0);
  if (!winner && analysed.length === rows.length && rows.length > 1) {
    const best = [...analysed].sort(
      (x, y) => (y.analysed.probability_best ?? 0) - (x.analysed.probability_best ?? 0),
    )[0];
    const loss = best.analysed.expected_loss;
    lines.push(
      `${best.key} leads with a ${fmtProb(best.analysed.probability_best)} chance of being ` +
        "best; choosing it loses " +
        (loss < 0.0001 ? "under 0.01" : (loss * 100).toFixed(2)) +
        " percentage points of rate on average if it is not.",
    );
  }
  return { tone, headline, lines };
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
      value: srm.flagged ? "Mismatch" : srm.p_value === null ? "—" : "OK",
      hint: srm.p_value === null ? "not tested yet" : pText(srm.p_value),
      tone: srm.flagged ? "danger" : null,
    });
  }
  return list;
}

const liftInterval = (ci) => (ci ? `${fmtSignedPct(ci[0])} … ${fmtSignedPct(ci[1])}` : "—");

function table(analysis, history, rows, daily, weightsNow) {
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
        h("span", { class: "mono" }, r.key),
        fmtInt(r.units),
        fmtInt(r.conversions),
        `${fmtPct(r.rate, 2)} (${fmtInterval(r.ci, 2)})`,
        fmtPct(weightsNow[r.key] ?? 0),
        fmtProb(belief[r.key]),
      ]),
    };
  }
  return {
    caption: analysis ? `Analysis of ${analysis.metric}` : "Analysis",
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
          { class: "mono" },
          r.key,
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
