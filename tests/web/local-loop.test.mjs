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
