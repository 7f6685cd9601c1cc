// Every metric of an A/B test or bandit (the primary goal, the secondary goals, the guardrails):
// each variant's lift over the control with its interval drawn as a bar, the guardrails'
// verdicts, and every number marked when a sample ratio mismatch makes it untrustworthy.

import {
  badge,
  fill,
  fmtNumber,
  fmtP,
  fmtPct,
  fmtPoints,
  fmtSignedPct,
  h,
  keyText,
} from "./dom.js";
import { failed, orderedMetrics } from "./summary.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 240;
const HEIGHT = 22;
const TONES = { better: "#15803d", worse: "#b91c1c", unclear: "#64748b" };

function svg(tag, attrs) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

/** The lift interval as a bar on a shared scale, with the zero line (and a guardrail's
 * relative margin as a dashed red line; an adjusted metric's unadjusted interval as a thin
 * grey line under the bar). */
export function intervalBar(lift, ci, { domain, tone, margin, label, unadjusted = null }) {
  const [low, high] = domain;
  const x = (value) => ((value - low) / (high - low)) * WIDTH;
  const bar = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    preserveAspectRatio: "none",
    class: "interval-bar",
    role: "img",
    "aria-label": label,
  });
  bar.append(svg("line", { x1: x(0), x2: x(0), y1: 0, y2: HEIGHT, class: "zero-line" }));
  if (Number.isFinite(margin)) {
    bar.append(svg("line", { x1: x(margin), x2: x(margin), y1: 0, y2: HEIGHT, class: "margin-line" }));
  }
  if (ci) {
    const left = x(ci[0]);
    bar.append(
      svg("rect", {
        x: left,
        y: 6,
        width: Math.max(1, x(ci[1]) - left),
        height: HEIGHT - 12,
        rx: 3,
        fill: tone,
        "fill-opacity": 0.35,
        stroke: tone,
      }),
    );
  }
  if (unadjusted) {
    const y = HEIGHT - 2;
    bar.append(
      svg("line", { x1: x(unadjusted[0]), x2: x(unadjusted[1]), y1: y, y2: y, class: "unadjusted-line" }),
    );
  }
  if (Number.isFinite(lift)) {
    bar.append(svg("rect", { x: x(lift) - 1.5, y: 3, width: 3, height: HEIGHT - 6, fill: tone }));
  }
  return bar;
}

/** The scale every bar of a metric shares: its intervals (adjusted and not), lifts, 0 and the
 * margin. */
export function domainOf(rows, margin) {
  const values = [0];
  for (const v of rows) {
    if (v.lift_ci) values.push(v.lift_ci[0], v.lift_ci[1]);
    if (v.unadjusted_lift_ci) values.push(v.unadjusted_lift_ci[0], v.unadjusted_lift_ci[1]);
    if (Number.isFinite(v.lift)) values.push(v.lift);
  }
  if (Number.isFinite(margin)) values.push(margin);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const pad = Math.max((high - low) * 0.08, 0.005);
  return [low - pad, high + pad];
}

/** better / worse / unclear: where the interval lies, in the metric's direction. */
export function sideOf(ci, higherIsBetter) {
  if (!ci) return "unclear";
  if (ci[0] > 0) return higherIsBetter ? "better" : "worse";
  if (ci[1] < 0) return higherIsBetter ? "worse" : "better";
  return "unclear";
}

function guardrailVerdict(check) {
  if (!check || check.p_value === null) {
    return badge("Not tested yet", "slate", "Guardrail: not tested yet");
  }
  if (check.harm_detected && !check.harm_ruled_out) {
    return badge("Harmed", "red", "Guardrail: harm detected beyond the margin");
  }
  if (check.harm_ruled_out) {
    return badge("Safe", "green", "Guardrail: harm beyond the margin ruled out");
  }
  if (check.harm_detected) return badge("Harmed within margin", "amber", "Guardrail: harmed");
  return badge("Not yet safe", "amber", "Guardrail: harm beyond the margin not yet ruled out");
}

/** "worst plausible +2.0 pts (tolerates 2.0 pts)": the guardrail's one-sided bound against
 * its margin, on the scale it is tested on (the lift with a relative margin). */
function guardrailBound(check, kind) {
  if (!check || !Number.isFinite(check.bound)) return null;
  let bound;
  let tolerated;
  if (check.margin_relative) {
    [bound, tolerated] = [fmtSignedPct(check.bound), fmtPct(check.margin)];
  } else if (kind === "binary") {
    [bound, tolerated] = [fmtPoints(check.bound), `${(check.margin * 100).toFixed(1)} pts`];
  } else {
    const sign = check.bound > 0 ? "+" : "";
    [bound, tolerated] = [`${sign}${fmtNumber(check.bound, 4)}`, fmtNumber(check.margin, 4)];
  }
  return `worst plausible ${bound} (tolerates ${tolerated})`;
}

