// The REST side of the server: same origin, JSON, a token when the person gave one.

import { SseParser } from "./models.js";

const TOKEN_KEY = "audiototext.token";

export function apiBase() {
  const meta = document.querySelector('meta[name="audiototext-api"]');
  return (meta && meta.content) || "/api/v1";
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return ""; // storage disabled
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives in the field only
  }
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET a JSON document under the API base; rejects with HttpError or a network error. */
export async function getJson(path, { timeoutMs = 4000 } = {}) {
  return (await request(path, { timeoutMs })).json();
}

/** A request under the API base (the token added); resolves with the Response once it is
 * known to be OK, rejects with HttpError or a network error. The body is read in time. */
export async function request(path, { method = "GET", accept = "application/json", timeoutMs = 10000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(apiBase() + path, {
      method,
      headers: authHeaders(accept),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
    const body = await response.blob(); // within the timeout
    return { blob: async () => body, text: async () => body.text(), json: async () => JSON.parse(await body.text()) };
  } finally {
    clearTimeout(timer);
  }
}

/** POST without a body to a path under the API base; its JSON answer, or HttpError. */
export async function postJson(path, { timeoutMs = 4000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(apiBase() + path, {
      method: "POST",
      headers: authHeaders("application/json"),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

async function errorMessage(response) {
  let message = response.statusText;
  try {
    const body = await response.json();
    message = body.message || body.detail || (body.error && body.error.message) || message;
  } catch {
    // not JSON
  }
  return String(message);
}

export function authHeaders(accept) {
  const headers = { Accept: accept };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/**
 * POST to a path that answers with Server-Sent Events (a model download); calls
 * onEvent({event, data}) for each as it arrives and resolves when the stream ends.
 */
export async function postEvents(path, onEvent, { signal } = {}) {
  const response = await fetch(apiBase() + path, {
    method: "POST",
    headers: authHeaders("text/event-stream"),
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const event of parser.feed(decoder.decode(value, { stream: true }))) onEvent(event);
  }
  for (const event of parser.feed(`${decoder.decode()}\n\n`)) onEvent(event);
}

/**
 * Calls fn every intervalMs while the tab is visible (and once at once); returns a stop
 * function. A call never overlaps the previous one. While fn reports failure (returns
 * false), the interval doubles up to maxMs, so a server that is down or lacks an endpoint
 * is not asked (and the console not filled with failed requests) every few seconds.
 */
export function poll(fn, intervalMs, maxMs = 30000) {
  let timer = null;
  let stopped = false;
  let delay = intervalMs;
  const tick = async () => {
    timer = null;
    if (stopped) return;
    if (document.visibilityState !== "hidden") {
      let ok = true;
      try {
        ok = (await fn()) !== false;
      } catch {
        ok = false;
      }
      delay = ok ? intervalMs : Math.min(maxMs, delay * 2);
    }
    if (!stopped) timer = setTimeout(tick, delay);
  };
  const onVisible = () => {
    if (document.visibilityState === "visible" && timer !== null) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener("visibilitychange", onVisible);
  tick();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
}
