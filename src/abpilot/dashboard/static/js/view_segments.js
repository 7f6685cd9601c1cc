// Segments of an A/B test or bandit that declares dimensions: a "Break down by" picker that reads
// GET …/analysis?dimension=X (&metric=M), a table per segment (units, the lift with its interval
// drawn as a bar, the p-value corrected across segments) and whether the effect differs across
// them (Cochran's Q). The overall result above never changes with it.

import { ApiError, api, experimentPath } from "./api.js";
import {
  badge,
  dataTable,
  fill,
  fmtInt,
  fmtNumber,
  fmtP,
  fmtPct,
  fmtSignedPct,
  h,
  keyText,
  pText,
} from "./dom.js";
import { failed, orderedMetrics } from "./summary.js";
import { domainOf, intervalBar, sideOf } from "./view_metrics.js";

const REFETCH_MS = 30000; // a breakdown is a full analysis per segment: not on every poll
const TONES = { better: "#15803d", worse: "#b91c1c", unclear: "#64748b" };

/** The segments card, or null when the experiment declares no dimension. */
export function segmentsSection(experiment) {
  const dimensions = experiment.dimensions || [];
  if (dimensions.length === 0) return null;
  const metrics = orderedMetrics(experiment);
  const state = { dimension: dimensions[0], metric: metrics.length ? metrics[0].key : "" };
  const body = h("div", { id: "segments-body" }, h("p", { class: "muted" }, "Loading…"));
  const section = h(
    "section",
    { class: "card", id: "segments", "aria-labelledby": "segments-title" },
    h(
      "div",
      { class: "history-head" },
      h("h2", { class: "section-title", id: "segments-title" }, "Segments"),
      h(
        "div",
        { class: "segment-pickers" },
        picker("segment-dimension", "Break down by", dimensions, state.dimension, (value) => {
          state.dimension = value;
          load(section, experiment, state, true);
        }),
        metrics.length > 1
          ? picker(
              "segment-metric",
              "Segment metric",
              metrics.map((m) => m.key),
              state.metric,
              (value) => {
                state.metric = value;
                load(section, experiment, state, true);
              },
            )
          : null,
      ),
    ),
    h(
      "p",
      { class: "muted small" },
      "Each segment's own analysis: units, each variant's lift over the control with its " +
        "interval, and its p-value corrected across the segments (Benjamini–Hochberg). The " +
        "overall result above does not change with it.",
    ),
    body,
  );
  section.segmentState = state;
  return section;
}

function picker(id, label, values, selected, onChange) {
  return h(
    "div",
    { class: "filter" },
    h("label", { for: id, class: "field-label inline" }, label),
    h(
      "select",
      { id, class: "input compact", onchange: (event) => onChange(event.currentTarget.value) },
      values.map((value) => h("option", { value, selected: value === selected }, value)),
    ),
  );
}

/** Refresh the breakdown (on the page's poll: at most every 30 s). */
export function renderSegments(experiment, data) {
  const section = document.getElementById("segments");
  if (!section || !section.segmentState) return;
  const primary = data.analysis && !failed(data.analysis) ? data.analysis : null;
  section.dataset.invalid = primary && primary.srm.flagged ? "srm" : "";
  load(section, experiment, section.segmentState, false);
}

async function load(section, experiment, state, now) {
  const wanted = `${state.dimension}|${state.metric}`;
  if (!now && state.loaded === wanted && Date.now() - state.at < REFETCH_MS) return;
  state.loaded = wanted;
  state.at = Date.now();
  const body = section.querySelector("#segments-body");
  section.setAttribute("aria-busy", "true");
  const query = new URLSearchParams({ dimension: state.dimension });
  if (state.metric) query.set("metric", state.metric);
  let analysis;
  try {
    analysis = await api(`${experimentPath(experiment.key, "analysis")}?${query}`);
  } catch (error) {
    // Not awaited by the page's poll: every failure ends here. A 401 is the key prompt's.
    state.loaded = null;
    if (`${state.dimension}|${state.metric}` !== wanted || !section.isConnected) return;
    section.removeAttribute("aria-busy");
    if (error instanceof ApiError && error.status === 401) return;
    fill(body, h("p", { class: "muted" }, `The breakdown is unavailable: ${error.message}`));
    return;
  }
  if (`${state.dimension}|${state.metric}` !== wanted || !section.isConnected) return;
  section.removeAttribute("aria-busy");
  section.dataset.dimension = state.dimension;
  section.dataset.metric = analysis.metric;
  fill(body, breakdown(analysis, section.dataset.invalid === "srm"));
}

