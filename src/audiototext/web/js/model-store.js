// A model's browser files (GET /api/v1/models/{name}/browser) kept in the Cache API for
// transcription in the page: each file is checked against its SHA-256 before it is kept and
// again when found, so a damaged or truncated copy is fetched anew. One cache per model and
// version (the manifest's); keeping a new version deletes the model's older ones.

export const MODEL_CACHE_PREFIX = "audiototext-model-";

export function modelCacheName(listing) {
  return `${MODEL_CACHE_PREFIX}${listing.model}@${listing.version}`;
}

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether this browser can keep models: the Cache API and SubtleCrypto (secure pages). */
export function canKeepModels() {
  return typeof caches !== "undefined" && !!globalThis.crypto?.subtle && globalThis.isSecureContext !== false;
}

async function readAll(response, onBytes) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const parts = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    length += value.length;
    onBytes(value.length);
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Keeps every file of `listing` (its `files`: name, size, sha256, url).
 * @param {object} options headers (the token), onProgress(doneBytes, totalBytes, fileName)
 * @returns {{fetched: string[], kept: string[], bytes: number}} files downloaded now, and
 *   those already kept and intact
 */
export async function keepModel(listing, { headers = {}, onProgress = () => {} } = {}) {
  const cache = await caches.open(modelCacheName(listing));
  const total = listing.files.reduce((sum, f) => sum + f.size, 0);
  let done = 0;
  const fetched = [];
  const kept = [];
  for (const file of listing.files) {
    const cached = await cache.match(file.url);
    if (cached) {
      const bytes = new Uint8Array(await cached.arrayBuffer());
      if (bytes.length === file.size && (await sha256Hex(bytes)) === file.sha256) {
        done += file.size;
        kept.push(file.name);
        onProgress(done, total, file.name);
        continue;
      }
      await cache.delete(file.url); // damaged: fetched again below
    }
    const response = await fetch(file.url, { headers, cache: "no-store" });
    if (!response.ok) throw new Error(`${file.name}: HTTP ${response.status}`);
    const start = done;
    const bytes = await readAll(response, (n) => {
      done += n;
      onProgress(done, total, file.name);
    });
    done = start + bytes.length;
    if (bytes.length !== file.size || (await sha256Hex(bytes)) !== file.sha256) {
      throw new Error(`${file.name} arrived damaged (${bytes.length} of ${file.size} bytes, hash differs)`);
    }
    const type = response.headers.get("Content-Type") || "application/octet-stream";
    await cache.put(file.url, new Response(bytes, { headers: { "Content-Type": type } }));
    fetched.push(file.name);
  }
  const mine = modelCacheName(listing);
  for (const name of await caches.keys()) {
    if (name.startsWith(`${MODEL_CACHE_PREFIX}${listing.model}@`) && name !== mine) await caches.delete(name);
  }
  return { fetched, kept, bytes: total };
}

/** Whether every file of `listing` is in its cache (not hash-checked: see keepModel). */
export async function isKept(listing) {
  if (!(await caches.has(modelCacheName(listing)))) return false;
  const cache = await caches.open(modelCacheName(listing));
  for (const file of listing.files) if (!(await cache.match(file.url))) return false;
  return true;
}

const KEPT_KEY = "audiototext.kept-model"; // the kept model's listing, for opening offline

/** Remembers the listing of the model kept in this browser (for local mode offline). */
export function rememberKept(listing) {
  try {
    localStorage.setItem(KEPT_KEY, JSON.stringify(listing));
  } catch {
    // storage off: local mode then needs the server's listing, i.e. not offline
  }
}

/** The remembered listing, if its files are all kept; else null. */
export async function keptListing() {
  try {
    const listing = JSON.parse(localStorage.getItem(KEPT_KEY) || "null");
    return listing && (await isKept(listing)) ? listing : null;
  } catch {
    return null;
  }
}
