// Building DOM without innerHTML (names and messages come from users), and formatting numbers.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

export const fmtInt = (n) => (n === null || n === undefined ? "—" : integer.format(n));

export function fmtPct(x, digits) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  const percent = x * 100;
  const places = digits ?? (Math.abs(percent) < 1 && percent !== 0 ? 2 : 1);
  const smallest = 10 ** -places;
  if (percent !== 0 && Math.abs(percent) < smallest) {
    return `${percent < 0 ? "> −" : "< "}${smallest.toFixed(places)}%`;
  }
  return `${percent.toFixed(places)}%`;
}

/** A probability as a percentage that never rounds to a certain 0% or 100%. */
export function fmtProb(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return "—";
  if (p > 0.999) return "> 99.9%";
  if (p < 0.001) return "< 0.1%";
  return fmtPct(p, 1);
}

export function fmtSignedPct(x, digits) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  return `${x > 0 ? "+" : x < 0 ? "−" : ""}${fmtPct(Math.abs(x), digits)}`;
}

export function fmtInterval(ci, digits) {
  if (!ci) return "—";
  return `${fmtPct(ci[0], digits)} – ${fmtPct(ci[1], digits)}`;
}

export function fmtP(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return "—";
  if (p < 0.001) return "< 0.001";
  return p.toFixed(3);
}

/** "p = 0.188" or "p < 0.001". */
export function pText(p) {
  const text = fmtP(p);
  return text.startsWith("<") ? `p ${text}` : `p = ${text}`;
}

export function fmtNumber(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  return x.toLocaleString(undefined, { maximumFractionDigits: digits });
}

export const fmtDateTime = (iso) => (iso ? dateTime.format(new Date(iso)) : "—");
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
export const fmtDate = (iso) => (iso ? dateOnly.format(new Date(iso)) : "—");

/** "3 minutes", "5 hours", "2 days": how long ago, never "0.0 hours". */
export function fmtAgo(hours) {
  if (hours === null || hours === undefined || !Number.isFinite(hours)) return "—";
  const minutes = Math.round(hours * 60);
  if (minutes < 1) return "less than a minute";
  if (minutes < 90) return `${minutes} minute${minutes === 1 ? "" : "s"}`;
  if (hours < 36) return `${Math.round(hours)} hours`;
  return `${Math.round(hours / 24)} days`;
}

/** A key that breaks only after "_", "-" or "." on a narrow screen, never mid-word. */
export function keyText(key, className = "mono") {
  const parts = String(key).split(/(?<=[_.-])/);
  const children = [];
  parts.forEach((part, i) => {
    if (i > 0) children.push(h("wbr"));
    children.push(part);
  });
  return h("span", { class: className }, children);
}

/** "1,512 / 1,103": a list of counts as the page prints lists. */
export const fmtList = (values, format = fmtInt) => values.map((v) => format(v)).join(" / ");
export const fmtClock = (date) => clock.format(date);

const CHECK_NAMES = {
  srm: "Sample ratio",
  stale: "Freshness",
  conversions_exceed_exposures: "Conversions vs exposures",
};

/** The display name of a monitoring check. */
export function checkName(name) {
  return CHECK_NAMES[name] || humanize(name);
}

export function humanize(code) {
  const text = String(code || "").replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function sentence(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return "";
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

export const TYPE_LABELS = {
  ab_test: "A/B test",
  bandit: "Bandit",
  contextual_bandit: "Contextual bandit",
  interleaving: "Interleaving",
};

export function badge(text, tone, label) {
  return h("span", { class: `badge badge-${tone}`, "aria-label": label }, text);
}

export function statusBadge(status) {
  const tones = { running: "green", paused: "amber", draft: "slate", completed: "blue" };
  return badge(humanize(status), tones[status] || "slate", `Status: ${status}`);
}

export function healthBadge(status, label) {
  const text =
    { ok: "OK", warning: "Warning", alert: "Alert", not_run: "Not checked" }[status] ||
    humanize(status);
  const tone = { ok: "green", warning: "amber", alert: "red" }[status] || "slate";
  return badge(text, tone, label || `Monitoring: ${text}`);
}

/** A card with a chart: title, a note saying what it shows, and a labelled canvas. */
export function chartFigure(id, title, note) {
  return h(
    "figure",
    { class: "card chart-card", "aria-labelledby": `${id}-title`, "data-chart": id },
    h(
      "figcaption",
      {},
      h("h3", { id: `${id}-title`, class: "chart-title" }, title),
      h("p", { id: `${id}-note`, class: "chart-note" }, note),
    ),
    h("div", { class: "chart-box" }, h("canvas", { id, role: "img", "aria-label": title })),
  );
}

/** A table that stacks into labelled rows on a phone. columns: [{label, numeric}]. */
export function dataTable({ id, caption, columns, rows }) {
  return h(
    "table",
    { class: "table stack", id, role: "table" },
    caption ? h("caption", { class: "sr-only" }, caption) : null,
    h(
      "thead",
      {},
      h(
        "tr",
        { role: "row" },
        columns.map((c) =>
          h("th", { scope: "col", role: "columnheader", class: c.numeric ? "num" : null }, c.label),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((cells) =>
        h(
          "tr",
          { role: "row" },
          cells.map((cell, i) =>
            h(
              "td",
              {
                role: "cell",
                "data-label": columns[i].label,
                class: columns[i].numeric ? "num" : null,
              },
              cell,
            ),
          ),
        ),
      ),
    ),
  );
}

export function fmtPoints(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  const points = Math.abs(x * 100).toFixed(1);
  return `${x > 0 ? "+" : x < 0 ? "−" : ""}${points} pts`;
}
