// Results over time for A/B tests and event-fed bandits, from the daily snapshots the
// scheduler's leader keeps (GET …/snapshots): the cumulative lift of each variant with its
// interval, day by day, on a chosen metric, and the units that came each day.

import * as charts from "./charts.js";
import { byId, chartFigure, fill, fmtDate, fmtInt, fmtSignedPct, h } from "./dom.js";
import { failed, orderedMetrics } from "./summary.js";

let chosen = new Map(); // experiment key -> the metric shown

export function historySection(experiment) {
  chosen = new Map([[experiment.key, chosen.get(experiment.key) || null]]);
  return h(
    "section",
    { class: "history", id: "history", "aria-labelledby": "history-title" },
    h(
      "div",
      { class: "history-head" },
      h("h2", { class: "section-title", id: "history-title" }, "Results over time"),
      h(
        "div",
        { class: "filter" },
        h("label", { for: "history-metric", class: "field-label inline" }, "Metric"),
        h("select", { id: "history-metric", class: "input compact" }),
      ),
    ),
    h("p", { class: "muted small", id: "history-note" }),
    h(
      "div",
      { class: "chart-grid" },
      chartFigure("chart-lift", "Cumulative lift over the control", ""),
      chartFigure("chart-daily", "Units per day", "New units each day, per variant."),
    ),
  );
}

const dayLabel = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  timeZone: "UTC",
});

function liftConfig(labels, series, level) {
  const datasets = [];
  for (const s of series) {
    datasets.push(
      {
        label: `${s.key} upper`,
        data: s.ci.map((ci) => (ci ? ci[1] * 100 : null)),
        borderWidth: 0,
        pointRadius: 0,
        fill: false,
        band: true,
      },
      {
        label: `${s.key} ${level}`,
        data: s.ci.map((ci) => (ci ? ci[0] * 100 : null)),
        borderWidth: 0,
        pointRadius: 0,
        backgroundColor: charts.tint(s.colour, 0.18),
        fill: "-1",
        band: true,
      },
      {
        label: s.key,
        data: s.lift.map((x) => (x === null ? null : x * 100)),
        borderColor: s.colour,
        backgroundColor: s.colour,
        borderWidth: 2,
        pointRadius: labels.length > 40 ? 0 : 3,
        tension: 0,
      },
    );
  }
  return {
    type: "line",
    data: { labels, datasets },
    options: {
      interaction: { mode: "index", intersect: false },
      spanGaps: true,
      scales: {
        x: { grid: { display: false }, ticks: { maxTicksLimit: 7, maxRotation: 0 } },
        y: {
          ticks: { maxTicksLimit: 6, callback: (value) => `${value}%` },
          title: { display: true, text: "lift (cumulative)" },
        },
      },
      plugins: {
        intervals: { reference: 0 },
        legend: { labels: { filter: (item, data) => !data.datasets[item.datasetIndex].band } },
        tooltip: {
          filter: (item) => !item.dataset.band,
          callbacks: {
            label: (item) => {
              const s = series.find((x) => x.key === item.dataset.label);
              const ci = s && s.ci[item.dataIndex];
              const interval = ci ? ` (${fmtSignedPct(ci[0])} to ${fmtSignedPct(ci[1])})` : "";
              return ` ${item.dataset.label}: ${fmtSignedPct(item.parsed.y / 100)}${interval}`;
            },
          },
        },
      },
    },
  };
}

function dailyConfig(labels, variants, colours) {
  return {
    type: "bar",
    data: {
      labels,
      datasets: variants.map((v) => ({
        label: v.key,
        data: v.units,
        backgroundColor: charts.tint(colours[v.key], 0.75),
        borderColor: colours[v.key],
        borderWidth: 1,
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked: true, grid: { display: false }, ticks: { maxTicksLimit: 7, maxRotation: 0 } },
        y: { stacked: true, beginAtZero: true, ticks: { maxTicksLimit: 6, precision: 0 } },
      },
    },
  };
}

/** Draw both charts from the snapshots, for the metric chosen in the select. */
export function renderHistory(experiment, data, colours) {
  const section = byId("history");
  if (!section) return;
  const snapshots = data.snapshots && !failed(data.snapshots) ? data.snapshots : null;
  // A ratio's daily snapshot has no figures of its own yet (the snapshots keep each metric's
  // sums, not a ratio's cross sum): not offered, and said in the note.
  const ratios = (experiment.metrics || []).filter((m) => m.kind === "ratio").map((m) => m.key);
  const metrics = (
    snapshots ? snapshots.metrics : orderedMetrics(experiment).map((m) => m.key)
  ).filter((m) => !ratios.includes(m));
  const ratioNote = ratios.length
    ? ` Ratio metrics (${ratios.join(", ")}) are not in the daily snapshots yet.`
    : "";
  const select = byId("history-metric");
  const current = chosen.get(experiment.key) || metrics[0] || null;
  if (select.options.length !== metrics.length) {
    fill(select, metrics.map((m) => h("option", { value: m, selected: m === current }, m)));
    select.onchange = () => {
      chosen.set(experiment.key, select.value);
      renderHistory(experiment, data, colours);
    };
  }
  const days = snapshots ? snapshots.snapshots : [];
  section.dataset.days = String(days.length);
  if (days.length === 0 || !current) {
    byId("history-note").textContent = data.snapshots instanceof Error
      ? `Snapshots unavailable: ${data.snapshots.message}`
      : "No daily snapshot yet: the scheduler's leader takes one within 15 minutes of the " +
        "start, then one at the start of every UTC day.";
    charts.draw(byId("chart-lift"), liftConfig([], [], ""), "No snapshot yet");
    charts.draw(byId("chart-daily"), dailyConfig([], [], colours), "No snapshot yet");
    return;
  }
  const level = `${Math.round((1 - snapshots.alpha) * 100)}% CI`;
  const labels = days.map((d) => dayLabel.format(new Date(`${d.date}T00:00:00Z`)));
  const keys = experiment.variants.map((v) => v.key);
  const series = keys
    .filter((key) => !days[0].variants.find((v) => v.key === key).is_control)
    .map((key) => {
      const points = days.map((d) => d.variants.find((v) => v.key === key).metrics[current]);
      return {
        key,
        colour: colours[key],
        lift: points.map((p) => (p ? p.lift : null)),
        ci: points.map((p) => (p ? p.lift_ci : null)),
      };
    });
  const last = series.map((s) => `${s.key} ${fmtSignedPct(s.lift[s.lift.length - 1])}`);
  charts.draw(
    byId("chart-lift"),
    liftConfig(labels, series, level),
    `Cumulative lift on ${current} over ${days.length} days; at the latest: ${last.join(", ")}`,
  );
  byId("chart-lift-note").textContent =
    `Each day's lift of ${current} on everything counted up to that day, with its ${level} ` +
    "(unadjusted, so it narrows as data come in; read the decision above, not a crossing here).";
  const perDay = keys.map((key) => ({
    key,
    units: days.map((d) => d.variants.find((v) => v.key === key).new_units),
  }));
  charts.draw(
    byId("chart-daily"),
    dailyConfig(labels, perDay, colours),
    `Units per day over ${days.length} days: ` +
      perDay.map((v) => `${v.key} ${fmtInt(v.units.reduce((a, b) => a + b, 0))}`).join(", "),
  );
  byId("history-note").textContent =
    `${days.length} daily snapshot${days.length === 1 ? "" : "s"}, ` +
    `${fmtDate(days[0].taken_at)} to ${fmtDate(days[days.length - 1].taken_at)}.${ratioNote}`;
}
