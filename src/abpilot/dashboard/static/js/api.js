// The REST API from the browser: one fetch wrapper, and the API key kept in localStorage.

const STORAGE_KEY = "abpilot.apiKey";

// The page's <base> is ".../dashboard/", so this is the service's /api/v1/ wherever it is mounted.
export const API_BASE = new URL("../api/v1/", document.baseURI);

export class ApiError extends Error {
  constructor(status, message, code, field = null, details = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field; // the request field it names ("variants[1].key"), if any
    this.details = details; // every problem of a 422: [{field, message}]
  }
}

export function getKey() {
  try {
    return localStorage.getItem(STORAGE_KEY) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(STORAGE_KEY, key);
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage disabled (private mode): the key lasts for this page only.
  }
}

let unauthorizedHandler = () => {};

/** Called with the ApiError and the key the request used whenever the service answers 401. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** GET (or another method with a JSON body) a path under /api/v1/; throws ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(new URL(path, API_BASE), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The service cannot be reached; retrying.", "unreachable");
  }
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && payload.error ? payload.error : {};
    const message = error.message || `${method} ${path} answered ${response.status}`;
    const failure = new ApiError(
      response.status,
      message,
      error.code,
      error.field || null,
      error.details || [],
    );
    if (response.status === 401) unauthorizedHandler(failure, key);
    throw failure;
  }
  return payload;
}

/** The path of one experiment's resource: experimentPath("a b", "analysis"). */
export function experimentPath(key, ...rest) {
  return ["experiments", encodeURIComponent(key), ...rest].join("/");
}
