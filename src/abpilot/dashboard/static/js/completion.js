// Completing an experiment: the Complete dialog names every problem with a winner the analysis
// does not support (sample ratio mismatch, plan not reached, guardrail harm, the decision
// itself); each must be confirmed, and the completion is then sent as an override (recorded).
// Also the plain confirmation asked before pausing or deleting.

import { byId, fill, fmtInt, fmtList, fmtNumber, fmtPct, h, pText } from "./dom.js";
import { reasonName } from "./summary.js";

/** Whether completing with `winner` follows the decision (as the service's Decision.supports:
 * the variant it ships, or the control when it rolls back or finds no difference). */
export function supports(decision, winner, control) {
  if (!decision || !winner) return true;
  if (decision.action === "ship") return winner === decision.variant;
  return winner === control && ["rollback", "inconclusive"].includes(decision.action);
}

/** The problems of completing with `winner` against the analysis: [{code, text}]. */
export function completionProblems(experiment, analysis, winner) {
  if (!analysis || !analysis.decision || !winner) return [];
  const control = (experiment.variants.find((v) => v.is_control) || experiment.variants[0]).key;
  const decision = analysis.decision;
  if (supports(decision, winner, control)) return [];
  const problems = [];
  const srm = analysis.srm;
  if (srm.flagged) {
    problems.push({
      code: "srm",
      text:
        `Sample ratio mismatch: units split ${fmtList(srm.observed)} where the weights expect ` +
        `${fmtList(srm.expected, (x) => fmtNumber(x, 1))} (${pText(srm.p_value)}); every ` +
        "number of this experiment is suspect.",
    });
  }
  const plan = analysis.sample_size;
  if (plan.progress === null || plan.progress < 1) {
    const fewest = Math.min(...analysis.variants.map((v) => v.units));
    problems.push({
      code: "plan",
      text:
        plan.required_per_variant === null
          ? "No sample size is planned, so nothing says the data are enough."
          : `The plan is not reached: ${fmtInt(fewest)} of ${fmtInt(plan.required_per_variant)} ` +
            `units in the smallest variant (${fmtPct(Math.min(1, plan.progress), 0)}).`,
    });
  }
  for (const check of analysis.guardrails || []) {
    if (check.variant !== winner) continue;
    if (check.harm_detected && !check.harm_ruled_out) {
      problems.push({
        code: "guardrail",
        text: `Guardrail ${check.metric}: harm detected on ${winner}, and harm beyond the margin is not ruled out.`,
      });
    } else if (!check.harm_ruled_out) {
      problems.push({
        code: "guardrail",
        text: `Guardrail ${check.metric}: harm beyond the margin is not yet ruled out for ${winner}.`,
      });
    }
  }
  const target = decision.variant ? ` ${decision.variant}` : "";
  problems.push({
    code: "decision",
    text:
      `The analysis decides "${decision.action}${target}" ` +
      `(${decision.reasons.map((r) => reasonName(r.code)).join("; ")}), not ${winner}.`,
  });
  return problems;
}

/** Ask for the winner; resolves to {winner, override} or null when cancelled. */
export function askCompletion(experiment, analysis, suggested) {
  const dialog = byId("complete-dialog");
  const select = byId("complete-winner");
  const submit = byId("complete-submit");
  const decision = analysis && analysis.decision;
  byId("complete-decision").textContent = decision
    ? `The analysis decides: ${decision.action}${decision.variant ? ` ${decision.variant}` : ""}` +
      ` (${decision.reasons.map((r) => reasonName(r.code)).join("; ")}).`
    : "";
  byId("complete-decision").hidden = !decision;
  fill(
    select,
    h("option", { value: "" }, "No winner"),
    experiment.variants.map((v) =>
      h("option", { value: v.key, selected: v.key === suggested }, v.name || v.key),
    ),
  );
  let problems = [];
  const boxes = () => [...byId("complete-problem-list").querySelectorAll("input")];
  const update = () => {
    submit.disabled = problems.length > 0 && !boxes().every((box) => box.checked);
  };
  const showProblems = () => {
    problems = completionProblems(experiment, analysis, select.value || null);
    byId("complete-problems").hidden = problems.length === 0;
    fill(
      byId("complete-problem-list"),
      problems.map((problem, i) =>
        h(
          "li",
          { "data-problem": problem.code },
          h(
            "label",
            { class: "problem" },
            h("input", { type: "checkbox", id: `complete-problem-${i}`, onchange: update }),
            h("span", {}, problem.text),
          ),
        ),
      ),
    );
    submit.textContent = problems.length ? "Complete against the analysis" : "Complete";
    update();
  };
  select.onchange = showProblems;
  showProblems();
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
      if (submit.disabled) return;
      finish({ winner: select.value || null, override: problems.length > 0 });
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

/** A yes/no question in the confirm dialog; resolves to true when confirmed. */
export function confirmAction({ title, text, confirm }) {
  const dialog = byId("confirm-dialog");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-ok").textContent = confirm;
  return new Promise((resolve) => {
    const form = byId("confirm-form");
    const finish = (value) => {
      form.removeEventListener("submit", onSubmit);
      byId("confirm-cancel").removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      finish(true);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    form.addEventListener("submit", onSubmit);
    byId("confirm-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    byId("confirm-cancel").focus();
  });
}
