// The list page: every experiment with its status, type, units, leader and monitoring alerts.

import { api } from "./api.js";
import {
  TYPE_LABELS,
  badge,
  fill,
  fmtInt,
  h,
  checkName,
  healthBadge,
  humanize,
  statusBadge,
} from "./dom.js";
import { leaderOf, loadData, unitsOf } from "./summary.js";

const STATUSES = ["all", "running", "paused", "draft", "completed"];
const CONCURRENCY = 4;
// An analysis costs the service real work, so each row's units and leader are refreshed at
// most this often (and at once when its status changes); the list and statuses every poll.
const SUMMARY_MS = 30000;

/** Run `task` over `items` with at most `limit` at a time, keeping order. */
async function mapLimit(items, limit, task) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const index = next;
      next += 1;
      results[index] = await task(items[index]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export function listView(main, app) {
  let filter = "all";
  let last = null;
  let alive = true;
  const summaries = new Map(); // key -> {at, status, value}
  document.title = "Experiments · abpilot";

  const summary = h("p", { class: "muted", id: "list-summary" }, "Loading experiments…");
  const select = h(
    "select",
    {
      id: "status-filter",
      class: "input compact",
      onchange: () => {
        filter = select.value;
        if (last) render(last);
      },
    },
    STATUSES.map((s) => h("option", { value: s }, s === "all" ? "All statuses" : humanize(s))),
  );
  const banner = h("section", { id: "monitoring-banner", "aria-label": "Monitoring" });
  const table = h("div", { id: "experiments-container" });

  fill(
    main,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Experiments"), summary),
      h(
        "div",
        { class: "filter" },
        h("label", { for: "status-filter", class: "field-label inline" }, "Show"),
        select,
      ),
    ),
    banner,
    table,
  );

  function renderBanner(monitoring) {
    if (!monitoring.available) {
      fill(
        banner,
        h(
          "p",
          { class: "note" },
          "Monitoring report not available on this server",
          monitoring.status
            ? ` (GET /api/v1/monitoring/report answered ${monitoring.status}).`
            : ".",
        ),
      );
      return;
    }
    const report = monitoring.report;
    const counts = report.counts || {};
    const running = report.experiments.length;
    const parts = [];
    if (counts.alert) parts.push(`${counts.alert} with alerts`);
    if (counts.warning) parts.push(`${counts.warning} with warnings`);
    if (counts.ok) parts.push(`${counts.ok} healthy`);
    const text = running
      ? `Monitoring: ${running} running experiment${running === 1 ? "" : "s"} checked: ` +
        `${parts.join(", ")}.`
      : "Monitoring: no running experiments to check.";
    fill(
      banner,
      h(
        "div",
        {
          class: `callout callout-${{ ok: "ok", warning: "warn", alert: "danger" }[report.status]}`,
        },
        healthBadge(report.status, `Overall monitoring status: ${report.status}`),
        h("span", {}, text),
      ),
    );
  }

  function alertsCell(health) {
    if (!health) return h("span", { class: "muted", "aria-label": "Not monitored" }, "—");
    const problems = health.checks.filter((c) => c.status !== "ok");
    if (problems.length === 0) return healthBadge("ok");
    return h(
      "div",
      { class: "alerts-cell" },
      healthBadge(health.status),
      h(
        "ul",
        { class: "plain small" },
        problems.map((c) =>
          h("li", { title: c.message }, h("strong", {}, checkName(c.name)), ` ${c.message}`),
        ),
      ),
    );
  }

  function render({ experiments, details, monitoring }) {
    renderBanner(monitoring);
    const byStatus = {};
    for (const e of experiments) byStatus[e.status] = (byStatus[e.status] || 0) + 1;
    summary.textContent = experiments.length
      ? `${experiments.length} experiment${experiments.length === 1 ? "" : "s"}: ` +
        Object.entries(byStatus)
          .map(([s, n]) => `${n} ${s}`)
          .join(", ")
      : "No experiments yet.";
    if (experiments.length === 0) {
      fill(
        table,
        h(
          "div",
          { class: "card empty" },
          h("p", {}, "No experiments yet. Create one with POST /api/v1/experiments "),
          h("a", { href: "../docs" }, "(see the API docs)"),
        ),
      );
      return;
    }
    const health = new Map(
      monitoring.available ? monitoring.report.experiments.map((e) => [e.id, e]) : [],
    );
    const rows = experiments
      .map((e, i) => ({ experiment: e, detail: details[i] }))
      .filter(({ experiment }) => filter === "all" || experiment.status === filter);
    const header = ["Experiment", "Type", "Status", "Units", "Leader", "Alerts"];
    fill(
      table,
      h(
        "table",
        {
          class: "table stack",
          id: "experiments",
          role: "table",
          "aria-describedby": "list-summary",
        },
        h(
          "thead",
          {},
          h(
            "tr",
            { role: "row" },
            header.map((t) => h("th", { scope: "col", role: "columnheader" }, t)),
          ),
        ),
        h(
          "tbody",
          {},
          rows.length === 0
            ? h(
                "tr",
                { role: "row" },
                h("td", { colspan: 6, role: "cell" }, "None with this status."),
              )
            : rows.map(({ experiment, detail }) => row(experiment, detail, health)),
        ),
      ),
    );
  }

  function row(experiment, detail, health) {
    const href = `#/experiments/${encodeURIComponent(experiment.key)}`;
    const leader = detail.leader;
    const cell = (label, ...content) =>
      h("td", { "data-label": label, role: "cell", class: "nowrap" }, ...content);
    return h(
      "tr",
      { role: "row", "data-key": experiment.key },
      h(
        "td",
        { "data-label": "Experiment", role: "cell", class: "name-cell" },
        h("a", { href, class: "strong" }, experiment.name || experiment.key),
        h("div", { class: "mono muted small" }, experiment.key),
      ),
      cell("Type", TYPE_LABELS[experiment.type] || humanize(experiment.type)),
      cell("Status", statusBadge(experiment.status)),
      cell(
        "Units",
        detail.units.count === null
          ? h("span", { class: "muted" }, "—")
          : h(
              "div",
              {},
              h("div", { class: "num-value" }, fmtInt(detail.units.count)),
              h("div", { class: "muted small" }, detail.units.label),
            ),
      ),
      h(
        "td",
        { "data-label": "Leader", role: "cell" },
        leader
          ? h(
              "div",
              { class: "leader" },
              h(
                "div",
                {},
                h("span", { class: "mono strong" }, leader.key),
                leader.winner ? badge("Winner", "green", "Declared winner") : null,
              ),
              h("div", { class: "muted small" }, leader.detail),
            )
          : h("span", { class: "muted" }, detail.error ? "analysis unavailable" : "—"),
      ),
      h("td", { "data-label": "Alerts", role: "cell" }, alertsCell(health.get(experiment.id))),
    );
  }

  async function refresh() {
    const [experiments, monitoring] = await Promise.all([api("experiments"), app.monitoring()]);
    const details = await mapLimit(experiments, CONCURRENCY, async (experiment) => {
      const cached = summaries.get(experiment.key);
      if (cached && cached.status === experiment.status && Date.now() - cached.at < SUMMARY_MS) {
        return cached.value;
      }
      const data = await loadData(experiment);
      const error = [data.analysis, data.history, data.stats].find((v) => v instanceof Error);
      const value = {
        units: unitsOf(experiment, data),
        leader: leaderOf(experiment, data),
        error: error ? error.message : null,
      };
      summaries.set(experiment.key, { at: Date.now(), status: experiment.status, value });
      return value;
    });
    if (!alive) return;
    last = { experiments, details, monitoring };
    render(last);
  }

  return {
    refresh,
    destroy() {
      alive = false;
    },
  };
}
