import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const F = await import(web("js/format.js"));
const { createTranslator } = await import(web("js/i18n.js"));

const t = createTranslator({}, { "sys.cpu_model": "CPU model", "sys.memory_total_mb": "Memory", "sys.gpus": "GPUs", "common.yes": "yes", "common.no": "no" });

test("flatten nested system documents", () => {
  const rows = F.flatten({
    hardware: { cpu_model: "Xeon", providers: ["CPUExecutionProvider"], flags: [] },
    gpus: [{ name: "A" }],
    rtf: 0.1,
    empty: {},
  });
  assert.deepEqual(rows, [
    ["hardware.cpu_model", "Xeon"],
    ["hardware.providers", "CPUExecutionProvider"],
    ["hardware.flags", ""],
    ["gpus.0.name", "A"],
    ["rtf", 0.1],
    ["empty", ""],
  ]);
});

test("labels: known keys translated, others humanised", () => {
  assert.equal(F.label("hardware.cpu_model", t), "CPU model");
  assert.equal(F.label("memoryTotalMb", t), "Memory");
  assert.equal(F.label("some_new_field", t), "Some new field");
  assert.equal(F.humanizeKey("stats.openStreams"), "Stats open streams");
});

test("values formatted by their key", () => {
  assert.equal(F.formatValue("memory_total_mb", 16384, t, "en"), "16 GB");
  assert.equal(F.formatValue("size_bytes", 1536, t, "en"), "1.5 KB");
  assert.equal(F.formatValue("final_latency_ms_p95", 123.4, t, "en"), "123 ms");
  assert.equal(F.formatValue("uptime_s", 200, t, "en"), "3 min 20 s");
  assert.equal(F.formatValue("rtf", 0.12345, t, "en"), "0.123");
  assert.equal(F.formatValue("overloaded", false, t, "en"), "no");
  assert.equal(F.formatValue("streams_total", "12", t, "en"), "12");
  assert.equal(F.formatValue("cpu_model", "Intel", t, "en"), "Intel");
  assert.equal(F.formatValue("x", null, t, "en"), "—");
});

test("clock and languages", () => {
  assert.equal(F.formatClock(62.34), "1:02.3");
  assert.equal(F.formatClock(0), "0:00.0");
  assert.equal(F.formatLanguages(["en"]), "en");
  assert.equal(F.formatLanguages("en, de"), "en, de");
  assert.equal(F.formatLanguages(Array.from({ length: 99 }, (_, k) => `l${k}`), (k, p) => `${p.count} languages`), "99 languages");
  assert.equal(F.formatLanguages(undefined), "—");
});
