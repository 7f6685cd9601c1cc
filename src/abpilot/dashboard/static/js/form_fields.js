// The form's building blocks: a labelled field, inputs that carry the API field they fill
// (`data-field`, where a 422 names it), and removable rows of a list editor.

import { h } from "./dom.js";

export function field(label, id, input, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { class: "field-label", for: id }, label),
    input,
    hint ? h("p", { class: "hint" }, hint) : null,
  );
}

export function input(id, name, attrs = {}) {
  return h("input", { id, class: "input", "data-field": name, ...attrs });
}

export function numberInput(id, name, value, attrs = {}) {
  return input(id, name, { type: "number", step: "any", min: 0, value: value ?? "", ...attrs });
}

export function select(id, name, options, value) {
  return h(
    "select",
    { id, class: "input", "data-field": name },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
  );
}

export function checkbox(id, name, checked, attrs = {}) {
  return h("input", { type: "checkbox", id, "data-field": name, checked, ...attrs });
}

/** One removable row of a list editor (variants, metrics): `build(i, path)` gives its inputs
 * and `layout(row, label)` the fields shown before its Remove button, where `label("key")`
 * is "Variant 2 key". The row joins `list.rows` and `list.container`. */
export function editorRow(list, build, layout) {
  const i = list.rows.length;
  const path = `${list.field}[${i}]`;
  const noun = `${list.noun} ${i + 1}`;
  const row = build((name) => `f-${list.noun.toLowerCase()}-${i}-${name}`, path);
  const label = (words) => `${noun} ${words}`;
  row.element = h(
    "div",
    { class: "row-editor", "data-field": path },
    layout(row, label),
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
      `Remove ${noun.toLowerCase()}`,
    ),
  );
  list.rows.push(row);
  list.container.append(row.element);
}

/** A checkbox or radio button with its label after it. */
export function checkField(box, text) {
  return h("label", { class: "check-field", for: box.id }, box, text);
}
