// Monitoring checks as the page shows them: a check that did not run (the API's `ran: false`:
// too few units, nothing recalculated yet, not running) is "Not checked" in grey, never "OK";
// times in plain words.

import { checkName, fmtAgo, h, healthBadge } from "./dom.js";

/** The check's status as shown: "not_run" for an OK that judged nothing. */
export function shownStatus(check) {
  return check.status === "ok" && check.ran === false ? "not_run" : check.status;
}

/** The check's sentence, with the freshness check's hours said in plain words. */
export function shownMessage(check) {
  const hours = check.figures && check.figures.hours_since;
  if (check.name === "stale" && check.status === "ok" && Number.isFinite(hours)) {
    return /^no event yet/i.test(check.message)
      ? `No event yet since the experiment started running ${fmtAgo(hours)} ago.`
      : `The last event arrived ${fmtAgo(hours)} ago.`;
  }
  return check.message;
}

const ORDER = ["alert", "warning", "ok", "not_run"];

/** The list of an experiment's checks, worst first. */
export function checksList(checks) {
  const shown = checks
    .map((check) => ({ check, status: shownStatus(check) }))
    .sort((x, y) => ORDER.indexOf(x.status) - ORDER.indexOf(y.status));
  return h(
    "ul",
    { class: "checks" },
    shown.map(({ check, status }) =>
      h(
        "li",
        { class: `check check-${status}`, "data-check": check.name, "data-status": status },
        healthBadge(status, `${checkName(check.name)}: ${status.replace("_", " ")}`),
        h("div", {}, h("strong", {}, checkName(check.name)), h("p", {}, shownMessage(check))),
      ),
    ),
  );
}

/** The list's alerts cell: the problems, else OK when something was checked, else grey. */
export function alertsCell(health) {
  if (!health) return h("span", { class: "muted", "aria-label": "Not monitored" }, "—");
  const statuses = health.checks.map(shownStatus);
  const problems = health.checks.filter((c) => c.status !== "ok");
  if (problems.length === 0) {
    return statuses.includes("ok")
      ? healthBadge("ok", "Monitoring: OK")
      : healthBadge("not_run", "Monitoring: nothing could be checked yet");
  }
  return h(
    "div",
    { class: "alerts-cell" },
    healthBadge(health.status),
    h(
      "ul",
      { class: "plain small" },
      problems.map((c) =>
        h("li", { title: c.message }, h("strong", {}, checkName(c.name)), ` ${shownMessage(c)}`),
      ),
    ),
  );
}
