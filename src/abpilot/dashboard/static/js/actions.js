// The actions of an experiment's page: what each does, when it applies and what it asks first;
// the winner the Complete dialog suggests; the copy-link button.

import { api, experimentPath } from "./api.js";

const setStatus = (status) => (key) =>
  api(experimentPath(key, "status"), { method: "PUT", body: { status } });

// Each action: when it applies, what it asks first, what it calls, and what to say when it
// worked. Every one needs the admin role: a read key sees none of them.
export const ACTIONS = [
  {
    id: "edit",
    label: () => "Edit",
    applies: (e) => e.status === "draft",
    go: (e) => `#/experiments/${encodeURIComponent(e.key)}/edit`,
  },
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
    ask: (e) => ({
      title: `Pause ${e.name || e.key}?`,
      text:
        "While paused, no unit is assigned and no event is counted; units keep their variant " +
        "when it resumes. Results so far are kept.",
      confirm: "Pause",
    }),
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
    complete: true,
    done: (result) =>
      result.winner ? `Experiment completed: ${result.winner} is the winner.` : "Experiment completed.",
  },
  {
    id: "delete",
    label: () => "Delete…",
    applies: (e) => e.status !== "running",
    ask: (e) => ({
      title: `Delete ${e.name || e.key}?`,
      text: "The experiment and everything it recorded are deleted for good.",
      confirm: "Delete",
    }),
    run: (key) => api(experimentPath(key), { method: "DELETE" }),
    done: () => "Experiment deleted.",
    then: () => {
      window.location.hash = "#/";
    },
  },
];

export const BUTTON_STYLES = {
  edit: "ghost",
  start: "primary",
  pause: "ghost",
  recalculate: "primary",
  complete: "ghost danger",
  delete: "ghost danger",
};

/** The variant the decision ships, else the analysis' winner (interleaving: "a" or "b"). */
export function suggestedWinner(experiment, analysis) {
  const decision = analysis && analysis.decision;
  const found =
    decision && decision.action === "ship"
      ? { key: decision.variant }
      : analysis
        ? analysis.winner
        : null;
  if (typeof found === "string") return experiment.variants[found === "a" ? 0 : 1].key;
  return found ? found.key : null;
}

export async function copyLink(app) {
  const url = window.location.href;
  try {
    await navigator.clipboard.writeText(url);
    app.toast("Link copied.", "success");
  } catch {
    app.toast(`Copy this link: ${url}`);
  }
}

