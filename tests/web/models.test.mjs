import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const M = await import(web("js/models.js"));

const DOC = {
  current: "tiny.en",
  models: [
    { name: "tiny", precision: null, cached: false, size_mb: 151, download_mb: 151, ram_mb: 200, multilingual: true, languages: [], current: false },
    { name: "tiny.en", precision: "int8", cached: true, size_mb: 75.2, download_mb: 151, ram_mb: 200, multilingual: false, languages: ["en"], current: true, loaded: true },
    { name: "tiny.en", precision: "fp32", cached: true, size_mb: 150.9, download_mb: 151, ram_mb: 200, multilingual: false, languages: ["en"], current: false },
    { name: "lab/whisper-de", precision: "int8", cached: true, size_mb: 30, download_mb: 0, ram_mb: 0, multilingual: true, languages: ["pt", "de", "en"], current: false },
  ],
};

test("models grouped by name: cached first (the server's own leading), precisions merged", () => {
  const models = M.groupModels(DOC);
  assert.deepEqual(
    models.map((m) => [m.name, m.cached]),
    [["tiny.en", true], ["lab/whisper-de", true], ["tiny", false]],
  );
  const tinyEn = models[0];
  assert.deepEqual(tinyEn.precisions, ["int8", "fp32"]);
  assert.equal(tinyEn.sizeMb, 150.9);
  assert.ok(tinyEn.current && tinyEn.loaded && !tinyEn.multilingual);
  assert.equal(models[2].sizeMb, 151);
  assert.deepEqual(models.map((m) => m.usable), [true, true, false]);
  // The model the server runs is usable even when the listed cache lacks it.
  const served = M.groupModels({ current: "base", models: [{ name: "tiny", cached: false }, { name: "base", cached: false }] });
  assert.deepEqual(served.map((m) => [m.name, m.usable]), [["base", true], ["tiny", false]]);
  assert.deepEqual(M.groupModels({}), []);
  assert.deepEqual(M.groupModels(null), []);
});

test("languages and tasks a model allows", () => {
  const [tinyEn, de, tiny] = M.groupModels(DOC);
  assert.deepEqual(M.languageChoices(tinyEn), ["auto", "en"]);
  assert.deepEqual(M.languageChoices(de), ["auto", "de", "en", "pt"]);
  assert.deepEqual(M.languageChoices(tiny), ["auto"]); // not downloaded: codes unknown yet
  assert.deepEqual(M.languageChoices(null), ["auto"]);
  assert.deepEqual(M.taskChoices(tinyEn), ["transcribe"]);
  assert.deepEqual(M.taskChoices(de), ["transcribe", "translate"]);
});

test("a choice is kept valid for the model", () => {
  const [tinyEn, de] = M.groupModels(DOC);
  assert.deepEqual(M.normaliseChoice(tinyEn, "de", "translate"), { language: "auto", task: "transcribe" });
  assert.deepEqual(M.normaliseChoice(de, "de", "translate"), { language: "de", task: "translate" });
  assert.deepEqual(M.normaliseChoice(de, "xx", "sing"), { language: "auto", task: "transcribe" });
});

test("stream config fields in protobuf's JSON mapping", () => {
  assert.deepEqual(M.streamConfigFields({ model: "tiny", language: "pt", task: "translate" }), {
    model: "tiny",
    language: "pt",
    task: "TRANSLATE",
  });
  assert.deepEqual(M.streamConfigFields({ model: "tiny.en", language: "auto", task: "transcribe" }), {
    model: "tiny.en",
    task: "TRANSCRIBE",
  });
  assert.deepEqual(M.streamConfigFields(), { task: "TRANSCRIBE" });
});

test("server-sent events parsed across chunk boundaries, CRLF and comments", () => {
  const parser = new M.SseParser();
  const body =
    'event: progress\ndata: {"stage": "download", "percent": 5}\n\n' +
    ": keep-alive\n\n" +
    'event: note\r\ndata: {"message": "a"}\r\n\r\n' +
    "data: line one\ndata: line two\n\n" +
    'event: done\ndata: {"already_cached": false}\n\n';
  const events = [];
  for (let i = 0; i < body.length; i += 7) events.push(...parser.feed(body.slice(i, i + 7)));
  assert.deepEqual(events, [
    { event: "progress", data: { stage: "download", percent: 5 } },
    { event: "note", data: { message: "a" } },
    { event: "message", data: "line one\nline two" },
    { event: "done", data: { already_cached: false } },
  ]);
  assert.deepEqual(parser.feed('event: done\ndata: {"x": 1}'), []); // incomplete: kept
  assert.deepEqual(parser.feed("\n\n"), [{ event: "done", data: { x: 1 } }]);
});

test("pull progress: download, conversion, notes, done, errors", () => {
  let s = M.pullProgress({ event: "progress", data: { stage: "download", percent: 42.5, description: "model.safetensors" } });
  assert.deepEqual(s, { stage: "download", percent: 42.5, description: "model.safetensors", done: false, error: null });
  s = M.pullProgress({ event: "note", data: { message: "trying the next source" } }, s);
  assert.equal(s.percent, 42.5);
  s = M.pullProgress({ event: "progress", data: { stage: "convert", percent: null, task: "build" } }, s);
  assert.deepEqual([s.stage, s.percent, s.description], ["convert", null, "build"]);
  const done = M.pullProgress({ event: "done", data: {} }, s);
  assert.deepEqual([done.stage, done.percent, done.done, done.error], ["done", 100, true, null]);
  const failed = M.pullProgress({ event: "error", data: { error: { code: "UNAVAILABLE", message: "no network" } } }, s);
  assert.deepEqual([failed.done, failed.error, failed.stage], [true, "no network", "convert"]);
  assert.equal(failed.cancelled, false);
  const stopped = M.pullProgress({ event: "error", data: { error: { code: "ABORTED", message: "cancelled" } } }, s);
  assert.deepEqual([stopped.done, stopped.cancelled], [true, true]);
});
