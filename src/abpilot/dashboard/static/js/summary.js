// What the dashboard reads about one experiment, and the figures both pages derive from it.

import { ApiError, api, experimentPath } from "./api.js";
import { fmtDate } from "./dom.js";
import { betaAbove, probabilityBest, wilson } from "./stats.js";

/** The value of `promise`, or the ApiError it failed with (a 401 is still thrown). */
async function attempt(promise) {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) return error;
    throw error;
  }
}

export const failed = (value) => value instanceof Error;

/** The experiment's metrics in the order the page shows them: the primary (first) goal, the
 * other goals, then the guardrails. */
export function orderedMetrics(experiment) {
  const metrics = experiment.metrics || [];
  const goals = metrics.filter((m) => m.role !== "guardrail");
  const guardrails = metrics.filter((m) => m.role === "guardrail");
  return [...goals, ...guardrails].map((m) => ({
    ...m,
    place: m === metrics[0] ? "primary" : m.role === "guardrail" ? "guardrail" : "secondary",
  }));
}

/** Fetch what the pages need for this experiment's type, in parallel. With `full` (the
 * experiment page), every metric's analysis and the daily snapshots too, and a warehouse
 * experiment's refresh state. */
export async function loadData(experiment, { full = false } = {}) {
  const key = experiment.key;
  const type = experiment.type;
  const analysed = type === "ab_test" || type === "bandit";
  const others = full && analysed ? experiment.metrics.slice(1).map((m) => m.key) : [];
  const warehouse = full && experiment.source === "warehouse";
  const [analysis, history, stats, snapshots, refresh, ...more] = await Promise.all([
    type === "contextual_bandit" ? null : attempt(api(experimentPath(key, "analysis"))),
    type === "bandit" ? attempt(api(experimentPath(key, "history"))) : null,
    type === "contextual_bandit" ? attempt(api(experimentPath(key, "bandit", "stats"))) : null,
    full && analysed ? attempt(api(experimentPath(key, "snapshots"))) : null,
    warehouse ? attempt(api(experimentPath(key, "refresh"))) : null,
    ...others.map((metric) =>
      attempt(api(`${experimentPath(key, "analysis")}?metric=${encodeURIComponent(metric)}`)),
    ),
  ]);
  const analyses = {};
  if (analysis && !failed(analysis) && analysis.metric) analyses[analysis.metric] = analysis;
  others.forEach((metric, i) => {
    analyses[metric] = more[i];
  });
  return { analysis, history, stats, snapshots, refresh, analyses };
}

export function controlKey(experiment) {
  return (experiment.variants.find((v) => v.is_control) || experiment.variants[0]).key;
}

/**
 * Units, conversions, rate and its 95% interval per variant (A/B tests and bandits). They come
 * from the analysis; a bandit fed daily totals (impressions and clicks), which the analysis does
 * not read, gets them from those totals instead, with Wilson intervals computed here.
 */
export function variantRows(experiment, analysis, history) {
  const analysed = analysis && !failed(analysis) && analysis.variants ? analysis.variants : [];
  const analysedUnits = analysed.reduce((n, v) => n + v.units, 0);
  const daily = history && !failed(history) ? history.daily_metrics : [];
  if (analysedUnits === 0 && daily.length > 0) {
    const totals = new Map(experiment.variants.map((v) => [v.key, { units: 0, conversions: 0 }]));
    for (const row of daily) {
      const total = totals.get(row.variant_name);
      if (!total) continue;
      total.units += row.impressions;
      total.conversions += row.clicks;
    }
    const rows = experiment.variants.map((v) => {
      const total = totals.get(v.key);
      return {
        key: v.key,
        isControl: v.is_control,
        units: total.units,
        conversions: total.conversions,
        rate: total.units ? total.conversions / total.units : null,
        ci: wilson(total.conversions, total.units),
        analysed: null,
      };
    });
    return { source: "daily", rows };
  }
  const rows = analysed.map((v) => ({
    key: v.key,
    isControl: v.is_control,
    units: v.units,
    conversions: v.conversions,
    rate: v.conversion_rate,
    ci: v.ci,
    analysed: v,
  }));
  return { source: "analysis", rows };
}

