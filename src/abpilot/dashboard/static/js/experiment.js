// One experiment's page: header with admin actions, verdict, monitoring, charts and tables.
// The charts and figures per type live in view_ab.js, view_contextual.js, view_interleaving.js.

import { ApiError, api, experimentPath } from "./api.js";
import { destroyCharts } from "./charts.js";
import {
  TYPE_LABELS,
  byId,
  dataTable,
  fill,
  fmtDateTime,
  h,
  checkName,
  healthBadge,
  humanize,
  statusBadge,
} from "./dom.js";
import { loadData } from "./summary.js";
import * as ab from "./view_ab.js";
import * as contextual from "./view_contextual.js";
import * as interleaving from "./view_interleaving.js";

const VIEWS = { ab_test: ab, bandit: ab, contextual_bandit: contextual, interleaving };

const setStatus = (status) => (key) =>
  api(experimentPath(key, "status"), { method: "PUT", body: { status } });

// Each action: when it applies, what it calls, and what to say when it worked.
const ACTIONS = [
  {
    id: "start",
    label: (e) => (e.status === "paused" ? "Resume" : "Start"),
    applies: (e) => e.status === "draft" || e.status === "paused",
    run: setStatus("running"),
    done: () => "Experiment running.",
  },
  {
    id: "pause",
    label: () => "Pause",
    applies: (e) => e.status === "running",
    run: setStatus("paused"),
    done: () => "Experiment paused.",
  },
  {
    id: "recalculate",
    label: () => "Recalculate",
    applies: (e) => e.type === "bandit" && e.status === "running",
    run: (key) => api(experimentPath(key, "recalculate"), { method: "POST" }),
    done: (result) =>
      result.status === "failed"
        ? `Recalculation failed: ${result.error}`
        : `Weights ${result.status}${result.period ? ` (period ${result.period})` : ""}.`,
  },
  {
    id: "complete",
    label: () => "Complete…",
    applies: (e) => e.status === "running" || e.status === "paused",
    confirm: true,
    done: () => "Experiment completed.",
  },
];

const BUTTON_STYLES = {
  start: "primary",
  pause: "ghost",
  recalculate: "primary",
  complete: "ghost danger",
};

/** Ask for the winner in the Complete dialog; resolves to {winner, override} or null when
 * cancelled. */
