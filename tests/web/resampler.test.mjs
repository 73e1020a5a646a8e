import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { Resampler, Pcm16Chunker, encodePcm16, designLowpass, besselI0, gcd } = await import(
  web("js/resampler.js")
);

function sine(rate, hz, seconds, amplitude = 0.5) {
  const n = Math.round(rate * seconds);
  const x = new Float32Array(n);
  for (let k = 0; k < n; k++) x[k] = amplitude * Math.sin((2 * Math.PI * hz * k) / rate);
  return x;
}

/** Feeds the input in AudioWorklet-sized blocks (128) or the given block sizes. */
function run(resampler, input, blocks = [128]) {
  const out = [];
  let k = 0;
  let b = 0;
  while (k < input.length) {
    const size = blocks[b++ % blocks.length];
    out.push(...resampler.process(input.subarray(k, k + size)));
    k += size;
  }
  return Float64Array.from(out);
}

function rms(x) {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s / x.length);
}

/** Frequency from interpolated rising zero crossings. */
function zeroCrossingHz(x, rate) {
  const times = [];
  for (let k = 1; k < x.length; k++) {
    if (x[k - 1] < 0 && x[k] >= 0) times.push(k - 1 + -x[k - 1] / (x[k] - x[k - 1]));
  }
  return ((times.length - 1) * rate) / (times[times.length - 1] - times[0]);
}

/** Amplitude and phase of the hz component by projection on sin and cos. */
function project(x, rate, hz, from) {
  let s = 0;
  let c = 0;
  let n = 0;
  for (let k = from; k < x.length; k++) {
    s += x[k] * Math.sin((2 * Math.PI * hz * k) / rate);
    c += x[k] * Math.cos((2 * Math.PI * hz * k) / rate);
    n += 1;
  }
  return { amplitude: (2 * Math.hypot(s, c)) / n, phase: Math.atan2(c, s) };
}

test("maths helpers", () => {
  assert.equal(gcd(48000, 16000), 16000);
  assert.equal(gcd(44100, 16000), 100);
  assert.equal(besselI0(0), 1);
  assert.ok(Math.abs(besselI0(1) - 1.2660658777520082) < 1e-12);
});

test("design: the cut-off sits between the speech band and 8 kHz", () => {
  const d = designLowpass(48000, 16000);
  assert.ok(Math.abs(d.cutoff * 48000 - 7400) < 1); // 6.8 kHz pass, 8 kHz stop
  assert.ok(d.half >= 50 && d.half <= 120, `half ${d.half}`);
  const r = new Resampler(48000, 16000);
  assert.equal(r.L, 1);
  assert.equal(r.M, 3);
  for (let p = 0; p < r.P; p++) {
    const row = r.table.subarray(p * r.taps, (p + 1) * r.taps);
    const sum = row.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5, "unit gain at DC");
  }
});

test("48 kHz 1 kHz sine -> 16 kHz: same frequency, same amplitude, aligned in time", () => {
  const r = new Resampler(48000, 16000);
  const y = run(r, sine(48000, 1000, 1.0, 0.5));
  // 16000 outputs per second, less the filter's look-ahead (half input samples).
  assert.ok(Math.abs(y.length - 16000) <= Math.ceil(r.half / 3) + 1, `length ${y.length}`);
  const skip = 200; // past the start-up transient
  const steady = y.subarray(skip);
  assert.ok(Math.abs(zeroCrossingHz(steady, 16000) - 1000) < 0.1);
  const { amplitude } = project(y, 16000, 1000, skip);
  assert.ok(Math.abs(amplitude - 0.5) < 0.5 * 0.005, `amplitude ${amplitude}`); // within 0.05 dB
  // Output n is input time 3n: the filter is centred, so no delay and no drift.
  let worst = 0;
  for (let n = skip; n < y.length; n++) {
    worst = Math.max(worst, Math.abs(y[n] - 0.5 * Math.sin((2 * Math.PI * 1000 * n) / 16000)));
  }
  assert.ok(worst < 1e-3, `max error ${worst}`);
});

test("a 10 kHz tone at 48 kHz is attenuated by more than 40 dB", () => {
  const r = new Resampler(48000, 16000);
  const x = sine(48000, 10000, 1.0, 0.5);
  const y = run(r, x);
  const db = 20 * Math.log10(rms(y.subarray(200)) / rms(x));
  assert.ok(db < -40, `attenuation ${db.toFixed(1)} dB`);
  // and well beyond that: the design asks for 80 dB
  assert.ok(db < -70, `attenuation ${db.toFixed(1)} dB`);
});