function goalVerdict(v, side) {
  if (v.p_value_adjusted === null) return badge("Not tested yet", "slate", "Not tested yet");
  if (!v.significant) return badge("No clear difference", "slate", "No clear difference");
  return side === "worse" ? badge("Worse", "red", "Worse") : badge("Better", "green", "Better");
}

/** What the metric measures: a rate, a mean per unit, or a ratio of two metrics' sums. */
function measureText(metric) {
  if (metric.kind === "ratio") {
    return `ratio: ${metric.numerator} / ${metric.denominator} (sums over units)`;
  }
  return metric.kind === "value" ? "mean per unit" : "share of units converting";
}

/** "capped at 500 per unit", "capped at the 99th percentile (412.5 per unit)". */
function capText(metric, analysis) {
  const cap = metric.cap || {};
  const found = analysis && !failed(analysis) ? analysis : {};
  const percentile = found.cap_percentile ?? cap.percentile;
  if (Number.isFinite(percentile)) {
    const at = Number.isFinite(found.cap) ? ` (${fmtNumber(found.cap, 2)} per unit)` : "";
    return `capped at the ${fmtNumber(percentile * 100, 2)}th percentile${at}`;
  }
  const absolute = found.cap ?? cap.absolute;
  return Number.isFinite(absolute) ? `capped at ${fmtNumber(absolute, 2)} per unit` : "";
}

/** "adjusted by pre_revenue, variance −38%" (the largest reduction over the variants). */
function adjustmentText(metric, variants) {
  const covariate = metric.covariate;
  if (!covariate) return "";
  const reductions = variants
    .map((v) => v.variance_reduction)
    .filter((x) => Number.isFinite(x));
  if (reductions.length === 0) return `adjusted by ${covariate} (CUPED)`;
  const reduction = Math.max(...reductions);
  return `adjusted by ${covariate}, variance ${fmtSignedPct(-reduction, 0)}`;
}

function marginText(metric) {
  if (metric.margin === null || metric.margin === undefined) return "";
  if (metric.margin_relative) return `tolerates ${fmtPct(metric.margin)} worse`;
  return metric.kind === "binary"
    ? `tolerates ${(metric.margin * 100).toFixed(1)} pts worse (absolute)`
    : `tolerates ${fmtNumber(metric.margin, 4)} worse (absolute)`;
}

function valueOf(analysis, v) {
  return analysis.kind === "binary" ? fmtPct(v.conversion_rate) : fmtNumber(v.mean, 3);
}

/** The unadjusted figures beside an adjusted lift: lift, interval, p-value and theta. */
function unadjustedLine(v, level) {
  if (!Number.isFinite(v.unadjusted_lift)) return null;
  const ci = v.unadjusted_lift_ci;
  return h(
    "span",
    { class: "muted small unadjusted" },
    `unadjusted ${fmtSignedPct(v.unadjusted_lift)}` +
      (ci ? ` (${level} ${fmtSignedPct(ci[0])} to ${fmtSignedPct(ci[1])})` : "") +
      `, p ${fmtP(v.unadjusted_p_value)}` +
      (Number.isFinite(v.theta) ? `; θ ${fmtNumber(v.theta, 3)}` : ""),
  );
}