/** The bandit's own probability of being best per arm, from its latest weight change. */
export function banditBelief(history) {
  if (!history || failed(history) || history.weight_changes.length === 0) return null;
  const latest = history.weight_changes[history.weight_changes.length - 1];
  const arms = (latest.details && latest.details.arms) || {};
  const belief = {};
  for (const [key, arm] of Object.entries(arms)) {
    if (Number.isFinite(arm.probability_best)) belief[key] = arm.probability_best;
  }
  return Object.keys(belief).length ? belief : null;
}

function maxBy(items, score) {
  let best = null;
  for (const item of items) {
    const value = score(item);
    if (value === null || value === undefined || !Number.isFinite(value)) continue;
    if (best === null || value > best.value) best = { item, value };
  }
  return best;
}

/** Units counted so far, and what a unit is for this type. */
export function unitsOf(experiment, data) {
  if (experiment.type === "contextual_bandit") {
    return failed(data.stats) || !data.stats
      ? { count: null, label: "decisions" }
      : { count: data.stats.overall.decisions, label: "decisions" };
  }
  if (experiment.type === "interleaving") {
    return failed(data.analysis) || !data.analysis
      ? { count: null, label: "impressions" }
      : { count: data.analysis.impressions, label: "impressions" };
  }
  if (failed(data.analysis) && !data.history) return { count: null, label: "units" };
  const { source, rows } = variantRows(experiment, data.analysis, data.history);
  return {
    count: rows.reduce((n, row) => n + row.units, 0),
    label: source === "daily" ? "impressions" : "units",
  };
}

/** {key, p}: the leader and its chance of being best, the same notion for every type (the
 * analysis' P(best); a bandit fed daily totals, its own; a contextual bandit's arms over all
 * contexts and an interleaving's preference, from their Beta posteriors here). */
export function evidenceOf(experiment, data) {
  const analysis = data.analysis && !failed(data.analysis) ? data.analysis : null;
  if (experiment.type === "contextual_bandit") {
    const stats = data.stats;
    if (!stats || failed(stats) || stats.overall.decisions === 0) return null;
    const chances = probabilityBest(stats.arms.map((arm) => ({ a: arm.alpha, b: arm.beta })));
    const best = maxBy(stats.arms.map((arm, i) => [arm.arm, chances[i]]), ([, p]) => p);
    return best && { key: best.item[0], p: best.value };
  }
  if (experiment.type === "interleaving") {
    if (!analysis || analysis.wins_a + analysis.wins_b === 0) return null;
    const [a, b] = experiment.variants.map((v) => v.key);
    const chanceA = betaAbove(0.5, 1 + analysis.wins_a, 1 + analysis.wins_b);
    return chanceA >= 0.5 ? { key: a, p: chanceA } : { key: b, p: 1 - chanceA };
  }
  const { source, rows } = variantRows(experiment, analysis, data.history);
  if (source === "daily") {
    const belief = banditBelief(data.history);
    if (!belief) return null;
    const best = maxBy(Object.entries(belief), ([, p]) => p);
    return { key: best.item[0], p: best.value };
  }
  if (rows.length === 0 || rows.every((row) => !row.units)) return null;
  const best = maxBy(rows, (row) => row.analysed.probability_best);
  return best && { key: best.item.key, p: best.value, srm: analysis.srm.flagged };
}

const ACTION_TEXT = {
  ship: (v) => `Ship ${v}`,
  rollback: (v) => `Roll back ${v}`,
  continue: () => "Keep collecting",
  inconclusive: () => "Inconclusive",
};

