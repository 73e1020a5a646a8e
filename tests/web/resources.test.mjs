import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const R = await import(web("js/resources.js"));
const { createTranslator } = await import(web("js/i18n.js"));
const { readFileSync } = await import("node:fs");
const { WEB_DIR } = await import("./helpers.mjs");
const path = await import("node:path");

const messages = (locale) => JSON.parse(readFileSync(path.join(WEB_DIR, "i18n", `${locale}.json`), "utf8"));
const EN = createTranslator(messages("en"), messages("en"), "en");
const PT = createTranslator(messages("pt-BR"), messages("en"), "pt-BR");

const NO_GPU = [
  { name: "cpu", available: true, reason: "" },
  { name: "gpu", available: false, reason: "no CUDA/ROCm/DirectML provider can create a session here (providers: CPUExecutionProvider)" },
];

test("device options: auto always, GPU disabled with the server's reason", () => {
  const options = R.deviceOptions(NO_GPU);
  assert.deepEqual(options.map((o) => [o.value, o.available]), [["auto", true], ["cpu", true], ["gpu", false]]);
  assert.match(options[2].reason, /no CUDA\/ROCm\/DirectML provider/);
  const gpu = R.deviceOptions([{ name: "cpu", available: true }, { name: "GPU", available: true }]);
  assert.deepEqual(gpu.map((o) => o.available), [true, true, true]);
  assert.equal(gpu[2].reason, "");
});

test("device options before the server answered: CPU and auto, GPU held back", () => {
  assert.deepEqual(R.deviceOptions(undefined).map((o) => [o.value, o.available]), [["auto", true], ["cpu", true], ["gpu", false]]);
});

test("a saved device stays only while available; auto sends nothing", () => {
  const options = R.deviceOptions(NO_GPU);
  assert.equal(R.normaliseDevice("gpu", options), "auto");
  assert.equal(R.normaliseDevice("CPU", options), "cpu");
  assert.equal(R.normaliseDevice("tpu", options), "auto");
  assert.equal(R.normaliseDevice(undefined, options), "auto");
  assert.deepEqual(R.deviceConfigField("auto"), {});
  assert.deepEqual(R.deviceConfigField("gpu"), { device: "gpu" });
  assert.deepEqual(R.deviceConfigField("cpu"), { device: "cpu" });
});

const STATS = {
  process_cpu_percent: 12.345,
  machine_cpu_percent: 40,
  process_rss_mb: 1536.4,
  memory_available_mb: 800.2,
  memory_total_mb: 16384,
  gpus: [],
  rtf: 0.1234,
  queue_depth: 2,
  final_latency_ms_p95: 1234.5,
};

test("resource rows: labelled, numbers per locale, no GPU rows without GPUs", () => {
  const rows = R.resourceRows(STATS, EN, "en");
  const byKey = Object.fromEntries(rows.map(([k, , v]) => [k, v]));
  assert.deepEqual(Object.keys(byKey), ["cpu_process", "cpu_machine", "ram_process", "ram_available", "rtf", "queue", "latency"]);
  assert.equal(byKey.cpu_process, "12.3 %");
  assert.equal(byKey.ram_process, "1.5 GB");
  assert.equal(byKey.ram_available, "800 MB of 16.0 GB");
  assert.equal(byKey.rtf, "0.12");
  assert.equal(byKey.latency, "1,235 ms");
  assert.equal(rows[0][1], "CPU (server process)");
  const pt = Object.fromEntries(R.resourceRows(STATS, PT, "pt-BR").map(([k, l, v]) => [k, [l, v]]));
  assert.deepEqual(pt.cpu_process, ["CPU (processo do servidor)", "12,3 %"]);
  assert.equal(pt.latency[1], "1.235 ms");
  assert.equal(pt.ram_available[1], "800 MB de 16,0 GB");
});

