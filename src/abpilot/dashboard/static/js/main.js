// The dashboard's shell: hash routes, polling, the API key prompt, toasts.

import { ApiError, api, getKey, onUnauthorized, setKey } from "./api.js";
import { byId, fmtClock, h } from "./dom.js";
import { experimentView } from "./experiment.js";
import { formView } from "./form.js";
import { listView } from "./list.js";

const POLL_MS = 5000;
const MONITORING_MS = 30000;

// Hash links resolve against <base href=".../dashboard/">: make the page's own URL end in "/" so
// that following one stays on this page.
if (!window.location.pathname.endsWith("/")) {
  const { pathname, search, hash } = window.location;
  window.history.replaceState(null, "", `${pathname}/${search}${hash}`);
}

let view = null; // {refresh(), destroy()}, the page shown
let timer = null;
let waitingForKey = false;

// --- monitoring: GET /monitoring/report, at most every 30 s; a 404 means "not on this server".

let monitoringCache = { at: 0, value: null };

async function monitoring() {
  if (Date.now() - monitoringCache.at < MONITORING_MS) return monitoringCache.value;
  let value;
  try {
    value = { available: true, report: await api("monitoring/report") };
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) throw error;
    value = { available: false, status: error.status, message: error.message };
  }
  monitoringCache = { at: Date.now(), value };
  return value;
}

// --- the key's role: GET /session, asked again whenever the key changes. Until it answers, the
// page shows no admin action.

let session = { role: null, keys_required: false };

async function loadSession() {
  try {
    session = await api("session");
  } catch (error) {
    session = { role: null, keys_required: true };
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
  }
  return session;
}

// --- toasts

function toast(message, tone = "info") {
  const item = h(
    "div",
    { class: `toast toast-${tone}`, role: tone === "error" ? "alert" : null },
    message,
  );
  byId("toasts").append(item);
  window.setTimeout(() => item.remove(), tone === "error" ? 8000 : 4000);
}

// --- the API key prompt

const keyDialog = byId("key-dialog");

function openKeyDialog(reason) {
  if (reason) byId("key-reason").textContent = reason;
  byId("key-error").textContent = "";
  byId("key-input").value = getKey();
  if (!keyDialog.open) keyDialog.showModal();
  byId("key-input").focus();
}

onUnauthorized((error, usedKey) => {
  if (usedKey !== getKey()) return; // an answer to a request sent before the key changed
  waitingForKey = true;
  setRefreshState("Waiting for an API key", "warn");
  openKeyDialog(
    `This service needs an API key with the read role (${error.message}). Starting, pausing, ` +
      "completing and recalculating need the admin role.",
  );
});

byId("key-button").addEventListener("click", () => openKeyDialog());
byId("key-cancel").addEventListener("click", () => keyDialog.close());
byId("key-forget").addEventListener("click", () => {
  setKey("");
  keyDialog.close();
  toast("The API key is forgotten in this browser.");
  resume();
});
byId("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = byId("key-input").value.trim();
  if (!key) return;
  const error = byId("key-error");
  error.textContent = "";
  const previous = getKey();
  setKey(key);
  try {
    session = await api("session");
  } catch (failure) {
    setKey(previous); // a key the service refuses is not kept
    error.textContent =
      failure instanceof ApiError && failure.status === 401
        ? `This key is not valid on this service (${failure.message}); nothing was saved.`
        : `The key could not be checked: ${failure.message}`;
    byId("key-input").focus();
    return;
  }
  keyDialog.close();
  toast(`API key saved in this browser: it has the ${session.role} role.`, "success");
  resume();
});

function resume() {
  waitingForKey = false;
  monitoringCache = { at: 0, value: null };
  show();
}

// --- polling

function setRefreshState(text, tone = "ok") {
  const state = byId("refresh-state");
  state.textContent = text;
  state.dataset.tone = tone;
}

function schedule(delay = POLL_MS) {
  window.clearTimeout(timer);
  timer = window.setTimeout(tick, delay);
}

async function tick() {
  if (waitingForKey || document.hidden) return; // resumed by the key prompt or visibility
  const current = view;
  if (!current) return; // the next view schedules its own refresh
  if (current.busy) {
    schedule(250); // a refresh is still running: come back as soon as it is done
    return;
  }
  current.busy = true;
  try {
    await current.refresh();
    if (current === view) setRefreshState(`Updated ${fmtClock(new Date())}`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      setRefreshState(
        error.status === 0 ? "Service unreachable, retrying" : "Refresh failed",
        "warn",
      );
      if (error.status !== 0) console.error(error);
    }
  } finally {
    current.busy = false;
  }
  if (!waitingForKey) schedule();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) schedule(0);
});

// --- routes: #/ (the list, with its filters), #/new, #/experiments/{key} and …/edit

const app = {
  toast,
  monitoring,
  refreshNow: () => schedule(0),
  canAdmin: () => session.role === "admin",
  role: () => session.role,
};

let navigation = 0;

async function show() {
  window.clearTimeout(timer);
  if (view) view.destroy();
  view = null;
  navigation += 1;
  const mine = navigation;
  const main = byId("main");
  try {
    await loadSession();
  } catch (error) {
    setRefreshState(error.status === 0 ? "Service unreachable, retrying" : "Refresh failed", "warn");
  }
  if (mine !== navigation) return; // a later navigation shows its own view
  const hash = window.location.hash;
  const edit = hash.match(/^#\/experiments\/([^/?]+)\/edit$/);
  const page = hash.match(/^#\/experiments\/([^/?]+)$/);
  if (hash === "#/new") view = formView(main, null, app);
  else if (edit) view = formView(main, decodeURIComponent(edit[1]), app);
  else if (page) view = experimentView(main, decodeURIComponent(page[1]), app);
  else view = listView(main, app);
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  schedule(0);
}

window.addEventListener("hashchange", show);
show();
