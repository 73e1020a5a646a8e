import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { AudioPrefix, MAX_PREFIX_S } = await import(web("js/rtc-prefix.js"));

// A 100-ms PCM16 chunk whose samples count on from `first` (so pieces can be told apart).
function chunk(first, samples = 1600) {
  const pcm = new Int16Array(samples);
  for (let i = 0; i < samples; i += 1) pcm[i] = (first + i) % 32768;
  return pcm.buffer;
}
const samplesOf = (pieces) => pieces.flatMap((p) => [...new Int16Array(p)]);

test("the prefix is every sample before the cut, the chunk the cut falls in up to it", () => {
  const p = new AudioPrefix();
  p.push(chunk(0), 0);
  p.push(chunk(1600), 0.1);
  assert.deepEqual(p.take(), [], "nothing before the cut is known");
  p.cut(0.2345); // 3752 samples
  assert.equal(p.complete, false, "the chunk the cut falls in has not come");
  const first = p.take();
  assert.equal(samplesOf(first).length, 3200);
  p.push(chunk(3200), 0.2);
  p.push(chunk(4800), 0.3); // after the cut: the track carries it
  const rest = p.take();
  assert.equal(p.complete, true);
  const all = samplesOf([...first, ...rest]);
  assert.equal(all.length, 3752);
  assert.deepEqual(all, [...Array(3752).keys()], "each sample once, in order");
  assert.equal(p.originS, 0);
  assert.deepEqual(JSON.parse(p.endMessage()), { prefix: { bytes: 7504 } });
});

test("a transport started mid-capture (a hand-back) starts its prefix at its first chunk", () => {
  const p = new AudioPrefix();
  p.push(chunk(0), 42.3);
  p.cut(42.4);
  assert.equal(p.originS, 42.3);
  assert.equal(samplesOf(p.take()).length, 1600);
  assert.equal(p.complete, true);
});

test("a connection up before any chunk: an empty prefix, stream time 0 at the cut", () => {
  const p = new AudioPrefix();
  p.cut(0.05);
  p.push(chunk(0), 0); // its part before the cut is before the stream's start
  p.push(chunk(1600), 0.1);
  assert.deepEqual(p.take(), []);
  assert.equal(p.complete, true);
  assert.equal(p.originS, 0.05);
  assert.deepEqual(JSON.parse(p.endMessage()), { prefix: { bytes: 0 } });
});

test("stopped before the connection came: complete with what was captured", () => {
  const p = new AudioPrefix();
  p.push(chunk(0), 0);
  p.push(chunk(1600, 800), 0.1); // the capture's last, partial chunk
  p.close();
  p.push(chunk(0), 0.15); // nothing after close
  assert.equal(p.complete, false, "the cut is not known yet");
  p.cut(3.0);
  assert.equal(samplesOf(p.take()).length, 2400);
  assert.equal(p.complete, true);
});

test("the prefix keeps at most the server's limit, the newest audio", () => {
  const p = new AudioPrefix();
  const n = MAX_PREFIX_S * 10 + 5;
  for (let i = 0; i < n; i += 1) p.push(chunk(0), i / 10);
  p.cut(n / 10);
  const pieces = p.take();
  assert.equal(pieces.length, MAX_PREFIX_S * 10);
  assert.ok(Math.abs(p.originS - 0.5) < 1e-9, p.originS);
  assert.equal(p.complete, true);
});
