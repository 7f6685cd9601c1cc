// A warehouse experiment's refresh ("source": "warehouse"): when the analysis' figures were
// last read from the warehouse (GET …/refresh: time, duration, row counts), why the latest
// refresh failed if it did (the figures then stay those of the refresh before), and a
// "Refresh now" button (POST …/refresh) for admin keys.

import { ApiError, api, experimentPath } from "./api.js";
import { fill, fmtDateTime, fmtInt, fmtNumber, h, sentence } from "./dom.js";
import { failed } from "./summary.js";

/** The refresh card, or null for an experiment fed by events. */
export function warehouseSection(experiment) {
  if (experiment.source !== "warehouse") return null;
  return h(
    "section",
    { class: "card warehouse", id: "warehouse", "aria-labelledby": "warehouse-title" },
    h(
      "div",
      { class: "history-head" },
      h("h2", { class: "section-title", id: "warehouse-title" }, "Warehouse refresh"),
      h("div", { id: "warehouse-actions" }),
    ),
    h("div", { id: "warehouse-body" }, h("p", { class: "muted" }, "Loading…")),
  );
}

function countsText(counts) {
  const parts = [
    `${fmtInt(counts.units)} units`,
    `${fmtInt(counts.exposures)} exposures`,
    ...Object.entries(counts.fact_rows || {}).map(
      ([metric, rows]) => `${fmtInt(rows)} ${metric} rows`,
    ),
  ];
  if (Number.isFinite(counts.daily_rows)) parts.push(`${fmtInt(counts.daily_rows)} daily rows`);
  parts.push(`${fmtInt(counts.result_rows)} result rows`);
  return parts.join(" · ");
}

function latestLines(state) {
  const { refresh, failure } = state;
  const lines = [];
  if (failure) {
    const field = failure.field ? ` (field ${failure.field})` : "";
    lines.push(
      h(
        "div",
        { class: "callout callout-danger", id: "warehouse-failure", "data-code": failure.code },
        h(
          "p",
          {},
          h("strong", {}, `The latest refresh failed (${fmtDateTime(failure.failed_at)}): `),
          `${sentence(failure.message).slice(0, -1)}${field}.`,
          refresh
            ? " The figures below are still those of the refresh before it."
            : " Nothing has been read from the warehouse yet.",
        ),
      ),
    );
  }
  if (refresh) {
    lines.push(
      h(
        "p",
        { id: "warehouse-latest" },
        h("strong", {}, failure ? "Last successful refresh: " : "Latest refresh: "),
        `${fmtDateTime(refresh.refreshed_at)}, in ${fmtNumber(refresh.seconds, 2)} s on ` +
          `${refresh.dialect}.`,
      ),
      h("p", { class: "muted small", id: "warehouse-counts" }, countsText(refresh.row_counts)),
      refresh.days.length
        ? h(
            "p",
            { class: "muted small" },
            `Days ${refresh.days[0]} to ${refresh.days[refresh.days.length - 1]}` +
              (refresh.dimension_values.length
                ? `; ${refresh.dimension_values.length} dimension values`
                : ""),
          )
        : null,
    );
  } else if (!failure) {
    lines.push(
      h(
        "p",
        { class: "muted", id: "warehouse-latest" },
        "Not refreshed yet: nothing has been read from the warehouse, so there is nothing to " +
          "analyse.",
      ),
    );
  }
  return lines;
}

/** Fill the card from GET …/refresh (data.refresh) and offer Refresh now to admin keys. */
export function renderWarehouse(experiment, data, app) {
  const body = document.getElementById("warehouse-body");
  if (!body) return;
  const state = data.refresh;
  if (!state || failed(state)) {
    fill(
      body,
      h(
        "p",
        { class: "muted" },
        `The refresh state is unavailable: ${state ? state.message : "not read"}.`,
      ),
    );
  } else {
    fill(body, latestLines(state));
  }
  const actions = document.getElementById("warehouse-actions");
  const wanted = app && app.canAdmin() ? "admin" : "read";
  if (actions.dataset.role === wanted) return; // keep the button (and its focus) while polling
  actions.dataset.role = wanted;
  fill(
    actions,
    wanted === "admin"
      ? h(
          "button",
          {
            type: "button",
            class: "button primary",
            id: "warehouse-refresh",
            onclick: (event) => refreshNow(experiment, event.currentTarget, app),
          },
          "Refresh now",
        )
      : null,
  );
}

async function refreshNow(experiment, button, app) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const done = await api(experimentPath(experiment.key, "refresh"), { method: "POST" });
    app.toast(
      `Refreshed from the warehouse: ${fmtInt(done.row_counts.units)} units in ` +
        `${fmtNumber(done.seconds, 2)} s.`,
      "success",
    );
  } catch (error) {
    const message =
      error instanceof ApiError && error.status === 403
        ? `This key may not refresh experiments: ${error.message}`
        : `The refresh failed: ${error.message}`;
    app.toast(message, "error");
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    app.refreshNow();
  }
}
