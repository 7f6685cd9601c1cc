// Create an experiment of any type, or edit a draft: name, key, type, traffic, variants,
// metrics (goals and guardrails) and settings as JSON. The API validates; each of its 422
// problems is shown next to the field it names.

import { ApiError, api, experimentPath } from "./api.js";
import { TYPE_LABELS, fill, h } from "./dom.js";

const CONTEXTUAL_TEMPLATE = {
  contextual: { attributes: { user_type: ["new", "returning"] } },
};

function field(label, id, input, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { class: "field-label", for: id }, label),
    input,
    hint ? h("p", { class: "hint" }, hint) : null,
  );
}

function input(id, name, attrs = {}) {
  return h("input", { id, class: "input", "data-field": name, ...attrs });
}

export function formView(main, key, app) {
  let alive = true;
  let loaded = key === null;
  let variantRows = [];
  let metricRows = [];
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

  function variantRow(v = {}) {
    const i = variantRows.length;
    const row = {
      key: input(`f-variant-${i}-key`, `variants[${i}].key`, { value: v.key || "", maxlength: 100 }),
      name: input(`f-variant-${i}-name`, `variants[${i}].name`, { value: v.name || "" }),
      weight: input(`f-variant-${i}-weight`, `variants[${i}].weight`, {
        type: "number",
        step: "any",
        min: 0,
        max: 1,
        value: v.weight ?? "",
        placeholder: "equal split",
      }),
      control: h("input", {
        type: "radio",
        name: "f-control",
        id: `f-variant-${i}-control`,
        "data-field": `variants[${i}].is_control`,
        checked: Boolean(v.is_control),
      }),
    };
    row.element = h(
      "div",
      { class: "row-editor", "data-field": `variants[${i}]` },
      field(`Variant ${i + 1} key`, row.key.id, row.key),
      field(`Variant ${i + 1} name`, row.name.id, row.name),
      field(`Variant ${i + 1} weight`, row.weight.id, row.weight),
      h(
        "label",
        { class: "check-field", for: row.control.id },
        row.control,
        `Variant ${i + 1} is the control`,
      ),
      h(
        "button",
        {
          type: "button",
          class: "button ghost danger",
          onclick: () => {
            row.removed = true;
            row.element.remove();
          },
        },
        `Remove variant ${i + 1}`,
      ),
    );
    variantRows.push(row);
    variants.append(row.element);
  }

  function metricRow(m = {}) {
    const i = metricRows.length;
    const select = (id, name, options, value) =>
      h(
        "select",
        { id, class: "input", "data-field": name },
        options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
      );
    const row = {
      key: input(`f-metric-${i}-key`, `metrics[${i}].key`, { value: m.key || "", maxlength: 100 }),
      kind: select(
        `f-metric-${i}-kind`,
        `metrics[${i}].kind`,
        [
          ["binary", "Converts or not"],
          ["value", "A value per unit"],
        ],
        m.kind || "binary",
      ),
      role: select(
        `f-metric-${i}-role`,
        `metrics[${i}].role`,
        [
          ["goal", "Goal"],
          ["guardrail", "Guardrail"],
        ],
        m.role || "goal",
      ),
      lower: h("input", {
        type: "checkbox",
        id: `f-metric-${i}-lower`,
        "data-field": `metrics[${i}].higher_is_better`,
        checked: m.higher_is_better === false,
      }),
      margin: input(`f-metric-${i}-margin`, `metrics[${i}].margin`, {
        type: "number",
        step: "any",
        min: 0,
        value: m.margin ?? "",
        placeholder: "guardrails",
      }),
      relative: h("input", {
        type: "checkbox",
        id: `f-metric-${i}-relative`,
        "data-field": `metrics[${i}].margin_relative`,
        checked: Boolean(m.margin_relative),
      }),
    };
    row.element = h(
      "div",
      { class: "row-editor", "data-field": `metrics[${i}]` },
      field(`Metric ${i + 1} key`, row.key.id, row.key),
      field(`Metric ${i + 1} kind`, row.kind.id, row.kind),
      field(`Metric ${i + 1} role`, row.role.id, row.role),
      field(`Metric ${i + 1} margin`, row.margin.id, row.margin),
      h(
        "label",
        { class: "check-field", for: row.lower.id },
        row.lower,
        `Metric ${i + 1}: lower is better`,
      ),
      h(
        "label",
        { class: "check-field", for: row.relative.id },
        row.relative,
        `Metric ${i + 1}: relative margin`,
      ),
      h(
        "button",
        {
          type: "button",
          class: "button ghost danger",
          onclick: () => {
            row.removed = true;
            row.element.remove();
          },
        },
        `Remove metric ${i + 1}`,
      ),
    );
    metricRows.push(row);
    metrics.append(row.element);
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
      variants: variantRows
        .filter((r) => !r.removed)
        .map((r) => ({
          key: r.key.value.trim() || null,
          name: r.name.value.trim() || null,
          weight: number(r.weight),
          is_control: r.control.checked,
        })),
      metrics: metricRows
        .filter((r) => !r.removed)
        .map((r) => ({
          key: r.key.value.trim(),
          kind: r.kind.value,
          role: r.role.value,
          higher_is_better: !r.lower.checked,
          margin: number(r.margin),
          margin_relative: r.relative.checked,
        })),
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
        "The first goal is the primary metric; a guardrail names the harm it tolerates (margin).",
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
    variantRows = [];
    metricRows = [];
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
