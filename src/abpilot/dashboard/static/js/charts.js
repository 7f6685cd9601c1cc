// Chart.js configurations for the dashboard. Chart.js (vendor/chart.umd.min.js) sets window.Chart.

import { fmtInterval, fmtPct } from "./dom.js";
import { betaCurve, betaMean } from "./stats.js";

const Chart = window.Chart;

Chart.defaults.font.family =
  'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
Chart.defaults.font.size = 12;
Chart.defaults.color = "#475569";
Chart.defaults.borderColor = "#e2e8f0";
Chart.defaults.animation = false; // charts redraw on every poll; motion would only distract
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.plugins.legend.position = "bottom";
Chart.defaults.plugins.legend.labels.boxWidth = 12;
Chart.defaults.plugins.legend.labels.boxHeight = 12;
Chart.defaults.plugins.tooltip.backgroundColor = "#0f172a";
Chart.defaults.plugins.tooltip.padding = 8;

export const CONTROL_COLOUR = "#64748b";
const PALETTE = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#db2777", "#0891b2", "#ca8a04"];
const INK = "#0f172a";

/** One colour per variant key, the control always slate grey. */
export function colourMap(keys, controlKey) {
  const colours = {};
  let next = 0;
  for (const key of keys) {
    if (key === controlKey) colours[key] = CONTROL_COLOUR;
    else {
      colours[key] = PALETTE[next % PALETTE.length];
      next += 1;
    }
  }
  return colours;
}

export function tint(hex, alpha) {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

// Interval whiskers over bars (a dataset's `intervals`: [low, high] per bar), and an optional
// dashed reference line (options.plugins.intervals.reference, in data units).
const intervalPlugin = {
  id: "intervals",
  afterDatasetsDraw(chart, _args, options) {
    const { ctx, chartArea } = chart;
    if (options && Number.isFinite(options.reference)) {
      const y = chart.scales.y.getPixelForValue(options.reference);
      ctx.save();
      ctx.strokeStyle = "#94a3b8";
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(chartArea.left, y);
      ctx.lineTo(chartArea.right, y);
      ctx.stroke();
      ctx.restore();
    }
    chart.data.datasets.forEach((dataset, index) => {
      if (!dataset.intervals) return;
      const meta = chart.getDatasetMeta(index);
      if (meta.hidden) return;
      const scale = chart.scales[meta.yAxisID];
      ctx.save();
      ctx.strokeStyle = INK;
      ctx.lineWidth = 1.5;
      meta.data.forEach((bar, i) => {
        const interval = dataset.intervals[i];
        if (!interval) return;
        const top = scale.getPixelForValue(interval[1]);
        const bottom = scale.getPixelForValue(interval[0]);
        const half = Math.max(4, Math.min(12, (bar.width || 24) / 5));
        ctx.beginPath();
        ctx.moveTo(bar.x, top);
        ctx.lineTo(bar.x, bottom);
        ctx.moveTo(bar.x - half, top);
        ctx.lineTo(bar.x + half, top);
        ctx.moveTo(bar.x - half, bottom);
        ctx.lineTo(bar.x + half, bottom);
        ctx.stroke();
      });
      ctx.restore();
    });
  },
};
Chart.register(intervalPlugin);

/** Draw `config` on `canvas`, updating the chart already there; `summary` is its text version. */
export function draw(canvas, config, summary) {
  if (!canvas) return null;
  canvas.setAttribute("aria-label", summary);
  const existing = Chart.getChart(canvas);
  if (existing && existing.config.type === config.type) {
    existing.data = config.data;
    existing.options = config.options;
    existing.update("none");
    return existing;
  }
  if (existing) existing.destroy();
  return new Chart(canvas, config);
}

export function destroyCharts(root) {
  for (const canvas of root.querySelectorAll("canvas")) Chart.getChart(canvas)?.destroy();
}

const percentTicks = (digits) => (value) => `${(value * 100).toFixed(digits)}%`;

/**
 * The weights in force in each period, as stacked bars of 100%: periods is [{label, weights,
 * detail}], one per period (the start, then each weight change).
 */
export function periodsConfig(periods, keys, colours) {
  return {
    type: "bar",
    data: {
      labels: periods.map((p) => p.label),
      datasets: keys.map((key) => ({
        label: key,
        data: periods.map((p) => 100 * (p.weights[key] ?? 0)),
        backgroundColor: tint(colours[key], 0.7),
        borderColor: colours[key],
        borderWidth: 1,
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true } },
        y: {
          stacked: true,
          min: 0,
          max: 100,
          ticks: { stepSize: 25, callback: (value) => `${value}%` },
          title: { display: true, text: "share of traffic" },
        },
      },
      plugins: {
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? periods[items[0].dataIndex].detail : ""),
            label: (item) => ` ${item.dataset.label}: ${item.parsed.y.toFixed(1)}%`,
          },
        },
      },
    },
  };
}

/**
 * Bars of a rate per row with 95% interval whiskers. rows: [{label, value, ci, colour, detail}].
 */