function askCompletion(experiment, suggested) {
  const dialog = byId("complete-dialog");
  const select = byId("complete-winner");
  const override = byId("complete-override");
  override.checked = false;
  fill(
    select,
    h("option", { value: "" }, "No winner"),
    experiment.variants.map((v) =>
      h("option", { value: v.key, selected: v.key === suggested }, v.name || v.key),
    ),
  );
  return new Promise((resolve) => {
    const form = byId("complete-form");
    const finish = (value) => {
      form.removeEventListener("submit", onSubmit);
      byId("complete-cancel").removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      finish({ winner: select.value || null, override: override.checked });
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(null);
    };
    form.addEventListener("submit", onSubmit);
    byId("complete-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    select.focus();
  });
}

export function experimentView(main, key, app) {
  let alive = true;
  let built = null; // {type, status}
  let latest = null; // {experiment, data}
  document.title = `${key} · abpilot`;

  fill(
    main,
    h(
      "nav",
      { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/" }, "← All experiments"),
    ),
    h("p", { class: "muted" }, "Loading…"),
  );

  function build(experiment) {
    const view = VIEWS[experiment.type] || ab;
    fill(
      main,
      h(
        "nav",
        { class: "crumbs", "aria-label": "Breadcrumb" },
        h("a", { href: "#/" }, "← All experiments"),
      ),
      h(
        "div",
        { class: "page-head" },
        h(
          "div",
          { class: "head-text" },
          h("h1", { id: "experiment-title" }),
          h("p", { class: "meta", id: "experiment-meta" }),
        ),
        h("div", { class: "actions", id: "actions", role: "group", "aria-label": "Admin actions" }),
      ),
      h(
        "div",
        { class: "summary-grid" },
        h(
          "section",
          { class: "card verdict", id: "verdict", "aria-labelledby": "verdict-label" },
          h("h2", { class: "eyebrow", id: "verdict-label" }, "Verdict"),
          h("p", { class: "headline", id: "verdict-headline" }),
          h("div", { id: "verdict-lines" }),
        ),
        h(
          "section",
          { class: "card", id: "alerts", "aria-labelledby": "alerts-label" },
          h("h2", { class: "eyebrow", id: "alerts-label" }, "Monitoring"),
          h("div", { id: "alerts-body" }, h("p", { class: "muted" }, "Loading…")),
        ),
      ),
      h("section", { class: "tiles", id: "tiles", "aria-label": "Key figures" }),
      h(
        "section",
        { class: "chart-grid", id: "charts", "aria-label": "Charts" },
        view.figures(experiment),
      ),
      h("section", { id: "tables", "aria-label": "Tables" }),
    );
    built = { type: experiment.type, status: null };
  }

  function renderHeader(experiment) {
    document.title = `${experiment.name || experiment.key} · abpilot`;
    byId("experiment-title").textContent = experiment.name || experiment.key;
    const when = experiment.ended_at
      ? `ended ${fmtDateTime(experiment.ended_at)}`
      : experiment.started_at
        ? `started ${fmtDateTime(experiment.started_at)}`
        : `created ${fmtDateTime(experiment.created_at)}`;
    fill(
      byId("experiment-meta"),
      statusBadge(experiment.status),
      h("span", { class: "mono" }, experiment.key),
      h("span", {}, TYPE_LABELS[experiment.type] || humanize(experiment.type)),
      h("span", {}, when),
      experiment.winner ? h("span", {}, `winner: ${experiment.winner}`) : null,
    );
    if (built.status === experiment.status) return; // keep focus on the buttons while polling
    built.status = experiment.status;
    const actions = ACTIONS.filter((action) => action.applies(experiment));
    fill(
      byId("actions"),
      actions.length
        ? actions.map((action) =>
            h(
              "button",
              {
                type: "button",
                class: `button ${BUTTON_STYLES[action.id]}`,
                "data-action": action.id,
                "aria-label": `${action.label(experiment).replace("…", "")} ${experiment.key}`,
                onclick: (event) => perform(action, event.currentTarget),
              },
              action.label(experiment),
            ),
          )
        : h("span", { class: "muted small" }, "Completed: no further actions."),
    );
  }

  async function perform(action, button) {
    const experiment = latest.experiment;
    const buttons = [...byId("actions").querySelectorAll("button")];
    let result;
    try {
      if (action.confirm) {
        const analysis = latest.data.analysis;
        const decision = analysis && analysis.decision;
        // The variant the decision ships, else the analysis' winner.
        const found =
          decision && decision.action === "ship"
            ? { key: decision.variant }
            : analysis
              ? analysis.winner
              : null;
        // An interleaving analysis names its winner "a" or "b"; the others give a variant.
        const suggested =
          typeof found === "string"
            ? experiment.variants[found === "a" ? 0 : 1].key
            : found
              ? found.key
              : null;
        const answer = await askCompletion(experiment, suggested);
        if (!answer) return;
        buttons.forEach((b) => (b.disabled = true));
        button.setAttribute("aria-busy", "true");
        result = await api(experimentPath(experiment.key, "status"), {
          method: "PUT",
          body: answer.winner
            ? { status: "completed", winner: answer.winner, override: answer.override }
            : { status: "completed" },
        });
      } else {
        buttons.forEach((b) => (b.disabled = true));
        button.setAttribute("aria-busy", "true");
        result = await action.run(experiment.key);
      }
      app.toast(action.done(result), "success");
    } catch (error) {
      const message =
        error instanceof ApiError && error.status === 403
          ? `This key may not ${action.id} experiments: ${error.message}`
          : error.message;
      app.toast(message, "error");
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      button.removeAttribute("aria-busy");
      built.status = null; // redraw the buttons for the new status
      app.refreshNow();
    }
  }

  function renderVerdict({ tone, headline, lines }) {
    const card = byId("verdict");
    card.dataset.tone = tone;
    byId("verdict-headline").textContent = headline;
    fill(
      byId("verdict-lines"),
      lines.filter(Boolean).map((line) => h("p", {}, line)),
    );
  }

  function renderAlerts(experiment, monitoring) {
    const body = byId("alerts-body");
    if (!monitoring.available) {
      fill(
        body,
        h("p", { class: "muted" }, "The monitoring report is not available on this server."),
      );
      return;
    }
    const health = monitoring.report.experiments.find((e) => e.id === experiment.id);
    if (!health) {
      fill(body, h("p", { class: "muted" }, "Monitoring checks running experiments only."));
      return;
    }
    const sorted = [...health.checks].sort(
      (x, y) =>
        ["alert", "warning", "ok"].indexOf(x.status) - ["alert", "warning", "ok"].indexOf(y.status),
    );
    fill(
      body,
      h(
        "ul",
        { class: "checks" },
        sorted.map((check) =>
          h(
            "li",
            { class: `check check-${check.status}` },
            healthBadge(check.status, `${checkName(check.name)}: ${check.status}`),
            h("div", {}, h("strong", {}, checkName(check.name)), h("p", {}, check.message)),
          ),
        ),
      ),
    );
  }

  function renderTiles(tiles) {
    fill(
      byId("tiles"),
      tiles.map((tile) =>
        h(
          "div",
          { class: `tile${tile.tone ? ` tile-${tile.tone}` : ""}` },
          h("div", { class: "tile-label" }, tile.label),
          h("div", { class: "tile-value" }, tile.value),
          h("div", { class: "tile-hint" }, tile.hint),
        ),
      ),
    );
  }

  function renderTables(tables) {
    fill(
      byId("tables"),
      tables.map((table, i) =>
        h(
          "section",
          { class: "card", "aria-labelledby": `table-${i}-title` },
          h("h2", { class: "section-title", id: `table-${i}-title` }, table.caption),
          dataTable({ id: `table-${i}`, ...table }),
        ),
      ),
    );
  }

  function renderMissing(error) {
    built = null;
    fill(
      main,
      h(
        "nav",
        { class: "crumbs", "aria-label": "Breadcrumb" },
        h("a", { href: "#/" }, "← All experiments"),
      ),
      h("h1", {}, "Experiment not found"),
      h("p", {}, error.message),
    );
  }

  async function refresh() {
    let experiment;
    try {
      experiment = await api(experimentPath(key));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        if (alive) renderMissing(error);
        return;
      }
      throw error;
    }
    const [data, monitoring] = await Promise.all([loadData(experiment), app.monitoring()]);
    if (!alive) return;
    latest = { experiment, data };
    if (!built || built.type !== experiment.type) build(experiment);
    renderHeader(experiment);
    const view = VIEWS[experiment.type] || ab;
    const { verdict, tiles, tables } = view.render(experiment, data);
    renderVerdict(verdict);
    renderAlerts(experiment, monitoring);
    renderTiles(tiles);
    renderTables(tables);
  }

  return {
    refresh,
    destroy() {
      alive = false;
      destroyCharts(main);
    },
  };
}
