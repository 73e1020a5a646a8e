import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { timestamp, toSrt, toVtt, toText, toJson, cues } = await import(web("js/exporters.js"));
const { TranscriptModel } = await import(web("js/transcript.js"));

function sample() {
  const m = new TranscriptModel();
  m.apply(
    {
      utterance_id: 1,
      is_final: true,
      text: " Hello world. How are you?",
      segments: [
        { start_s: 1.234, end_s: 2.5, text: " Hello world." },
        { start_s: 2.5, end_s: 3.9996, text: " How are you?" },
      ],
      words: [],
    },
    1,
  );
  m.apply(
    {
      utterance_id: 2,
      is_final: true,
      text: " a < b & c --> d",
      segments: [{ start_s: 3725.5, end_s: 3727, text: " a < b & c --> d" }],
      words: [],
    },
    2,
  );
  m.apply({ utterance_id: 3, is_final: false, text: " still talk", segments: [], words: [] }, 3);
  return m.list();
}

test("timestamps", () => {
  assert.equal(timestamp(1.234), "00:00:01,234");
  assert.equal(timestamp(1.234, "."), "00:00:01.234");
  assert.equal(timestamp(0), "00:00:00,000");
  assert.equal(timestamp(59.9996), "00:01:00,000");
  assert.equal(timestamp(3725.5), "01:02:05,500");
  assert.equal(timestamp(360000), "100:00:00,000");
  assert.equal(timestamp(-1), "00:00:00,000");
});

test("srt: numbered cues, one per segment, finals only", () => {
  assert.equal(
    toSrt(sample()),
    "1\n00:00:01,234 --> 00:00:02,500\nHello world.\n\n" +
      "2\n00:00:02,500 --> 00:00:04,000\nHow are you?\n\n" +
      "3\n01:02:05,500 --> 01:02:07,000\na < b & c -> d\n",
  );
});

test("vtt: header, dots, escaped text", () => {
  assert.equal(
    toVtt(sample()),
    "WEBVTT\n\n" +
      "00:00:01.234 --> 00:00:02.500\nHello world.\n\n" +
      "00:00:02.500 --> 00:00:04.000\nHow are you?\n\n" +
      "01:02:05.500 --> 01:02:07.000\na &lt; b &amp; c -&gt; d\n",
  );
  assert.equal(toVtt([]), "WEBVTT\n");
  assert.equal(toSrt([]), "");
});

test("txt: one line per final utterance", () => {
  assert.equal(toText(sample()), "Hello world. How are you?\na < b & c --> d\n");
  assert.equal(toText([]), "");
});

test("json: finals with times, segments and words", () => {
  const doc = JSON.parse(toJson(sample(), { created: "2026-01-01T00:00:00Z" }));
  assert.equal(doc.created, "2026-01-01T00:00:00Z");
  assert.equal(doc.utterances.length, 2);
  assert.deepEqual(doc.utterances[0], {
    session: 0,
    utterance_id: 1,
    start_s: 1.234,
    end_s: 4,
    text: "Hello world. How are you?",
    segments: [
      { start_s: 1.234, end_s: 2.5, text: " Hello world." },
      { start_s: 2.5, end_s: 4, text: " How are you?" },
    ],
    words: [],
  });
});

test("an utterance without times follows the previous cue", () => {
  const list = [
    { is_final: true, text: "timed", start_s: 1, end_s: 2, segments: [] },
    { is_final: true, text: "untimed", start_s: null, end_s: null, segments: [] },
  ];
  assert.deepEqual(cues(list), [
    { start: 1, end: 2, text: "timed" },
    { start: 2, end: 2, text: "untimed" },
  ]);
});
