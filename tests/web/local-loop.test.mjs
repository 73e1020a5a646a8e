// The local engine's loop guard (local-asr-session.js collapseLoop): a phrase the greedy
// decoder says twice at once at the end of a piece is said once; other text is untouched.
import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { collapseLoop } = await import(web("js/local-asr-session.js"));

test("a repeated closing phrase is said once, with the sentence's end kept", () => {
  assert.equal(
    collapseLoop("We will meet at the train station tomorrow morning, tomorrow morning."),
    "We will meet at the train station tomorrow morning.",
  );
  assert.equal(collapseLoop("bring the folder bring the folder bring the folder"), "bring the folder");
  assert.equal(collapseLoop("Thank you. Thank you."), "Thank you.");
});

test("text without an immediate repeat of 2+ words is unchanged", () => {
  for (const text of ["Please call Stella and ask her to bring these things.", "No, no, that is fine.", "very very good", ""]) {
    assert.equal(collapseLoop(text), text.trim());
  }
});

test("a closing utterance's unfinished rest that repeats its last piece is dropped", async () => {
  const { LocalSession } = await import(web("js/local-asr-session.js"));
  const piece = (text, start, end) => ({ text, start, end, tokens: [1] });
  const engine = {
    windowSeconds: 30,
    // Whisper looping after the last timestamp pair: the rest says the sentence again.
    transcribe: async (audio) => ({
      consumedS: audio.length / 16000,
      pieces: [piece("We will meet at the train station tomorrow morning.", 0.5, 3.2)],
      rest: piece("We will meet at the train station tomorrow morning,", 3.2, 6.0),
      noSpeechProb: 0.01,
      avgLogprob: -0.2,
    }),
  };
  const messages = [];
  const session = new LocalSession(engine, { timestamps: true, maxNewTokens: null }, (m) => messages.push(m));
  session.push(new Float32Array(16000 * 6));
  await session.decode(true);
  const texts = messages.filter((m) => m.type === "segment").map((m) => m.text);
  assert.deepEqual(texts, ["We will meet at the train station tomorrow morning."]);
});

test("one word said three times at the end is said once; twice is left alone", () => {
  assert.equal(
    collapseLoop("We will meet at the train station tomorrow morning, morning, morning"),
    "We will meet at the train station tomorrow morning",
  );
  assert.equal(collapseLoop("Tomorrow morning, morning, morning."), "Tomorrow morning.");
  assert.equal(collapseLoop("I think that that"), "I think that that");
});
