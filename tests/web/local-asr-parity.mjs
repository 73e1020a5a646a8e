// The page's local transcription engine against the server's, on the clips and expectations
// that test_local_asr_parity.py writes to $AUDIOTOTEXT_LOCAL_ASR_FIXTURE (not a *.test.mjs:
// it needs that file).
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import test from "node:test";
import { nodeOrt, web } from "./helpers.mjs";

const { logMel, melFilters } = await import(web("js/log-mel.js"));
const { LocalWhisper } = await import(web("js/whisper-local.js"));

const fixturePath = process.env.AUDIOTOTEXT_LOCAL_ASR_FIXTURE;
assert.ok(fixturePath, "AUDIOTOTEXT_LOCAL_ASR_FIXTURE is not set: run tests/web/test_local_asr_parity.py");
const fixture = JSON.parse(readFileSync(fixturePath, "utf8"));
const f32 = (b64) => {
  const bytes = Buffer.from(b64, "base64");
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
};
const clips = fixture.clips.map((c) => ({ ...c, audio: f32(c.audio_f32), mel: f32(c.mel_f32) }));

test("log-mel equals audio/features.py within 1e-4", () => {
  assert.equal(melFilters(80).length, 80);
  for (const clip of clips) {
    const got = logMel(clip.audio, { nMels: 80, paddingSamples: 160 });
    assert.equal(got.frames, clip.mel_frames);
    let worst = 0;
    let sum = 0;
    for (let i = 0; i < got.data.length; i++) {
      const d = Math.abs(got.data[i] - clip.mel[i]);
      worst = Math.max(worst, d);
      sum += d;
    }
    console.log(`${clip.sentence.slice(0, 24)}…: ${got.frames} frames, largest difference ${worst.toExponential(2)}, mean ${(sum / got.data.length).toExponential(2)}`);
    assert.ok(worst < 1e-4, `largest difference ${worst}`);
  }
});

const { LogitRules } = await import(web("js/whisper-local.js"));
const { LocalSession } = await import(web("js/local-asr-session.js"));
const { WhisperVocabulary } = await import(web("js/whisper-tokens.js"));
const modelDir = fixture.cases.find((c) => c.precision === "fp32").dir;
const vocab = new WhisperVocabulary(
  JSON.parse(readFileSync(path.join(modelDir, "tokenizer.json"), "utf8")),
  JSON.parse(readFileSync(path.join(modelDir, "model_config.json"), "utf8")),
);

test("byte-level BPE detokenisation equals the tokenizers library's", () => {
  assert.ok(fixture.detokenise.length >= 2);
  for (const { ids, text } of fixture.detokenise) assert.equal(vocab.decode(ids), text);
});

test("Whisper's logit rules forbid what decoding.py's forbid", () => {
  for (const kase of fixture.rules) {
    const logits = f32(kase.logits);
    new LogitRules(vocab, { timestamps: kase.timestamps }).mask(logits, kase.seq, kase.step);
    const want = Buffer.from(kase.forbidden, "base64");
    const differ = [];
    for (let k = 0; k < logits.length; k++) if ((logits[k] === -Infinity) !== (want[k] === 1)) differ.push(k);
    assert.deepEqual(differ.slice(0, 10), [], `seq ${kase.seq} step ${kase.step}: ${differ.length} tokens differ`);
  }
  // The last case was made so that the timestamps win: every text token is forbidden.
  const forced = fixture.rules.at(-1);
  assert.ok(Buffer.from(forced.forbidden, "base64").subarray(0, vocab.eot).every((b) => b === 1));
});

