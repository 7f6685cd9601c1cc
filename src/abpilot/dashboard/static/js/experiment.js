// One experiment's page: header with admin actions, verdict, monitoring, charts and tables.
// The charts and figures per type live in view_ab.js, view_contextual.js, view_interleaving.js.

import { ACTIONS, BUTTON_STYLES, copyLink, suggestedWinner } from "./actions.js";
import { ApiError, api, experimentPath } from "./api.js";
import { destroyCharts } from "./charts.js";
import { checksList } from "./checks.js";
import { askCompletion, confirmAction } from "./completion.js";
import {
  TYPE_LABELS,
  byId,
  dataTable,
  fill,
  fmtDateTime,
  h,
  humanize,
  keyText,
  statusBadge,
} from "./dom.js";
import { loadData, timingOf, timingText } from "./summary.js";
import * as ab from "./view_ab.js";
import * as contextual from "./view_contextual.js";
import * as interleaving from "./view_interleaving.js";

const VIEWS = { ab_test: ab, bandit: ab, contextual_bandit: contextual, interleaving };

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
        h(
          "div",
          { class: "head-actions" },
          h(
            "button",
            {
              type: "button",
              class: "button ghost",
              id: "copy-link",
              onclick: () => copyLink(app),
            },
            "Copy link",
          ),
          h("div", { class: "actions", id: "actions", role: "group", "aria-label": "Admin actions" }),
        ),
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
      view.panels ? view.panels(experiment) : null,
      h(
        "section",
        { class: "chart-grid", id: "charts", "aria-label": "Charts" },
        view.figures(experiment),
      ),
      h("section", { id: "tables", "aria-label": "Tables" }),
    );
    built = { type: experiment.type, status: null };
  }

  function renderHeader(experiment, data) {
    document.title = `${experiment.name || experiment.key} · abpilot`;
    byId("experiment-title").textContent = experiment.name || experiment.key;
    const timing = timingOf(experiment, data);
    fill(
      byId("experiment-meta"),
      statusBadge(experiment.status),
      keyText(experiment.key),
      h("span", {}, TYPE_LABELS[experiment.type] || humanize(experiment.type)),
      h(
        "span",
        { id: "experiment-timing" },
        experiment.started_at
          ? timingText(timing, experiment.status)
          : `created ${fmtDateTime(experiment.created_at)}`,
      ),
      experiment.ended_at ? h("span", {}, `ended ${fmtDateTime(experiment.ended_at)}`) : null,
    );
    const state = `${experiment.status}:${app.role()}`;
    if (built.status === state) return; // keep focus on the buttons while polling
    built.status = state;
    const actions = ACTIONS.filter((action) => action.applies(experiment));
    let content;
    if (!app.canAdmin()) {
      content = h(
        "span",
        { class: "muted small", id: "read-only" },
        `Read-only: this key has the ${app.role() || "no"} role; managing experiments needs admin.`,
      );
    } else if (actions.length === 0) {
      content = h("span", { class: "muted small" }, "Completed: no further actions.");
    } else {
      content = actions.map((action) =>
        action.go
          ? h(
              "a",
              {
                class: `button ${BUTTON_STYLES[action.id]}`,
                href: action.go(experiment),
                "data-action": action.id,
              },
              action.label(experiment),
            )
          : h(
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
      );
    }
    fill(byId("actions"), content);
  }

  async function perform(action, button) {
    const experiment = latest.experiment;
    const buttons = [...byId("actions").querySelectorAll("button")];
    let result;
    try {
      if (action.ask && !(await confirmAction(action.ask(experiment)))) return;
      if (action.complete) {
        const analysis =
          latest.data.analysis instanceof Error ? null : latest.data.analysis;
        const answer = await askCompletion(
          experiment,
          analysis,
          suggestedWinner(experiment, analysis),
        );
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
      if (action.then) action.then();
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
      lines.filter(Boolean).map((line) => (typeof line === "string" ? h("p", {}, line) : line)),
    );
  }

  function renderAlerts(experiment, monitoring) {
    const body = byId("alerts-body");
    if (experiment.status !== "running") {
      fill(
        body,
        h(
          "p",
          { class: "muted", "data-status": "not_run" },
          `Not checked: monitoring checks running experiments only, and this one is ${experiment.status}.`,
        ),
      );
      return;
    }
    if (!monitoring.available) {
      fill(
        body,
        h("p", { class: "muted" }, "The monitoring report is not available on this server."),
      );
      return;
    }
    const health = monitoring.report.experiments.find((e) => e.id === experiment.id);
    if (!health) {
      fill(body, h("p", { class: "muted" }, "Not checked yet: the report predates this run."));
      return;
    }
    fill(body, checksList(health.checks));
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
          {
            class: `card${table.invalid ? " invalidated" : ""}`,
            "aria-labelledby": `table-${i}-title`,
          },
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
    const [data, monitoring] = await Promise.all([
      loadData(experiment, { full: true }),
      app.monitoring(),
    ]);
    if (!alive) return;
    latest = { experiment, data };
    if (!built || built.type !== experiment.type) build(experiment);
    renderHeader(experiment, data);
    const view = VIEWS[experiment.type] || ab;
    const { verdict, tiles, tables } = view.render(experiment, data, app);
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
