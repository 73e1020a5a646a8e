import assert from "node:assert/strict";
import test from "node:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { web, WEB_DIR } from "./helpers.mjs";

const H = await import(web("js/history.js"));
const { createTranslator } = await import(web("js/i18n.js"));
const messages = (locale) => JSON.parse(readFileSync(path.join(WEB_DIR, "i18n", `${locale}.json`), "utf8"));
const EN = createTranslator(messages("en"), messages("en"), "en");
const PT = createTranslator(messages("pt-BR"), messages("en"), "pt-BR");

const ROW = {
  session: {
    id: "a1b2c3d4e5f6",
    started_at: 1796652187.5,
    ended_at: 1796652200,
    model: "tiny.en",
    language: "en",
    transport: "webrtc",
    source: "stream",
  },
  segments: 3,
  duration_s: 12.4,
  preview: "Please call Stella.",
};

test("paths: paging, search words encoded, ids encoded, formats", () => {
  assert.equal(H.historyPaths.list(), "/history?limit=20&offset=0");
  assert.equal(H.historyPaths.list(5, 10), "/history?limit=5&offset=10");
  assert.equal(H.historyPaths.search("call & bring*"), "/history/search?q=call%20%26%20bring*&limit=20");
  assert.equal(H.historyPaths.one("a/b?c"), "/history/a%2Fb%3Fc?format=json");
  assert.equal(H.historyPaths.one("x", "srt"), "/history/x?format=srt");
  assert.deepEqual(H.HISTORY_FORMATS, ["txt", "srt", "vtt", "json"]);
});

test("snippet: the server's [brackets] become marked parts", () => {
  assert.deepEqual(H.snippetParts("please [call] Stella and [bring]"), [
    { text: "please ", mark: false },
    { text: "call", mark: true },
    { text: " Stella and ", mark: false },
    { text: "bring", mark: true },
  ]);
  assert.deepEqual(H.snippetParts("no match here"), [{ text: "no match here", mark: false }]);
  assert.deepEqual(H.snippetParts("[]odd [x"), [{ text: "odd [x", mark: false }]);
  assert.deepEqual(H.snippetParts(""), []);
});

test("a row: when and how long, model, language, transport, segments; live without an end", () => {
  const view = H.rowView(ROW, EN, "en");
  assert.equal(view.id, "a1b2c3d4e5f6");
  assert.match(view.title, / · 12 s$/);
  assert.match(view.title, /2026/);
  assert.equal(view.meta, "tiny.en · en · webrtc · 3 segments");
  assert.equal(view.live, false);
  const file = H.rowView({ ...ROW, session: { ...ROW.session, source: "file", transport: "", language: "", ended_at: null } }, PT, "pt-BR");
  assert.equal(file.meta, "tiny.en · arquivo · 3 segmentos");
  assert.equal(file.live, true);
  assert.equal(H.rowView({ session: {} }, EN, "en").meta, "stream · 0 segments");
});

test("where the list comes from, and why memory answered", () => {
  assert.match(H.sourceNote({ persistent: true, alert: null }, EN), /history file/);
  assert.match(H.sourceNote({ persistent: false, alert: null }, EN), /memory/);
  const note = H.sourceNote({ persistent: false, alert: "the history file /x is locked" }, EN);
  assert.match(note, /memory.*Note: the history file \/x is locked/);
});

test("export file names: start time and the id's start, safe characters only", () => {
  const name = H.exportFilename(ROW.session, "srt");
  assert.match(name, /^transcript-\d{8}-\d{6}-a1b2c3d4\.srt$/);
  assert.match(H.exportFilename({ id: "../..//x", started_at: 0 }, "txt"), /^transcript-\d{8}-\d{6}-x\.txt$/);
  assert.match(H.exportFilename({}, "json"), /^transcript-\d{8}-\d{6}\.json$/);
});

test("segment times", () => {
  assert.equal(H.segmentTimes({ start_s: 3.24, end_s: 65 }), "0:03.2 – 1:05.0");
  assert.equal(H.segmentTimes({}), "0:00.0 – 0:00.0");
});

test("counts: one segment, many segments, in both languages", () => {
  assert.equal(H.plural(EN, "history.segments", 1), "1 segment");
  assert.equal(H.plural(EN, "history.segments", 0), "0 segments");
  assert.equal(H.plural(PT, "history.segments", 2), "2 segmentos");
  assert.equal(H.plural(EN, "history.hits", 1, { query: "noon" }), "1 segment found for “noon”.");
  assert.equal(H.rowView({ ...ROW, segments: 1 }, EN, "en").meta, "tiny.en · en · webrtc · 1 segment");
});