test("tones just above 8 kHz are stopped; 6 kHz passes", () => {
  for (const [hz, check] of [
    [8500, (db) => db < -60],
    [12000, (db) => db < -60],
    [6000, (db) => Math.abs(db) < 0.1],
  ]) {
    const x = sine(48000, hz, 0.5, 0.5);
    const y = run(new Resampler(48000, 16000), x);
    const db = 20 * Math.log10(rms(y.subarray(200)) / rms(x));
    assert.ok(check(db), `${hz} Hz: ${db.toFixed(2)} dB`);
  }
});

test("44.1 kHz -> 16 kHz (160/441 polyphase) keeps a 1 kHz sine", () => {
  const r = new Resampler(44100, 16000);
  assert.equal(r.L, 160);
  assert.equal(r.M, 441);
  const y = run(r, sine(44100, 1000, 1.0, 0.25), [128, 77, 300, 1]);
  assert.ok(Math.abs(zeroCrossingHz(y.subarray(200), 16000) - 1000) < 0.1);
  let worst = 0;
  for (let n = 200; n < y.length; n++) {
    worst = Math.max(worst, Math.abs(y[n] - 0.25 * Math.sin((2 * Math.PI * 1000 * n) / 16000)));
  }
  assert.ok(worst < 1e-3, `max error ${worst}`);
});

test("block size does not change the output (streaming state is exact)", () => {
  const x = sine(48000, 440, 0.3, 0.7);
  const a = run(new Resampler(48000, 16000), x, [128]);
  const b = run(new Resampler(48000, 16000), x, [1, 5, 1000, 3, 127]);
  assert.equal(a.length, b.length);
  for (let k = 0; k < a.length; k++) assert.ok(Math.abs(a[k] - b[k]) < 1e-6);
});

test("flush returns the look-ahead tail; 16 kHz input passes through", () => {
  const r = new Resampler(48000, 16000);
  const y = run(r, sine(48000, 1000, 0.1));
  const tail = r.flush();
  assert.equal(y.length + tail.length, 1600); // 0.1 s at 16 kHz, no more, no less
  const odd = new Resampler(44100, 16000);
  const z = run(odd, sine(44100, 1000, 0.05), [128]);
  assert.equal(z.length + odd.flush().length, Math.ceil((2205 * 160) / 441));
  const same = new Resampler(16000, 16000);
  const x = Float32Array.from([0.1, -0.2, 0.3]);
  assert.deepEqual([...same.process(x)], [...x]);
});

test("8 kHz is upsampled to 16 kHz", () => {
  const r = new Resampler(8000, 16000);
  const y = run(r, sine(8000, 500, 1.0, 0.5));
  // 2 outputs per input, less the look-ahead of `half` inputs
  assert.ok(y.length <= 16000 && y.length >= 16000 - 2 * r.half - 2, `length ${y.length}`);
  assert.ok(Math.abs(zeroCrossingHz(y.subarray(200), 16000) - 500) < 0.1);
  assert.ok(Math.abs(project(y, 16000, 500, 200).amplitude - 0.5) < 0.005);
});

test("PCM16: little-endian, clipped, full scale", () => {
  const bytes = encodePcm16(Float32Array.from([0, 1, -1, 0.5, 2, -2, Number.NaN]));
  const view = new DataView(bytes);
  const values = [0, 1, 2, 3, 4, 5, 6].map((k) => view.getInt16(2 * k, true));
  assert.deepEqual(values, [0, 32767, -32768, 16384, 32767, -32768, 0]);
  assert.deepEqual([...new Uint8Array(bytes, 2, 2)], [0xff, 0x7f]);
});

test("chunker: 100 ms at 16 kHz is 3200 bytes; the rest comes out on flush", () => {
  const c = new Pcm16Chunker(1600);
  const chunks = [];
  for (let k = 0; k < 37; k++) chunks.push(...c.push(new Float32Array(128).fill(0.25)));
  assert.equal(chunks.length, Math.floor((37 * 128) / 1600));
  for (const chunk of chunks) assert.equal(chunk.byteLength, 3200);
  const last = c.flush();
  assert.equal(last.byteLength, 2 * ((37 * 128) % 1600));
  assert.equal(c.flush(), null);
});
