// The link between this page and the server, timed here: a few small round trips, a bounded
// download and upload (/api/v1/network/*), then reported to the server, which shows it in its
// diagnostics and hands it to its adaptive controller. Pure apart from the injected fetch and
// clock, so Node tests drive it with fakes.

export const PINGS = 5;
export const DOWNLOAD_BYTES = 1 << 20;
export const UPLOAD_BYTES = 512 << 10; // under the server's 1-MiB limit for request bodies
const CLIENT_KEY = "audiototext.client-id";

export function median(values) {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (!xs.length) return NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/** Megabits per second of `bytes` moved in `ms` milliseconds (null when not measurable). */
export function mbps(bytes, ms) {
  return ms > 0 ? (bytes * 8) / (ms * 1000) : null;
}

/** This page's client id: random, kept for the tab's life (sessionStorage when allowed). */
export function clientId(storage = globalThis.sessionStorage, random = () => Math.random()) {
  try {
    const saved = storage && storage.getItem(CLIENT_KEY);
    if (saved) return saved;
  } catch {
    // storage disabled: a new id each load
  }
  const id = "page-" + Math.floor(random() * 2 ** 48).toString(36);
  try {
    if (storage) storage.setItem(CLIENT_KEY, id);
  } catch {
    // as above
  }
  return id;
}

function uploadBody(size) {
  const body = new Uint8Array(size);
  const cryptoObj = globalThis.crypto;
  // Random bytes, so that nothing on the way can compress them (getRandomValues: 64 KiB a call).
  for (let at = 0; at < size && cryptoObj; at += 65536) {
    cryptoObj.getRandomValues(body.subarray(at, Math.min(size, at + 65536)));
  }
  return body;
}

async function ok(response) {
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      message = (body.error && body.error.message) || message;
    } catch {
      // not JSON
    }
    throw new Error(message);
  }
  return response;
}

/**
 * Time the link: {rtt_ms, download_mbps, upload_mbps}. `headers` carry the token; `now`
 * is a millisecond clock (performance.now).
 */
export async function measureNetwork({
  base,
  headers = {},
  fetchImpl = globalThis.fetch,
  now = () => performance.now(),
  pings = PINGS,
  downloadBytes = DOWNLOAD_BYTES,
  uploadBytes = UPLOAD_BYTES,
} = {}) {
  const opts = { headers, cache: "no-store" };
  const rtts = [];
  for (let i = 0; i < pings; i += 1) {
    const start = now();
    const response = await ok(await fetchImpl(`${base}/network/ping`, opts));
    await response.text();
    rtts.push(now() - start);
  }
  let start = now();
  const down = await ok(await fetchImpl(`${base}/network/download?bytes=${downloadBytes}`, opts));
  const got = (await down.arrayBuffer()).byteLength;
  const downMs = now() - start;
  const body = uploadBody(uploadBytes);
  start = now();
  const up = await ok(
    await fetchImpl(`${base}/network/upload`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/octet-stream" },
      body,
      cache: "no-store",
    }),
  );
  const sent = (await up.json()).bytes;
  const upMs = now() - start;
  const rtt = median(rtts);
  // One round trip of each transfer is latency, not throughput.
  return {
    rtt_ms: rtt,
    download_mbps: mbps(got, Math.max(downMs - rtt, downMs / 2)),
    upload_mbps: mbps(sent, Math.max(upMs - rtt, upMs / 2)),
  };
}

/** Send a measurement to the server; resolves with what it stored. */
export async function reportNetwork(result, { base, headers = {}, fetchImpl = globalThis.fetch, client, session = "" }) {
  const report = { client_id: client, rtt_ms: result.rtt_ms };
  if (session) report.session_id = session;
  if (result.download_mbps !== null) report.download_mbps = result.download_mbps;
  if (result.upload_mbps !== null) report.upload_mbps = result.upload_mbps;
  const response = await ok(
    await fetchImpl(`${base}/network/report`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify(report),
      cache: "no-store",
    }),
  );
  return response.json();
}

/** Rows [key, label, value] of a measurement for the diagnostics panel. */
export function networkRows(result, t, format) {
  if (!result) return [["state", t("net.state"), t("net.measuring")]];
  if (result.error) return [["state", t("net.state"), t("net.failed", { reason: result.error })]];
  return [
    ["rtt", t("net.rtt"), format("rtt_ms", result.rtt_ms)],
    ["down", t("net.download"), t("net.mbps", { value: fixed(result.download_mbps) })],
    ["up", t("net.upload"), t("net.mbps", { value: fixed(result.upload_mbps) })],
  ];
}

function fixed(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

/** Rows of the server's recommendation ({state, message, recommendation} of /api/v1/system). */
export function recommendationRows(profile, t) {
  if (!profile) return [];
  const rec = profile.recommendation;
  if (!rec) {
    const state = profile.rebuilding ? t("rec.rebuilding") : profile.message;
    return [["profile", t("rec.profile"), state]];
  }
  const r = rec.reasons || {};
  const rows = [
    ["model", t("rec.model"), `${rec.model} ${rec.precision} — ${r.model || ""}`],
    ["threads", t("rec.threads"), `${rec.threads} — ${r.threads || ""}`],
    ["streams", t("rec.streams"), `${rec.streams} — ${r.streams || ""}`],
    ["interval", t("rec.interval"), `${rec.partial_interval_ms} ms — ${r.partial_interval_ms || ""}`],
  ];
  if (!rec.realtime) rows.unshift(["behind", t("rec.profile"), t("rec.behind")]);
  return rows;
}
