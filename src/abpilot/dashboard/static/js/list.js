// The list page: every experiment with its status, type, units, decision, the leader's evidence
// and monitoring alerts; search and filters kept in the URL (#/?q=…&status=…&type=…).

import { api } from "./api.js";
import { alertsCell } from "./checks.js";
import {
  TYPE_LABELS,
  badge,
  fill,
  fmtInt,
  fmtProb,
  h,
  healthBadge,
  humanize,
  keyText,
  statusBadge,
} from "./dom.js";
import { decisionOf, evidenceOf, loadData, timingOf, timingText, unitsOf } from "./summary.js";

const STATUSES = ["running", "paused", "draft", "completed"];
const CONCURRENCY = 4;
// An analysis costs the service real work, so each row's figures are refreshed at most this
// often (and at once when its status changes); the list and statuses every poll.
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

/** The list's filters from the URL fragment "#/?q=…&status=…&type=…". */
export function filtersFromHash(hash = window.location.hash) {
  const query = hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "";
  const params = new URLSearchParams(query);
  return {
    q: params.get("q") || "",
    status: STATUSES.includes(params.get("status")) ? params.get("status") : "all",
    type: TYPE_LABELS[params.get("type")] ? params.get("type") : "all",
  };
}

function hashOf(filters) {
  const params = new URLSearchParams();
  if (filters.q) params.set("q", filters.q);
  if (filters.status !== "all") params.set("status", filters.status);
  if (filters.type !== "all") params.set("type", filters.type);
  const text = params.toString();
  return text ? `#/?${text}` : "#/";
}

function matches(experiment, filters) {
  const needle = filters.q.trim().toLowerCase();
  if (filters.status !== "all" && experiment.status !== filters.status) return false;
  if (filters.type !== "all" && experiment.type !== filters.type) return false;
  return (
    !needle ||
    experiment.key.toLowerCase().includes(needle) ||
    (experiment.name || "").toLowerCase().includes(needle)
  );
}

export function listView(main, app) {
  const filters = filtersFromHash();
  let last = null;
  let alive = true;
  const summaries = new Map(); // key -> {at, status, value}
  document.title = "Experiments · abpilot";

  const summary = h("p", { class: "muted", id: "list-summary" }, "Loading experiments…");
  const changed = () => {
    // Kept in the URL without a new history entry or a reload of the view.
    window.history.replaceState(null, "", hashOf(filters));
    if (last) render(last);
  };
  const search = h("input", {
    id: "search",
    class: "input compact",
    type: "search",
    placeholder: "Key or name",
    value: filters.q,
    oninput: () => {
      filters.q = search.value;
      changed();
    },
  });
  const status = h(
    "select",
    {
      id: "status-filter",
      class: "input compact",
      onchange: () => {
        filters.status = status.value;
        changed();
      },
    },
    ["all", ...STATUSES].map((s) =>
      h(
        "option",
        { value: s, selected: s === filters.status },
        s === "all" ? "All statuses" : humanize(s),
      ),
    ),
  );
  const type = h(
    "select",
    {
      id: "type-filter",
      class: "input compact",
      onchange: () => {
        filters.type = type.value;
        changed();
      },
    },
    ["all", ...Object.keys(TYPE_LABELS)].map((t) =>
      h("option", { value: t, selected: t === filters.type }, TYPE_LABELS[t] || "All types"),
    ),
  );
  const banner = h("section", { id: "monitoring-banner", "aria-label": "Monitoring" });
  const table = h("div", { id: "experiments-container" });

  fill(
    main,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Experiments"), summary),
      app.canAdmin()
        ? h("a", { class: "button primary", href: "#/new", id: "new-experiment" }, "New experiment")
        : null,
    ),
    h(
      "div",
      { class: "filters", role: "search" },
      h(
        "span",
        { class: "filter-item" },
        h("label", { for: "search", class: "field-label inline" }, "Search"),
        search,
      ),
      h(
        "span",
        { class: "filter-item" },
        h("label", { for: "status-filter", class: "field-label inline" }, "Status"),
        status,
      ),
      h(
        "span",
        { class: "filter-item" },
        h("label", { for: "type-filter", class: "field-label inline" }, "Type"),
        type,
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
    if (counts.ok) parts.push(`${counts.ok} without problems`);
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
          h("p", {}, "No experiments yet."),
          app.canAdmin() ? h("a", { href: "#/new" }, "Create the first one") : null,
        ),
      );
      return;
    }
    const health = new Map(
      monitoring.available ? monitoring.report.experiments.map((e) => [e.id, e]) : [],
    );
    const rows = experiments
      .map((e, i) => ({ experiment: e, detail: details[i] }))
      .filter(({ experiment }) => matches(experiment, filters));
    const header = ["Experiment", "Type", "Status", "Units", "Decision", "Evidence", "Alerts"];
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
                h("td", { colspan: header.length, role: "cell" }, "No experiment matches."),
              )
            : rows.map(({ experiment, detail }) => row(experiment, detail, health)),
        ),
      ),
    );
  }

  function row(experiment, detail, health) {
    const href = `#/experiments/${encodeURIComponent(experiment.key)}`;
    const cell = (label, ...content) =>
      h("td", { "data-label": label, role: "cell", class: "nowrap" }, ...content);
    const decision = detail.decision;
    const evidence = detail.evidence;
    return h(
      "tr",
      { role: "row", "data-key": experiment.key },
      h(
        "td",
        { "data-label": "Experiment", role: "cell", class: "name-cell" },
        h("a", { href, class: "strong" }, experiment.name || experiment.key),
        h("div", { class: "muted small" }, keyText(experiment.key)),
        h("div", { class: "muted small timing" }, detail.timing),
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
        { "data-label": "Decision", role: "cell", class: "decision-cell" },
        decision
          ? h(
              "div",
              {},
              badge(decision.text, decision.tone, `Decision: ${decision.text}`),
              decision.detail ? h("div", { class: "muted small" }, decision.detail) : null,
            )
          : h("span", { class: "muted" }, detail.error ? "analysis unavailable" : "—"),
      ),
      h(
        "td",
        { "data-label": "Evidence", role: "cell", class: "evidence-cell" },
        evidence
          ? h(
              "div",
              { class: evidence.srm ? "invalidated" : null },
              keyText(evidence.key, "mono strong"),
              h(
                "div",
                { class: "muted small" },
                `${fmtProb(evidence.p)} chance of being best`,
                evidence.srm ? " (not trustworthy: sample ratio mismatch)" : "",
              ),
            )
          : h("span", { class: "muted" }, "—"),
      ),
      h("td", { "data-label": "Alerts", role: "cell" }, alertsCell(health.get(experiment.id))),
    );
  }

  async function refresh() {
    const [experiments, monitoring] = await Promise.all([api("experiments"), app.monitoring()]);
    if (!last && alive) {
      // The first time, the rows at once; their figures as each experiment's analysis comes.
      const pending = { units: { count: null }, decision: null, evidence: null, timing: "" };
      render({ experiments, details: experiments.map(() => pending), monitoring });
    }
    const details = await mapLimit(experiments, CONCURRENCY, async (experiment) => {
      const cached = summaries.get(experiment.key);
      if (cached && cached.status === experiment.status && Date.now() - cached.at < SUMMARY_MS) {
        return cached.value;
      }
      const data = await loadData(experiment);
      const error = [data.analysis, data.history, data.stats].find((v) => v instanceof Error);
      const value = {
        units: unitsOf(experiment, data),
        decision: decisionOf(experiment, data),
        evidence: evidenceOf(experiment, data),
        timing: timingText(timingOf(experiment, data), experiment.status),
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