function breakdown(analysis, invalid) {
  const found = analysis.segments;
  if (!found || found.segments.length === 0) {
    return h("p", { class: "muted" }, "No unit has a value of this dimension yet.");
  }
  const higher = analysis.higher_is_better !== false;
  const rows = [];
  for (const segment of found.segments) {
    const variants = segment.analysis.variants;
    const control = variants.find((v) => v.is_control);
    variants.forEach((v, i) => {
      if (!v.is_control) rows.push({ segment, v, control, p: segment.p_values_across_segments[i] });
    });
  }
  const domain = domainOf(
    rows.map((r) => r.v),
    null,
  );
  const level = `${Math.round((1 - analysis.alpha) * 100)}% CI`;
  const several = rows.length > found.segments.length; // more than one variant per segment
  const columns = [
    { label: found.dimension },
    several ? { label: "Variant" } : null,
    { label: "Units", numeric: true },
    { label: `Lift (${level})`, numeric: true },
    { label: "Interval" },
    { label: "p (across segments)", numeric: true },
  ].filter(Boolean);
  const table = dataTable({
    id: "segments-table",
    caption: `${analysis.metric} by ${found.dimension}`,
    columns,
    rows: rows.map(({ segment, v, control, p }) => {
      const side = sideOf(v.lift_ci, higher);
      const interval = v.lift_ci
        ? `${fmtSignedPct(v.lift_ci[0])} to ${fmtSignedPct(v.lift_ci[1])}`
        : "no interval yet";
      return [
        keyText(segment.value, "mono strong"),
        several ? keyText(v.key) : null,
        `${fmtInt(control ? control.units : null)} / ${fmtInt(v.units)}`,
        h(
          "span",
          {},
          h("span", { class: "lift-value" }, v.lift === null ? "—" : fmtSignedPct(v.lift)),
          h("br"),
          h("span", { class: "muted small" }, interval),
        ),
        intervalBar(v.lift, v.lift_ci, {
          domain,
          tone: invalid ? TONES.unclear : TONES[side],
          label: `${v.key} in ${found.dimension} ${segment.value}: lift ${fmtSignedPct(v.lift)}, ${interval}`,
        }),
        fmtP(p),
      ].filter((cell) => cell !== null);
    }),
  });
  const tableRows = table.querySelectorAll("tbody tr");
  rows.forEach((row, i) => {
    tableRows[i].dataset.segment = row.segment.value;
    tableRows[i].dataset.variant = row.v.key;
  });
  return [
    h(
      "p",
      { class: "muted small" },
      `Units are ${rows[0].control ? rows[0].control.key : "control"} / variant; ` +
        `${analysis.metric}, ${found.segments.length} values of ${found.dimension}.`,
    ),
    h("div", { class: `segment-table${invalid ? " invalidated" : ""}` }, table),
    heterogeneity(found, analysis.metric),
  ];
}

/** Whether each variant's effect differs across the segments, the picked metric first. */
function heterogeneity(found, metric) {
  const tests = [...found.heterogeneity].sort(
    (x, y) => (y.metric === metric) - (x.metric === metric),
  );
  if (tests.length === 0) return null;
  return h(
    "div",
    { class: "heterogeneity", id: "heterogeneity" },
    h("h3", { class: "chart-title" }, `Does the effect differ across ${found.dimension}?`),
    h(
      "ul",
      { class: "plain" },
      tests.map((t) => {
        const verdict =
          t.p_value === null
            ? badge("Not tested", "slate", "Heterogeneity: not tested")
            : t.heterogeneous
              ? badge("Differs", "amber", "Heterogeneity: the effect differs across segments")
              : badge("Consistent", "green", "Heterogeneity: no difference across segments");
        const figures =
          t.p_value === null
            ? "too few segments with data to compare"
            : `Cochran's Q ${fmtNumber(t.q, 2)} on ${t.df} df, ${pText(t.p_value)}` +
              (Number.isFinite(t.i_squared) ? `, I² ${fmtPct(t.i_squared, 0)}` : "");
        return h(
          "li",
          {
            class: "heterogeneity-row",
            "data-metric": t.metric,
            "data-variant": t.variant,
            "data-heterogeneous": String(t.heterogeneous),
          },
          verdict,
          " ",
          h("strong", {}, `${t.variant} on ${t.metric}`),
          h("span", { class: "muted small" }, `: ${figures}`),
        );
      }),
    ),
    tests.some((t) => t.heterogeneous)
      ? h(
          "p",
          { class: "small" },
          "Where the effect differs, read the segments before generalising the overall result.",
        )
      : null,
  );
}
