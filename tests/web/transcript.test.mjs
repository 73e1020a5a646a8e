import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { TranscriptModel } = await import(web("js/transcript.js"));

const result = (id, text, { final = false, start = 0, end = 1, segments } = {}) => ({
  utterance_id: id,
  is_final: final,
  stability: final ? 1 : 0.5,
  text,
  stable_text: "",
  segments: segments ?? [{ start_s: start, end_s: end, text }],
  audio_processed_s: end,
  words: [],
});

test("a partial replaces the partial, the final replaces the partial", () => {
  const m = new TranscriptModel();
  assert.equal(m.apply(result(1, " hello"), 1).change, "partial");
  assert.equal(m.apply(result(1, " hello wor"), 2).change, "partial");
  assert.deepEqual(m.list().map((u) => u.text), ["hello wor"]);
  const f = m.apply(result(1, " Hello world.", { final: true, start: 0.5, end: 1.7 }), 3);
  assert.equal(f.change, "final");
  assert.equal(m.list().length, 1);
  assert.equal(m.list()[0].text, "Hello world.");
  assert.equal(m.list()[0].is_final, true);
  assert.equal(m.list()[0].start_s, 0.5);
  assert.equal(m.list()[0].end_s, 1.7);
});

test("nothing replaces a final; repeated event_seq is dropped", () => {
  const m = new TranscriptModel();
  m.apply(result(1, "one", { final: true }), 1);
  assert.equal(m.apply(result(1, "one again"), 2).change, "ignored");
  assert.equal(m.apply(result(1, "one", { final: true }), 1).change, "ignored");
  assert.equal(m.apply(result(2, "two"), 2).change, "ignored", "event 2 was already applied");
  assert.equal(m.apply(result(2, "two"), 3).change, "partial");
  assert.deepEqual(
    m.list().map((u) => [u.utterance_id, u.text, u.is_final]),
    [
      [1, "one", true],
      [2, "two", false],
    ],
  );
});

test("utterances are ordered by id; finals() and partials() split them", () => {
  const m = new TranscriptModel();
  m.apply(result(3, "three"), 1);
  m.apply(result(2, "two", { final: true }), 2);
  assert.deepEqual(m.list().map((u) => u.utterance_id), [2, 3]);
  assert.deepEqual(m.finals().map((u) => u.text), ["two"]);
  assert.deepEqual(m.partials().map((u) => u.text), ["three"]);
});

test("an empty first partial shows nothing; an empty final still closes the utterance", () => {
  const m = new TranscriptModel();
  assert.equal(m.apply(result(1, "", { segments: [] }), 1).change, "ignored");
  m.apply(result(1, "hm"), 2);
  assert.equal(m.apply(result(1, "", { final: true, segments: [] }), 3).change, "final");
  assert.deepEqual(m.finals(), []);
  assert.equal(m.apply(result(1, "late"), 4).change, "ignored");
});

test("sessions: ids and event numbers restart, times follow the previous session", () => {
  const m = new TranscriptModel();
  m.beginSession(0);
  m.apply(result(1, "first", { final: true, start: 1, end: 2 }), 1);
  m.beginSession(5); // 5 s of audio were streamed in session 1
  assert.equal(m.apply(result(1, "second", { final: true, start: 0.5, end: 1.5 }), 1).change, "final");
  const [a, b] = m.finals();
  assert.equal(a.text, "first");
  assert.equal(b.text, "second");
  assert.equal(b.start_s, 5.5);
  assert.equal(b.segments[0].end_s, 6.5);
  assert.notEqual(a.key, b.key);
});

test("times come from segments, else words, else none", () => {
  const m = new TranscriptModel();
  m.apply({ ...result(1, "a"), segments: [], words: [{ text: "a", start_s: 2, end_s: 2.4 }] }, 1);
  assert.equal(m.list()[0].start_s, 2);
  m.apply({ ...result(2, "b"), segments: [], words: [] }, 2);
  assert.equal(m.list()[1].start_s, null);
});

test("clear empties everything and event numbers start again", () => {
  const m = new TranscriptModel();
  m.apply(result(1, "x", { final: true }), 7);
  m.clear();
  assert.deepEqual(m.list(), []);
  assert.equal(m.apply(result(1, "y"), 1).change, "partial");
});
