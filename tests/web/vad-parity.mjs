// The page's VAD (js/vad.js on the vendored ONNX Runtime Web, one thread as in Node) against
// the server's audio/vad.py on the same clip. Run by test_vad_parity.py, which writes the
// Python side's probabilities to $AUDIOTOTEXT_VAD_FIXTURE first (not a *.test.mjs: it needs
// that file).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import test from "node:test";
import { gunzipSync } from "node:zlib";
import { web } from "./helpers.mjs";

const { ORT_DIR } = await import(web("js/ort-runtime.js"));
const { FRAME_SAMPLES, FrameQueue, pcm16ToFloat, SileroVad, SpeechIndicator } = await import(web("js/vad.js"));

async function nodeOrt() {
  const ort = await import(new URL("ort.wasm.min.mjs", ORT_DIR).href);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmBinary = gunzipSync(readFileSync(new URL("ort-wasm-simd-threaded.wasm.gz", ORT_DIR)));
  return ort;
}

test("the page's VAD gives the server's speech probabilities on the same clip", async () => {
  const path = process.env.AUDIOTOTEXT_VAD_FIXTURE;
  assert.ok(path, "AUDIOTOTEXT_VAD_FIXTURE is not set: run tests/web/test_vad_parity.py");
  const fixture = JSON.parse(readFileSync(path, "utf8"));
  const pcm = Buffer.from(fixture.pcm16, "base64");
  const ort = await nodeOrt();
  const vad = await SileroVad.create(ort, readFileSync(new URL(web("../audio/assets/silero_vad.onnx"))));
  // As the worker gets it: 100-ms PCM16 chunks, whole frames scored as they fill.
  const queue = new FrameQueue();
  const got = [];
  const chunkBytes = fixture.chunk_samples * 2;
  for (let at = 0; at < pcm.length; at += chunkBytes) {
    const chunk = pcm.subarray(at, at + chunkBytes);
    queue.push(pcm16ToFloat(chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.length)));
    got.push(...(await vad.process(queue.take())));
  }
  const want = fixture.probabilities;
  assert.equal(got.length, want.length);
  assert.equal(got.length, Math.floor(pcm.length / 2 / FRAME_SAMPLES));
  let worst = 0;
  for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(got[k] - want[k]));
  console.log(`frames ${want.length}, largest difference ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-5, `largest difference ${worst}`);

  // The indicator turns on in the speech and off in the silence after it.
  const indicator = new SpeechIndicator();
  const events = got.map((p) => indicator.push(p)).filter(Boolean);
  assert.deepEqual(events.map((e) => e.kind).slice(0, 2), ["BEGIN", "END"]);
  assert.ok(Math.abs(events[0].timeS - fixture.speech_start_s) < 0.2, JSON.stringify(events[0]));
  assert.ok(Math.abs(events[1].timeS - fixture.speech_end_s) < 0.4, JSON.stringify(events[1]));
});
