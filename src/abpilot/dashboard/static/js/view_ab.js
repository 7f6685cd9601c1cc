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
  fmtList,
  fmtNumber,
  fmtP,
  fmtPct,
  fmtProb,
  fmtSignedPct,
  h,
  keyText,
  pText,
  sentence,
} from "./dom.js";
import { banditBelief, controlKey, failed, reasonName, variantRows } from "./summary.js";
import { historySection, renderHistory } from "./view_history.js";
import { metricsSection, renderMetrics } from "./view_metrics.js";

export function panels(experiment) {
  return [metricsSection(), historySection(experiment)];
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
  renderMetrics(experiment, data);
  renderHistory(experiment, data, colours);
  for (const id of ["metrics", "history"]) {
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

/** "units split 1,512 / 1,103 where the weights expect 1,307.5 / 1,307.5 (p < 0.001)". */
export function srmSentence(srm) {
  return (
    `Units split ${fmtList(srm.observed)} where the weights expect ` +
    `${fmtList(srm.expected, (x) => fmtNumber(x, 1))} (${pText(srm.p_value)}): assignment or ` +
    "tracking is broken, so no result of this experiment can be trusted until it is fixed."
  );
}

/** The decision's reasons as lines: each in words, with its sentence. */
function reasonLines(decision, analysis) {
  return decision.reasons.map((r) =>
    h(
      "p",
      { class: "reason", "data-reason": r.code },
      h("strong", {}, `${sentence(reasonName(r.code)).slice(0, -1)}: `),
      r.code === "srm_detected" ? srmSentence(analysis.srm) : sentence(r.message),
    ),
  );
}

const DECISION_WORDS = {
  ship: (v) => `Decision: ship ${v}.`,
  rollback: (v) => `Decision: roll back ${v}.`,
  continue: () => "Decision: keep collecting.",
  inconclusive: () => "Decision: inconclusive.",
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
        "This bandit learns from daily totals of impressions and clicks. The figures below " +
          "come from those totals and from the bandit's own estimate at its latest weight change.",
      ],
    };
  }
  if (!analysis) {
    return { tone: "neutral", headline: "The analysis is unavailable", lines: [] };
  }
  let tone;
  let headline;
  const winner = analysis.winner;
  const decision = analysis.decision;
  const completion = (experiment.settings && experiment.settings.completion) || null;
  if (experiment.status === "completed") {
    if (completion && completion.override) {
      tone = "warn";
      headline = `Completed: ${experiment.winner} chosen against the analysis`;
      const was = completion.decision || {};
      lines.push(
        `When it was completed the analysis decided ${was.action || "otherwise"}` +
          `${was.variant ? ` ${was.variant}` : ""}` +
          `${was.reasons ? ` (${was.reasons.map(reasonName).join("; ")})` : ""}; ` +
          "the override is recorded with the experiment.",
      );
    } else if (experiment.winner) {
      tone = "success";
      headline = `Completed: ${experiment.winner} chosen`;
    } else {
      tone = "neutral";
      headline = "Completed without a winner";
    }
  } else if (experiment.status === "draft") {
    tone = "neutral";
    headline = "Not started yet";
  } else if (analysis.srm.flagged) {
    [tone, headline] = HEADLINES.srm_detected;
  } else if (decision && decision.action === "ship") {
    tone = "success";
    headline = `Ship ${decision.variant}: it wins on ${analysis.metric}`;
  } else if (decision && decision.action === "rollback") {
    tone = "danger";
    headline = `Roll back ${decision.variant}`;
  } else if (winner) {
    tone = "warn";
    headline = `${winner.key} wins on ${analysis.metric}, but a guardrail is not yet safe`;
  } else {
    [tone, headline] = HEADLINES[analysis.reason] || ["neutral", sentence(analysis.reason)];
  }
  if (winner && !analysis.srm.flagged) {
    const controlRow = analysis.variants.find((v) => v.is_control);
    lines.push(
      `${winner.key} converts at ${fmtPct(winner.conversion_rate)} against ` +
        `${fmtPct(controlRow && controlRow.conversion_rate)} for ${analysis.control}: ` +
        `${fmtSignedPct(winner.relative_improvement)} relative, ${pText(winner.p_value)}.`,
    );
  }
  if (decision) {
    lines.push(
      h(
        "p",
        { class: "decision", "data-action": decision.action },
        h("strong", {}, DECISION_WORDS[decision.action](decision.variant)),
      ),
      ...reasonLines(decision, analysis),
    );
  } else if (analysis.message) {
    lines.push(sentence(analysis.message));
  }
  const analysed = rows.filter((r) => r.analysed && r.units > 0);
  const open = experiment.status !== "completed" && !analysis.srm.flagged;
  if (open && !winner && analysed.length === rows.length && rows.length > 1) {
    const best = [...analysed].sort(
      (x, y) => (y.analysed.probability_best ?? 0) - (x.analysed.probability_best ?? 0),
    )[0];
    const loss = best.analysed.expected_loss;
    lines.push(
      `${best.key} leads with a ${fmtProb(best.analysed.probability_best)} chance of being ` +
        "best; choosing it costs " +
        (loss < 0.0001 ? "under 0.01" : fmtNumber(loss * 100, 2)) +
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