test("resource rows: one pair per GPU, numbered when there are several", () => {
  const gpu = (k) => ({ index: String(k), name: "T4", utilization_percent: 50 + k, memory_used_mb: 2048, memory_total_mb: 16384 });
  const one = R.resourceRows({ ...STATS, gpus: [gpu(0)] }, EN, "en");
  assert.deepEqual(one.filter(([k]) => k.startsWith("gpu")).map(([, l, v]) => [l, v]), [["GPU use", "50.0 %"], ["GPU memory", "2.0 GB of 16.0 GB"]]);
  const two = R.resourceRows({ ...STATS, gpus: [gpu(0), gpu(1)] }, EN, "en");
  assert.deepEqual(two.filter(([k]) => k.startsWith("gpu")).map(([, l]) => l), ["GPU use 1", "GPU memory 1", "GPU use 2", "GPU memory 2"]);
});

test("resource rows leave out what an older server does not send", () => {
  assert.deepEqual(R.resourceRows({ rtf: 0.5 }, EN, "en").map(([k]) => k), ["rtf"]);
  assert.deepEqual(R.resourceRows(undefined, EN, "en"), []);
});

test("each engine figure is shown once: the live indicators have it, the system list skips it", () => {
  const stats = { ...STATS, final_latency_ms_p50: 612, active_streams: 3 };
  const rows = R.resourceRows(stats, EN, "en");
  const byKey = Object.fromEntries(rows.map(([k, l, v]) => [k, [l, v]]));
  assert.deepEqual(byKey.latency_p50, ["Final latency (median)", "612 ms"]);
  assert.deepEqual(byKey.streams, ["Active streams", "3"]);
  for (const key of ["rtf", "queue_depth", "final_latency_ms_p50", "final_latency_ms_p95", "active_streams"]) {
    assert.ok(R.LIVE_STATS_KEYS.has(key), key);
  }
  assert.equal(new Set(rows.map(([, label]) => label)).size, rows.length, "a label twice");
});

test("loaded models: one line each; their engine figures only when several are loaded", () => {
  const model = (name, rtf) => ({
    name, precision: "int8", device: "cpu", state: "loaded", sessions: 1, ram_mb: 200,
    default: true, load_s: 0.5, active_streams: 1, queue_depth: 0, rtf, final_latency_ms_p95: 20, overloaded: false,
  });
  assert.deepEqual(R.loadedModelRows([model("tiny.en", 0.02)], EN, "en"), [
    ["models.0", "Loaded model tiny.en", "int8 · cpu · loaded · sessions: 1 · 200 MB"],
  ]);
  const two = R.loadedModelRows([model("tiny.en", 0.02), model("base", 0.5)], PT, "pt-BR");
  assert.deepEqual(two.map(([, l]) => l), ["Modelo carregado tiny.en", "Modelo carregado base"]);
  assert.match(two[1][2], /Fator de tempo real 0,50 · Fila 0$/);
  assert.deepEqual(R.loadedModelRows(undefined, EN, "en"), []);
});

test("device summary for the system list", () => {
  assert.equal(R.deviceSummary(R.deviceOptions(NO_GPU), EN), "CPU, GPU (unavailable)");
  assert.equal(R.deviceSummary(R.deviceOptions(NO_GPU), PT), "CPU, GPU (indisponível)");
});

test("this stream: idle before any stream, live figures while one runs, ended after Stop", () => {
  const ms = (x) => `${x} ms`;
  const idle = R.streamRows({ state: "idle", ack: { lag_ms: 40 } }, EN, ms);
  assert.deepEqual(idle, [
    ["state", "State", "No stream yet"],
    ["lag", "Server lag", "—"],
  ]);
  const rtc = { lost_ms: 20, dropped_ms: 0 };
  const live = R.streamRows({ state: "live", ack: { lag_ms: 40 }, rtc }, EN, ms);
  assert.deepEqual(live.map((r) => r[2]), ["Streaming", "40 ms", "20 ms", "0 ms"]);
  const ended = R.streamRows({ state: "ended", ack: { lag_ms: 40 }, rtc }, EN, ms);
  assert.deepEqual(ended.map((r) => r[2]), ["Ended (its last figures)", "40 ms", "20 ms", "0 ms"]);
  assert.equal(R.streamRows({ state: "ended" }, PT, ms)[0][2], "Encerrado (últimos valores)");
  assert.equal(R.streamRows({ state: "bogus" }, EN, ms)[0][2], "No stream yet");
  for (const state of R.STREAM_STATES) assert.ok(EN.has(`live.state_${state}`) && PT.has(`live.state_${state}`));
});

