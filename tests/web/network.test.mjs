import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const N = await import(web("js/network.js"));
const { createTranslator } = await import(web("js/i18n.js"));
const { readFileSync } = await import("node:fs");
const { WEB_DIR } = await import("./helpers.mjs");
const path = await import("node:path");

const messages = (locale) => JSON.parse(readFileSync(path.join(WEB_DIR, "i18n", `${locale}.json`), "utf8"));
const EN = createTranslator(messages("en"), messages("en"), "en");

/** A fake server on a fake clock: each request advances the clock by its cost. */
function fakeServer({ rttMs, downMbps, upMbps }) {
  let clock = 0;
  const calls = [];
  const fetchImpl = async (url, opts = {}) => {
    calls.push([opts.method || "GET", url, opts.headers]);
    const u = new URL(url, "http://x");
    let body = "{}";
    clock += rttMs;
    if (u.pathname.endsWith("/network/download")) {
      const n = Number(u.searchParams.get("bytes"));
      clock += (n * 8) / (downMbps * 1000);
      body = new Uint8Array(n);
    } else if (u.pathname.endsWith("/network/upload")) {
      clock += (opts.body.byteLength * 8) / (upMbps * 1000);
      body = JSON.stringify({ bytes: opts.body.byteLength });
    } else if (u.pathname.endsWith("/network/report")) {
      body = opts.body;
    }
    const text = typeof body === "string" ? body : "";
    return {
      ok: true,
      status: 200,
      text: async () => text,
      json: async () => JSON.parse(text),
      arrayBuffer: async () => (typeof body === "string" ? new ArrayBuffer(0) : body.buffer),
    };
  };
  return { fetchImpl, now: () => clock, calls };
}

test("median and megabits", () => {
  assert.equal(N.median([5, 1, 3]), 3);
  assert.equal(N.median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(N.median([])));
  assert.equal(N.mbps(1_000_000, 1000), 8);
  assert.equal(N.mbps(10, 0), null);
});

test("measure: round trips, then a timed download and upload, throughput without the round trip", async () => {
  const server = fakeServer({ rttMs: 20, downMbps: 80, upMbps: 16 });
  const got = await N.measureNetwork({ base: "/api/v1", headers: { Authorization: "Bearer k" }, ...server });
  assert.equal(got.rtt_ms, 20);
  assert.ok(Math.abs(got.download_mbps - 80) < 1e-9, got.download_mbps);
  assert.ok(Math.abs(got.upload_mbps - 16) < 1e-9, got.upload_mbps);
  const paths = server.calls.map(([m, u]) => `${m} ${u.split("?")[0]}`);
  assert.deepEqual(paths, [
    ...Array(N.PINGS).fill("GET /api/v1/network/ping"),
    "GET /api/v1/network/download",
    "POST /api/v1/network/upload",
  ]);
  assert.ok(server.calls.every(([, , h]) => h.Authorization === "Bearer k"));
});

test("a refused measurement rejects with the server's message", async () => {
  const fetchImpl = async () => ({
    ok: false,
    status: 401,
    json: async () => ({ error: { code: "UNAUTHENTICATED", message: "a token is needed" } }),
  });
  await assert.rejects(N.measureNetwork({ base: "/api/v1", fetchImpl, now: () => 0 }), /a token is needed/);
});

test("report: the session when known, no nulls", async () => {
  const server = fakeServer({ rttMs: 1, downMbps: 1, upMbps: 1 });
  const stored = await N.reportNetwork(
    { rtt_ms: 3, download_mbps: 50, upload_mbps: null },
    { base: "/api/v1", fetchImpl: server.fetchImpl, client: "page-x", session: "s1" },
  );
  assert.deepEqual(stored, { client_id: "page-x", rtt_ms: 3, session_id: "s1", download_mbps: 50 });
});

test("client id is kept in storage", () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) || null, setItem: (k, v) => store.set(k, v) };
  const id = N.clientId(storage, () => 0.5);
  assert.match(id, /^page-[0-9a-z]+$/);
  assert.equal(N.clientId(storage, () => 0.9), id);
  const broken = { getItem: () => { throw new Error("denied"); }, setItem: () => { throw new Error("denied"); } };
  assert.match(N.clientId(broken, () => 0.1), /^page-/);
});

test("diagnostics rows: measuring, failed, figures; recommendation with reasons", () => {
  const fmt = (p, v) => `${v} ms`;
  assert.deepEqual(N.networkRows(null, EN, fmt), [["state", "Measurement", "measuring…"]]);
  assert.equal(N.networkRows({ error: "boom" }, EN, fmt)[0][2], "could not measure: boom");
  const rows = N.networkRows({ rtt_ms: 4, download_mbps: 812.3, upload_mbps: 9.25 }, EN, fmt);
  assert.deepEqual(rows.map((r) => r[2]), ["4 ms", "812 Mbit/s", "9.3 Mbit/s"]);

  const rec = {
    model: "tiny.en", precision: "int8", threads: 1, streams: 9, partial_interval_ms: 500, realtime: true,
    reasons: { model: "most accurate", threads: "most streams", streams: "two slots", partial_interval_ms: "half" },
  };
  const recRows = N.recommendationRows({ state: "fresh", message: "", recommendation: rec }, EN);
  assert.deepEqual(recRows.map((r) => r[2]), [
    "tiny.en int8 — most accurate", "1 — most streams", "9 — two slots", "500 ms — half",
  ]);
  assert.deepEqual(N.recommendationRows({ state: "missing", message: "run doctor --benchmark", recommendation: null }, EN),
    [["profile", "Performance profile", "run doctor --benchmark"]]);
  assert.equal(N.recommendationRows({ ...{ recommendation: { ...rec, realtime: false } } }, EN)[0][2],
    "nothing measured keeps up with real time here");
  assert.deepEqual(N.recommendationRows(null, EN), []);
});
