// What the dashboard reads about one experiment, and the figures both pages derive from it.

import { ApiError, api, experimentPath } from "./api.js";
import { fmtPct, fmtProb } from "./dom.js";
import { betaMean, wilson } from "./stats.js";

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

/** Fetch what the pages need for this experiment's type, in parallel. */
export async function loadData(experiment) {
  const key = experiment.key;
  const type = experiment.type;
  const [analysis, history, stats] = await Promise.all([
    type === "contextual_bandit" ? null : attempt(api(experimentPath(key, "analysis"))),
    type === "bandit" ? attempt(api(experimentPath(key, "history"))) : null,
    type === "contextual_bandit" ? attempt(api(experimentPath(key, "bandit", "stats"))) : null,
  ]);
  return { analysis, history, stats };
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

/** The variant ahead on the primary metric: {key, detail, winner} or null. */
export function leaderOf(experiment, data) {
  if (experiment.type === "contextual_bandit") {
    const stats = data.stats;
    if (!stats || failed(stats) || stats.overall.decisions === 0) return null;
    const best = maxBy(stats.arms, (arm) => betaMean(arm.alpha, arm.beta));
    return best && { key: best.item.arm, detail: `${fmtPct(best.value)} posterior mean` };
  }
  const analysis = data.analysis;
  if (experiment.type === "interleaving") {
    if (!analysis || failed(analysis) || analysis.preference_a === null) return null;
    const [a, b] = experiment.variants.map((v) => v.key);
    const share = analysis.preference_a;
    if (analysis.winner) {
      return { key: analysis.winner === "a" ? a : b, detail: "preferred", winner: true };
    }
    if (share === 0.5) return null;
    return share > 0.5
      ? { key: a, detail: `${fmtPct(share)} of decided` }
      : { key: b, detail: `${fmtPct(1 - share)} of decided` };
  }
  if (analysis && !failed(analysis) && analysis.winner) {
    return { key: analysis.winner.key, detail: "winner", winner: true };
  }
  const { source, rows } = variantRows(experiment, analysis, data.history);
  if (source === "daily") {
    const belief = banditBelief(data.history);
    if (belief) {
      const best = maxBy(Object.entries(belief), ([, p]) => p);
      return { key: best.item[0], detail: `${fmtProb(best.value)} P(best)` };
    }
    const best = maxBy(rows, (row) => row.rate);
    return best && { key: best.item.key, detail: `${fmtPct(best.value)} rate` };
  }
  if (rows.every((row) => !row.units)) return null;
  const best = maxBy(rows, (row) => row.analysed.probability_best);
  return best && { key: best.item.key, detail: `${fmtProb(best.value)} P(best)` };
}