function metricBlock(metric, analysis, srmFlagged) {
  const place = { primary: "primary", secondary: "secondary", guardrail: "guardrail" }[metric.place];
  const analysed = analysis && !failed(analysis) ? analysis.variants : [];
  const adjusted = adjustmentText(metric, analysed);
  const head = h(
    "div",
    { class: "metric-head" },
    h(
      "h3",
      {},
      keyText(metric.key),
      h("span", { class: `tag tag-${place}` }, place),
      metric.kind === "ratio" ? h("span", { class: "tag tag-ratio" }, "ratio") : null,
      metric.covariate ? h("span", { class: "tag tag-adjusted" }, "adjusted") : null,
      capText(metric, analysis) ? h("span", { class: "tag tag-capped" }, "capped") : null,
    ),
    h(
      "p",
      { class: "muted small metric-about" },
      [
        measureText(metric),
        metric.higher_is_better === false ? "lower is better" : "higher is better",
        marginText(metric),
        capText(metric, analysis),
      ]
        .filter(Boolean)
        .join(" · "),
    ),
    adjusted ? h("p", { class: "adjustment small", "data-covariate": metric.covariate }, adjusted) : null,
  );
  if (!analysis || failed(analysis)) {
    return h(
      "div",
      { class: "metric", "data-metric": metric.key },
      head,
      h("p", { class: "muted" }, `Analysis unavailable: ${analysis ? analysis.message : "no data"}`),
    );
  }
  const control = analysis.variants.find((v) => v.is_control);
  const others = analysis.variants.filter((v) => !v.is_control);
  const relativeMargin =
    metric.place === "guardrail" && metric.margin_relative && Number.isFinite(metric.margin)
      ? (metric.higher_is_better === false ? 1 : -1) * metric.margin
      : null;
  const domain = domainOf(others, relativeMargin);
  const level = `${Math.round((1 - analysis.alpha) * 100)}% CI`;
  const higher = metric.higher_is_better !== false;
  return h(
    "div",
    { class: "metric", "data-metric": metric.key },
    head,
    h(
      "ul",
      { class: "metric-rows plain" },
      others.map((v) => {
        const side = sideOf(v.lift_ci, higher);
        const interval = v.lift_ci
          ? `${level} ${fmtSignedPct(v.lift_ci[0])} to ${fmtSignedPct(v.lift_ci[1])}`
          : "no interval yet";
        const label = `${v.key} on ${metric.key}: lift ${fmtSignedPct(v.lift)}, ${interval}`;
        return h(
          "li",
          {
            class: `metric-row${srmFlagged ? " invalidated" : ""}`,
            "data-variant": v.key,
            "data-side": side,
          },
          h(
            "div",
            { class: "metric-variant" },
            keyText(v.key, "mono strong"),
            h(
              "span",
              { class: "muted small" },
              `${valueOf(analysis, control)} → ${valueOf(analysis, v)}`,
            ),
          ),
          h(
            "div",
            { class: "metric-lift" },
            h("span", { class: "lift-value" }, v.lift === null ? "—" : fmtSignedPct(v.lift)),
            h("span", { class: "muted small" }, interval),
            unadjustedLine(v, level),
          ),
          intervalBar(v.lift, v.lift_ci, {
            domain,
            tone: srmFlagged ? TONES.unclear : TONES[side],
            margin: relativeMargin,
            label: v.unadjusted_lift_ci
              ? `${label}; unadjusted ${fmtSignedPct(v.unadjusted_lift_ci[0])} to ` +
                `${fmtSignedPct(v.unadjusted_lift_ci[1])}`
              : label,
            unadjusted: v.unadjusted_lift_ci,
          }),
          h(
            "div",
            { class: "metric-verdict" },
            metric.place === "guardrail" ? guardrailVerdict(v.guardrail) : goalVerdict(v, side),
            h("span", { class: "muted small" }, `p ${fmtP(v.p_value_adjusted)} adjusted`),
            metric.place === "guardrail" && guardrailBound(v.guardrail, analysis.kind)
              ? h("span", { class: "muted small" }, guardrailBound(v.guardrail, analysis.kind))
              : null,
            srmFlagged ? badge("Not trustworthy", "red", "Invalidated by the SRM") : null,
          ),
        );
      }),
    ),
  );
}

export function metricsSection() {
  return h(
    "section",
    { class: "card", id: "metrics", "aria-labelledby": "metrics-title" },
    h("h2", { class: "section-title", id: "metrics-title" }, "Metrics"),
    h("div", { id: "metrics-note" }),
    h("div", { id: "metrics-body" }, h("p", { class: "muted" }, "Loading…")),
  );
}

/** Fill the metrics card from every metric's analysis. */
export function renderMetrics(experiment, data) {
  const body = document.getElementById("metrics-body");
  if (!body) return;
  const primary = data.analysis && !failed(data.analysis) ? data.analysis : null;
  const srmFlagged = Boolean(primary && primary.srm.flagged);
  const section = document.getElementById("metrics");
  section.dataset.invalid = srmFlagged ? "srm" : "";
  fill(
    document.getElementById("metrics-note"),
    srmFlagged
      ? h(
          "p",
          { class: "callout callout-danger" },
          "Sample ratio mismatch: the traffic split is off, so none of these numbers can be " +
            "trusted; they are greyed and marked until assignment is fixed.",
        )
      : h(
          "p",
          { class: "muted small" },
          "Each variant against the control: the lift and its interval (the bar; the line is no " +
            "change; under an adjusted metric's bar, a thin grey line is its unadjusted " +
            "interval). p-values are adjusted within the primary metric and within the others.",
        ),
  );
  let metrics = orderedMetrics(experiment);
  if (metrics.length === 0 && primary) {
    // Declared by its events (open metrics): the one the analysis read.
    const kind = primary.kind === "binary" ? "binary" : "value";
    metrics = [
      { key: primary.metric, kind, place: "primary", higher_is_better: primary.higher_is_better },
    ];
  }
  fill(
    body,
    metrics.length
      ? metrics.map((m) => metricBlock(m, data.analyses[m.key], srmFlagged))
      : h("p", { class: "muted" }, "No metric declared."),
  );
}