/** {text, tone, detail}: what to do now, or what was done (the winner of a completed one). */
export function decisionOf(experiment, data) {
  if (experiment.status === "completed") {
    const completion = (experiment.settings && experiment.settings.completion) || {};
    if (!experiment.winner) return { text: "Completed, no winner", tone: "slate" };
    return completion.override
      ? { text: `Winner ${experiment.winner}`, tone: "amber", detail: "against the analysis" }
      : { text: `Winner ${experiment.winner}`, tone: "green" };
  }
  if (experiment.status === "draft") return { text: "Not started", tone: "slate" };
  const analysis = data.analysis && !failed(data.analysis) ? data.analysis : null;
  if (experiment.type === "interleaving") {
    if (!analysis) return null;
    if (analysis.winner) {
      const [a, b] = experiment.variants.map((v) => v.key);
      return { text: `Ship ${analysis.winner === "a" ? a : b}`, tone: "green" };
    }
    return { text: "Keep collecting", tone: "slate" };
  }
  if (experiment.type === "contextual_bandit") {
    const stats = data.stats && !failed(data.stats) ? data.stats : null;
    const comparison = stats && stats.bandit_vs_control;
    if (comparison && comparison.control && comparison.p_value !== null) {
      if (comparison.p_value < 0.05 && comparison.difference > 0) {
        return { text: "Keep the bandit", tone: "green", detail: "beats its control" };
      }
      if (comparison.p_value < 0.05 && comparison.difference < 0) {
        return { text: "Stop the bandit", tone: "red", detail: "its control beats it" };
      }
    }
    return { text: "Keep collecting", tone: "slate" };
  }
  const decision = analysis && analysis.decision;
  if (!decision) return null;
  const tone = { ship: "green", rollback: "red", continue: "slate", inconclusive: "amber" };
  const first = decision.reasons[0];
  return {
    text: ACTION_TEXT[decision.action](decision.variant),
    tone: tone[decision.action],
    detail: first ? reasonName(first.code) : null,
  };
}

const REASON_NAMES = {
  srm_detected: "sample ratio mismatch",
  data_quality: "data quality",
  insufficient_data: "not enough data",
  plan_not_reached: "plan not reached",
  not_confirmed: "not yet confirmed",
  primary_winner: "primary metric wins",
  primary_loser: "primary metric loses",
  no_difference: "no difference at the plan",
  guardrail_harm: "guardrail harmed",
  guardrails_safe: "guardrails safe",
  guardrail_unclear: "guardrail not yet safe",
};

/** A decision reason's code in words. */
export function reasonName(code) {
  return REASON_NAMES[code] || String(code).replace(/_/g, " ");
}

const DAY_MS = 24 * 3600 * 1000;

/** {startedAt, days, daysLeft, reached}: the start, days running, and days left to the plan at
 * the pace so far (null where it cannot be told). */
export function timingOf(experiment, data, now = Date.now()) {
  if (!experiment.started_at) return { startedAt: null, days: null, daysLeft: null };
  const start = Date.parse(experiment.started_at);
  const end = experiment.ended_at ? Date.parse(experiment.ended_at) : now;
  const days = Math.max(0, (end - start) / DAY_MS);
  const analysis = data.analysis && !failed(data.analysis) ? data.analysis : null;
  const plan = analysis && analysis.sample_size;
  if (!plan || !plan.required_per_variant || !analysis.variants) {
    return { startedAt: experiment.started_at, days, daysLeft: null };
  }
  const units = analysis.variants.map((v) => v.units);
  const fewest = Math.min(...units);
  if (fewest >= plan.required_per_variant) {
    return { startedAt: experiment.started_at, days, daysLeft: 0, reached: true };
  }
  if (experiment.status === "completed" || fewest === 0 || days <= 0) {
    return { startedAt: experiment.started_at, days, daysLeft: null };
  }
  const perDay = fewest / days;
  return {
    startedAt: experiment.started_at,
    days,
    daysLeft: (plan.required_per_variant - fewest) / perDay,
  };
}

/** "started Mar 2, 2026 · 5 days running · about 9 days left to the plan". */
export function timingText(timing, status) {
  if (!timing.startedAt) return "not started";
  const parts = [`started ${fmtDate(timing.startedAt)}`];
  const days = Math.floor(timing.days);
  parts.push(
    status === "completed"
      ? `ran ${days === 1 ? "1 day" : `${days} days`}`
      : days < 1
        ? "running since today"
        : `${days === 1 ? "1 day" : `${days} days`} running`,
  );
  if (timing.reached) parts.push("plan reached");
  else if (timing.daysLeft !== null && status !== "completed") {
    const left = Math.ceil(timing.daysLeft);
    parts.push(`about ${left === 1 ? "1 day" : `${left} days`} left to the plan`);
  }
  return parts.join(" · ");
}
