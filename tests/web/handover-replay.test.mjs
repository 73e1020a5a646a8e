// Which kept chunks the local worker decodes after a hand-over (handover.js replayPlan):
// only the VAD's stretches of speech, each its own utterance; the silence between is kept
// out (decoded, Whisper writes "you" for it).
import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { replayPlan } = await import(web("js/handover.js"));

const chunks = (seconds) => Array(Math.round(seconds * 10)).fill(0.1);
// The chunks fed, as [first, last] capture times (s) per utterance.
function utterances(plan, fromS) {
  const out = [];
  plan.forEach((p, i) => {
    const at = Math.round((fromS + i * 0.1) * 10) / 10;
    if (p.closeBefore || (p.feed && !out.length)) out.push([]);
    if (p.feed) out.at(-1).push(at);
  });
  return out.filter((u) => u.length).map((u) => [u[0], u.at(-1)]);
}

test("the silence after the server's last final and between sentences is not decoded", () => {
  // Kept from 3.5 s (the server's last final), 20 s of it: a sentence at 9.5-12.5, silence.
  const log = [["BEGIN", 0.5], ["END", 3.8], ["BEGIN", 9.5], ["END", 12.5]];
  const plan = replayPlan(log, 3.5, chunks(20));
  // The VAD's END came 0.3 s after the server's final: the last moments of its words, not fed
  // (decoded alone, Whisper wrote "You").
  assert.deepEqual(utterances(plan, 3.5), [
    [8.5, 12.7], // a second before the speech, to 0.3 s after its end
  ]);
  assert.equal(plan.filter((p) => p.feed).length, 43);
});

test("speech that goes on a second past the server's last final is decoded from there", () => {
  const log = [["BEGIN", 0.5], ["END", 5.0]];
  assert.deepEqual(utterances(replayPlan(log, 3.5, chunks(5)), 3.5), [[3.5, 5.2]]);
});

test("speech still under way at the end stays open (live chunks go on feeding it)", () => {
  const plan = replayPlan([["BEGIN", 2.0]], 0, chunks(4));
  assert.deepEqual(utterances(plan, 0), [[1.0, 3.9]]);
  assert.ok(plan.at(-1).feed);
});

test("stretches closer than the lead-in are one utterance; none at all: nothing fed", () => {
  const log = [["BEGIN", 1.0], ["END", 2.0], ["BEGIN", 2.6], ["END", 3.0]];
  assert.deepEqual(utterances(replayPlan(log, 0, chunks(5)), 0), [[0.0, 3.2]]);
  assert.deepEqual(replayPlan([], 0, chunks(3)).filter((p) => p.feed), []);
  const before = [["BEGIN", 1.0], ["END", 2.0]]; // all before the kept audio: the server had it
  assert.deepEqual(replayPlan(before, 2.5, chunks(3)).filter((p) => p.feed), []);
});