const ort = await nodeOrt();
const results = [];
test.after(() => {
  if (process.env.AUDIOTOTEXT_LOCAL_ASR_OUT) writeFileSync(process.env.AUDIOTOTEXT_LOCAL_ASR_OUT, JSON.stringify(results));
});
for (const kase of fixture.cases) {
  test(`greedy tokens equal the server's: tiny.en ${kase.precision}, timestamps ${kase.timestamps}`, async () => {
    const files = {};
    for (const name of ["encoder.onnx", "decoder.onnx", "decoder.onnx.data", "tokenizer.json", "model_config.json"]) {
      try {
        files[name] = readFileSync(path.join(kase.dir, name));
      } catch {
        // decoder.onnx.data only exists beside the int8 decoder
      }
    }
    const engine = await LocalWhisper.create(ort, files);
    for (const [n, k] of kase.clips.entries()) {
      const clip = clips[k];
      const want = kase.expected[n];
      const got = await engine.transcribe(clip.audio, { timestamps: kase.timestamps, maxNewTokens: clip.max_new_tokens });
      console.log(`${kase.precision} ts=${kase.timestamps} ${JSON.stringify(got.text)} (${got.tokens.length} tokens, encode ${got.encodeMs.toFixed(0)} ms, decode ${got.decodeMs.toFixed(0)} ms)`);
      results.push({ precision: kase.precision, timestamps: kase.timestamps, clip: k, tokens: got.tokens, text: got.text, encodeMs: got.encodeMs, decodeMs: got.decodeMs });
      assert.equal(got.frames, want.frames);
      if (kase.exact) {
        assert.deepEqual(got.tokens, want.tokens, clip.sentence);
        assert.equal(got.text, want.text);
        assert.ok(Math.abs(got.noSpeechProb - want.no_speech_prob) < 1e-3, `${got.noSpeechProb} vs ${want.no_speech_prob}`);
      }
      if (kase.timestamps) {
        assert.ok(got.pieces.length >= 1 && got.pieces.every((p) => p.end >= p.start), JSON.stringify(got.pieces));
        // The pieces (and the text after the last timestamp pair) hold every word, in order.
        const parts = [...got.pieces, ...(got.rest ? [got.rest] : [])];
        assert.equal(parts.map((p) => p.text).join("").replace(/\s+/g, ""), got.text.replace(/\s+/g, ""));
      }
    }
  });
}

test("an utterance over 30 s is decoded window by window, each sentence once, in order", async () => {
  const kase = fixture.cases.find((c) => c.precision === "int8" && c.timestamps);
  const files = {};
  for (const name of ["encoder.onnx", "decoder.onnx", "decoder.onnx.data", "tokenizer.json", "model_config.json"]) {
    files[name] = readFileSync(path.join(kase.dir, name));
  }
  const engine = await LocalWhisper.create(ort, files);
  // The sentences' clips twice over (~40 s), fed in 1-s chunks as a microphone would.
  const sentences = fixture.sentences;
  const parts = [...sentences, ...sentences].map((k) => clips[k].audio);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const audio = new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    audio.set(p, at);
    at += p.length;
  }
  const messages = [];
  const session = new LocalSession(engine, { timestamps: true, maxNewTokens: null }, (m) => messages.push(m));
  for (let k = 0; k < total; k += 16000) {
    session.push(audio.subarray(k, Math.min(total, k + 16000)));
    await session.decode(false);
  }
  const beforeEnd = messages.length;
  await session.decode(true);
  const segments = messages.filter((m) => m.type === "segment");
  const done = messages.filter((m) => m.type === "done");
  console.log(segments.map((s) => `[${s.start.toFixed(2)}-${s.end.toFixed(2)}] ${s.text}`).join("\n"));
  assert.ok(beforeEnd > 0, "nothing was decoded before the utterance closed");
  assert.equal(done.length, 1);
  assert.ok(done[0].audioS >= total / 16000 - 1e-6, JSON.stringify(done[0]));
  for (let k = 1; k < segments.length; k++) assert.ok(segments[k].start >= segments[k - 1].start - 0.02, "times go back");
  assert.ok(segments.at(-1).end <= total / 16000 + 0.05);
  const heard = segments.map((s) => s.text).join(" ").toLowerCase();
  const count = (w) => heard.split(w).length - 1;
  // Each sentence spoken twice: its distinctive words heard twice, not more, not less.
  for (const w of ["stella", "station", "folder", "market"]) assert.equal(count(w), 2, `${w} in ${heard}`);
});
