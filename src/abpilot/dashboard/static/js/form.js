// Create an experiment of any type, or edit a draft: name, key, type, traffic, variants,
// metrics (goals and guardrails, adjusted by a covariate, ratios) and settings as JSON. The API validates; each of its 422
// problems is shown next to the field it names.

import { ApiError, api, experimentPath } from "./api.js";
import { TYPE_LABELS, fill, h } from "./dom.js";
import { checkField, checkbox, editorRow, field, input, numberInput, select } from "./form_fields.js";

const CONTEXTUAL_TEMPLATE = {
  contextual: { attributes: { user_type: ["new", "returning"] } },
};

const METRIC_KINDS = [
  ["binary", "Converts or not"],
  ["value", "A value per unit"],
  ["ratio", "Ratio of two metrics"],
];

export function formView(main, key, app) {
  let alive = true;
  let loaded = key === null;
  document.title = key ? `Edit ${key} · abpilot` : "New experiment · abpilot";

  const name = input("f-name", "name", { maxlength: 200, required: true });
  const keyInput = input("f-key", "key", {
    maxlength: 100,
    placeholder: "made from the name",
    disabled: key !== null,
  });
  const description = h("textarea", {
    id: "f-description",
    class: "input",
    "data-field": "description",
  });
  const type = h(
    "select",
    { id: "f-type", class: "input", "data-field": "type", disabled: key !== null },
    Object.entries(TYPE_LABELS).map(([value, label]) => h("option", { value }, label)),
  );
  const traffic = input("f-traffic", "traffic_allocation", {
    type: "number",
    min: 0,
    max: 1,
    step: "any",
    value: "1",
  });
  const settings = h("textarea", {
    id: "f-settings",
    class: "input",
    "data-field": "settings",
    placeholder: '{"analysis": {"sample_size_per_variant": 5000}}',
  });
  const variants = h("div", { id: "f-variants", "data-field": "variants" });
  const metrics = h("div", { id: "f-metrics", "data-field": "metrics" });
  const formError = h("p", { class: "field-error", id: "form-error", role: "alert" });
  const submit = h(
    "button",
    { type: "submit", class: "button primary", id: "form-submit" },
    key ? "Save draft" : "Create draft",
  );

  type.addEventListener("change", () => {
    if (type.value === "contextual_bandit" && !settings.value.trim()) {
      settings.value = JSON.stringify(CONTEXTUAL_TEMPLATE, null, 2);
    }
  });

  const variantList = { rows: [], noun: "Variant", field: "variants", container: variants };
  const metricList = { rows: [], noun: "Metric", field: "metrics", container: metrics };

  function variantRow(v = {}) {
    editorRow(
      variantList,
      (id, path) => ({
        key: input(id("key"), `${path}.key`, { value: v.key || "", maxlength: 100 }),
        name: input(id("name"), `${path}.name`, { value: v.name || "" }),
        weight: numberInput(id("weight"), `${path}.weight`, v.weight, {
          max: 1,
          placeholder: "equal split",
        }),
        control: h("input", {
          type: "radio",
          name: "f-control",
          id: id("control"),
          "data-field": `${path}.is_control`,
          checked: Boolean(v.is_control),
        }),
      }),
      (row, label) => [
        field(label("key"), row.key.id, row.key),
        field(label("name"), row.name.id, row.name),
        field(label("weight"), row.weight.id, row.weight),
        checkField(row.control, label("is the control")),
      ],
    );
  }

  function metricRow(m = {}) {
    editorRow(
      metricList,
      (id, path) => ({
        key: input(id("key"), `${path}.key`, { value: m.key || "", maxlength: 100 }),
        kind: select(id("kind"), `${path}.kind`, METRIC_KINDS, m.kind || "binary"),
        role: select(
          id("role"),
          `${path}.role`,
          [
            ["goal", "Goal"],
            ["guardrail", "Guardrail"],
          ],
          m.role || "goal",
        ),
        lower: checkbox(id("lower"), `${path}.higher_is_better`, m.higher_is_better === false),
        margin: numberInput(id("margin"), `${path}.margin`, m.margin, {
          placeholder: "guardrails",
        }),
        relative: checkbox(id("relative"), `${path}.margin_relative`, Boolean(m.margin_relative)),
        covariate: input(id("covariate"), `${path}.covariate`, {
          value: m.covariate || "",
          maxlength: 100,
          placeholder: "e.g. pre_revenue",
        }),
        numerator: input(id("numerator"), `${path}.numerator`, {
          value: m.numerator || "",
          placeholder: "ratio metrics",
        }),
        denominator: input(id("denominator"), `${path}.denominator`, {
          value: m.denominator || "",
          placeholder: "ratio metrics",
        }),
        cap: m.cap || null, // kept as it is: set through the API
      }),
      (row, label) => [
        field(label("key"), row.key.id, row.key),
        field(label("kind"), row.kind.id, row.kind),
        field(label("role"), row.role.id, row.role),
        field(label("margin"), row.margin.id, row.margin),
        field(label("covariate"), row.covariate.id, row.covariate),
        field(label("numerator"), row.numerator.id, row.numerator),
        field(label("denominator"), row.denominator.id, row.denominator),
        checkField(row.lower, `${label("").trim()}: lower is better`),
        checkField(row.relative, `${label("").trim()}: relative margin`),
      ],
    );
  }

  function clearErrors(form) {
    for (const element of form.querySelectorAll(".field-error.inline")) element.remove();
    for (const element of form.querySelectorAll("[aria-invalid]")) {
      element.removeAttribute("aria-invalid");
    }
    formError.textContent = "";
  }

  /** Show `message` next to the element the field names, or its nearest named parent. */
  function showError(form, fieldName, message) {
    const parent = (path) => {
      const shorter = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
      return shorter === path ? "" : shorter;
    };
    let name = fieldName || "";
    let target = null;
    while (name && !target) {
      target = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
      if (!target) name = parent(name);
    }
    if (!target) {
      formError.textContent = formError.textContent ? `${formError.textContent} ${message}` : message;
      return;
    }
    target.setAttribute("aria-invalid", "true");
    const note = h("p", { class: "field-error inline", "data-error-for": fieldName }, message);
    if (target.matches("input, select, textarea")) target.closest(".field, label, div").append(note);
    else target.prepend(note);
  }

  function body() {
    const number = (element) => (element.value === "" ? null : Number(element.value));
    const payload = {
      name: name.value.trim() || null,
      description: description.value,
      traffic_allocation: number(traffic),
      variants: variantList.rows
        .filter((r) => !r.removed)
        .map((r) => ({
          key: r.key.value.trim() || null,
          name: r.name.value.trim() || null,
          weight: number(r.weight),
          is_control: r.control.checked,
        })),
      metrics: metricList.rows
        .filter((r) => !r.removed)
        .map((r) => {
          const metric = {
            key: r.key.value.trim(),
            kind: r.kind.value,
            role: r.role.value,
            higher_is_better: !r.lower.checked,
            margin: number(r.margin),
            margin_relative: r.relative.checked,
          };
          for (const part of ["covariate", "numerator", "denominator"]) {
            if (r[part].value.trim()) metric[part] = r[part].value.trim();
          }
          if (r.cap) metric.cap = r.cap;
          return metric;
        }),
    };
    if (settings.value.trim()) payload.settings = JSON.parse(settings.value);
    if (key === null) {
      payload.key = keyInput.value.trim() || null;
      payload.type = type.value;
    }
    return payload;
  }

  async function onSubmit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    clearErrors(form);
    let payload;
    try {
      payload = body();
    } catch (error) {
      showError(form, "settings", `Settings must be JSON: ${error.message}`);
      return;
    }
    submit.disabled = true;
    try {
      const saved = key
        ? await api(experimentPath(key), { method: "PATCH", body: payload })
        : await api("experiments", { method: "POST", body: payload });
      app.toast(key ? "Draft saved." : `Draft ${saved.key} created.`, "success");
      window.location.hash = `#/experiments/${encodeURIComponent(saved.key)}`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const problems = error.details.length
        ? error.details
        : [{ field: error.field, message: error.message }];
      for (const problem of problems) showError(form, problem.field, problem.message);
      const first = form.querySelector("[aria-invalid='true']");
      if (first && first.focus) first.focus();
    } finally {
      submit.disabled = false;
    }
  }

  const form = h(
    "form",
    { class: "card form-card", id: "experiment-form", novalidate: true, onsubmit: onSubmit },
    formError,
    h(
      "div",
      { class: "form-grid" },
      field("Name", name.id, name),
      field("Key", keyInput.id, keyInput, "Letters, digits, “_”, “-” and “.”; fixed once created."),
      field("Type", type.id, type),
      field("Traffic allocation", traffic.id, traffic, "The share of units in the experiment, 0 to 1."),
    ),
    field("Description", description.id, description),
    h(
      "section",
      { class: "form-section", "aria-labelledby": "f-variants-title" },
      h("h2", { class: "section-title", id: "f-variants-title" }, "Variants"),
      h("p", { class: "hint" }, "At least two; weights left empty split the traffic equally."),
      variants,
      h("button", { type: "button", class: "button ghost", onclick: () => variantRow() }, "Add variant"),
    ),
    h(
      "section",
      { class: "form-section", "aria-labelledby": "f-metrics-title" },
      h("h2", { class: "section-title", id: "f-metrics-title" }, "Metrics"),
      h(
        "p",
        { class: "hint" },
        "The first goal is the primary metric; a guardrail names the harm it tolerates " +
          "(margin); a covariate (a number each exposure carries) adjusts a metric (CUPED); a " +
          "ratio names its numerator and denominator metrics.",
      ),
      metrics,
      h("button", { type: "button", class: "button ghost", onclick: () => metricRow() }, "Add metric"),
    ),
    h(
      "section",
      { class: "form-section" },
      field(
        "Settings (JSON)",
        settings.id,
        settings,
        "Optional: analysis, bandit, contextual and monitoring settings, as the API takes them.",
      ),
    ),
    h(
      "div",
      { class: "form-actions" },
      submit,
      h(
        "a",
        { class: "button ghost", href: key ? `#/experiments/${encodeURIComponent(key)}` : "#/" },
        "Cancel",
      ),
    ),
  );

  fill(
    main,
    h(
      "nav",
      { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/" }, "← All experiments"),
    ),
    h("h1", {}, key ? `Edit ${key}` : "New experiment"),
    app.canAdmin()
      ? form
      : h("p", { class: "note" }, "Creating and editing experiments needs a key with the admin role."),
  );
  if (key === null) {
    variantRow({ key: "control", is_control: true });
    variantRow({ key: "treatment" });
    metricRow({ key: "conversion" });
  }

  async function refresh() {
    if (loaded || !alive) return;
    const experiment = await api(experimentPath(key));
    if (!alive) return;
    loaded = true;
    name.value = experiment.name;
    keyInput.value = experiment.key;
    description.value = experiment.description;
    type.value = experiment.type;
    traffic.value = String(experiment.traffic_allocation);
    const rest = { ...experiment.settings };
    settings.value = Object.keys(rest).length ? JSON.stringify(rest, null, 2) : "";
    variantList.rows = [];
    metricList.rows = [];
    variants.replaceChildren();
    metrics.replaceChildren();
    experiment.variants.forEach((v) => variantRow(v));
    experiment.metrics.forEach((m) => metricRow(m));
    if (experiment.status !== "draft") {
      formError.textContent =
        `This experiment is ${experiment.status}: only a draft can be edited here.`;
      submit.disabled = true;
    }
  }

  return {
    refresh,
    destroy() {
      alive = false;
    },
  };
}
