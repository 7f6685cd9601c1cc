// The verdict of an A/B test or bandit page, in words: the decision and each of its reasons,
// a completion against the analysis said as such, and no leader named while the sample ratio is
// off.

import { fmtList, fmtNumber, fmtPct, fmtProb, fmtSignedPct, h, pText, sentence } from "./dom.js";
import { banditBelief, reasonName } from "./summary.js";

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

/** {tone, headline, lines} of an A/B test or bandit page. */
export function verdict(experiment, analysis, history, rows, source) {
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