export function ratesConfig(rows, { axisTitle, reference } = {}) {
  const highs = rows.map((row) => (row.ci ? row.ci[1] : (row.value ?? 0)));
  const top = highs.some((high) => high > 0) ? Math.max(...highs) : 0.1; // no data: 0–10%
  return {
    type: "bar",
    data: {
      labels: rows.map((row) => row.label),
      datasets: [
        {
          label: axisTitle,
          data: rows.map((row) => row.value),
          intervals: rows.map((row) => row.ci),
          backgroundColor: rows.map((row) => tint(row.colour, 0.75)),
          borderColor: rows.map((row) => row.colour),
          borderWidth: 1,
          borderRadius: 4,
          maxBarThickness: 64,
        },
      ],
    },
    options: {
      scales: {
        x: { grid: { display: false } },
        y: {
          beginAtZero: true,
          suggestedMax: Math.min(1, top * 1.12),
          ticks: { maxTicksLimit: 6, callback: percentTicks(top < 0.05 ? 1 : 0) },
          title: { display: Boolean(axisTitle), text: axisTitle },
        },
      },
      plugins: {
        legend: { display: false },
        intervals: { reference },
        tooltip: {
          callbacks: {
            label: (item) => {
              const row = rows[item.dataIndex];
              return ` ${fmtPct(row.value)} (95% CI ${fmtInterval(row.ci)})`;
            },
            afterLabel: (item) => rows[item.dataIndex].detail || "",
          },
        },
      },
    },
  };
}

/** A round step for about `count` intervals over `span` (1, 2 or 5 times a power of ten). */
function niceStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const [step] = [1, 2, 5, 10].map((m) => m * power).filter((s) => s >= raw);
  return step;
}

/** Posterior densities, one curve per [{label, a, b, colour}] (Beta(a, b)). */
export function posteriorConfig(posteriors, { axisTitle = "rate" } = {}) {
  const curves = posteriors.map((p) => betaCurve(p.a, p.b));
  const lowest = Math.min(...curves.map((curve) => curve[0].x));
  const highest = Math.max(...curves.map((curve) => curve[curve.length - 1].x));
  const step = niceStep(Math.max(highest - lowest, 1e-4), 5);
  const low = Math.max(0, Math.floor(lowest / step) * step);
  const high = Math.min(1, Math.ceil(highest / step) * step);
  return {
    type: "line",
    data: {
      datasets: posteriors.map((p, index) => ({
        label: `${p.label} (mean ${fmtPct(betaMean(p.a, p.b))})`,
        data: curves[index],
        borderColor: p.colour,
        backgroundColor: tint(p.colour, 0.14),
        borderWidth: 2,
        fill: "origin",
        pointRadius: 0,
        tension: 0,
      })),
    },
    options: {
      parsing: false,
      normalized: true,
      scales: {
        x: {
          type: "linear",
          min: low,
          max: high,
          grid: { display: false },
          ticks: {
            stepSize: step,
            maxTicksLimit: 8,
            callback: percentTicks(step < 0.01 ? (step < 0.001 ? 2 : 1) : 0),
          },
          title: { display: true, text: axisTitle },
        },
        y: {
          beginAtZero: true,
          ticks: { display: false },
          title: { display: true, text: "probability density" },
        },
      },
      plugins: { tooltip: { enabled: false } },
    },
  };
}

/** Lines over category labels (dates): datasets [{label, data, colour}]. */
export function linesConfig(labels, datasets, axisTitle) {
  return {
    type: "line",
    data: {
      labels,
      datasets: datasets.map((d) => ({
        label: d.label,
        data: d.data,
        borderColor: d.colour,
        backgroundColor: d.colour,
        borderWidth: 2,
        pointRadius: labels.length > 40 ? 0 : 3,
        tension: 0,
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { grid: { display: false }, ticks: { maxTicksLimit: 7, maxRotation: 0 } },
        y: {
          beginAtZero: true,
          ticks: { maxTicksLimit: 6 },
          title: { display: true, text: axisTitle },
        },
      },
    },
  };
}

/** Plain bars: labels, values and a colour per bar; `percent` formats the axis as shares. */
export function barsConfig(labels, values, colours, { axisTitle, percent = false } = {}) {
  return {
    type: "bar",
    data: {
      labels,
      datasets: [
        {
          label: axisTitle,
          data: values,
          backgroundColor: colours.map((c) => tint(c, 0.75)),
          borderColor: colours,
          borderWidth: 1,
          borderRadius: 4,
          maxBarThickness: 64,
        },
      ],
    },
    options: {
      scales: {
        x: { grid: { display: false } },
        y: percent
          ? {
              beginAtZero: true,
              suggestedMax: Math.min(1, Math.max(...values, 0.01) * 1.15),
              ticks: { maxTicksLimit: 6, callback: percentTicks(0) },
              title: { display: Boolean(axisTitle), text: axisTitle },
            }
          : {
              beginAtZero: true,
              ticks: { maxTicksLimit: 6, precision: 0 },
              title: { display: Boolean(axisTitle), text: axisTitle },
            },
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (item) => ` ${percent ? fmtPct(item.parsed.y) : item.parsed.y.toLocaleString()}`,
          },
        },
      },
    },
  };
}
