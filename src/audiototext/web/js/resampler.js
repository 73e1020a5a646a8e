// Sample-rate conversion for the microphone: a polyphase windowed-sinc (Kaiser) resampler,
// and the PCM16 framing of its output. Pure maths, no browser API: the AudioWorklet
// (capture-worklet.js) runs it, and Node's test runner checks it (tests/web).
//
// Output sample n sits at input time n * inRate / outRate exactly (integer arithmetic on the
// reduced ratio L/M), so stream time never drifts. The low-pass passes 0..0.85 x the lower
// Nyquist frequency and stops everything from that Nyquist frequency on by `attenuationDb`
// (80 dB by default): at 48 kHz -> 16 kHz, flat to 6.8 kHz, -80 dB from 8 kHz.

/** Greatest common divisor of two non-negative integers. */
export function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Zeroth-order modified Bessel function of the first kind (power series). */
export function besselI0(x) {
  const q = (x * x) / 4;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 64; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

/** Kaiser's beta for a stopband attenuation in dB. */
export function kaiserBeta(attenuationDb) {
  const a = attenuationDb;
  if (a > 50) return 0.1102 * (a - 8.7);
  if (a >= 21) return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21);
  return 0;
}

/** Kaiser's estimate of the filter length for a transition width in cycles per sample. */
export function kaiserLength(attenuationDb, transition) {
  return Math.ceil((attenuationDb - 7.95) / (14.36 * transition)) + 1;
}

/** sin(pi x) / (pi x). */
export function sinc(x) {
  if (Math.abs(x) < 1e-12) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/**
 * The low-pass design for converting inRate to outRate.
 * Returns { cutoff, transition } in cycles per input sample, { half } taps each side of the
 * centre (the filter has 2 * half taps per phase) and Kaiser's beta.
 */
export function designLowpass(inRate, outRate, options = {}) {
  const attenuationDb = options.attenuationDb ?? 80;
  const nyquist = Math.min(inRate, outRate) / 2;
  const passHz = options.passbandHz ?? 0.85 * nyquist;
  const stopHz = options.stopbandHz ?? nyquist;
  if (!(passHz > 0 && stopHz > passHz)) throw new RangeError("passband must lie below stopband");
  const transition = (stopHz - passHz) / inRate;
  const cutoff = (passHz + stopHz) / 2 / inRate;
  const half = Math.max(2, Math.ceil(kaiserLength(attenuationDb, transition) / 2));
  return { cutoff, transition, half, beta: kaiserBeta(attenuationDb), attenuationDb };
}

/** The continuous kernel: a Kaiser-windowed ideal low-pass, t in input samples. */
export function kernel(t, cutoff, half, beta) {
  const r = t / half;
  if (r <= -1 || r >= 1) return 0;
  const window = besselI0(beta * Math.sqrt(1 - r * r)) / besselI0(beta);
  return 2 * cutoff * sinc(2 * cutoff * t) * window;
}

/**
 * Streaming resampler. `process(input)` takes any number of input samples and returns the
 * output samples they complete (a view into an internal buffer, valid until the next call).
 * The output lags the input by `half` input samples (1.3 ms at 48 kHz); `flush()` returns
 * the tail at the end of the stream.
 */
export class Resampler {
  constructor(inRate, outRate = 16000, options = {}) {
    inRate = Math.round(inRate);
    outRate = Math.round(outRate);
    if (!(inRate > 0 && outRate > 0)) throw new RangeError("sample rates must be positive");
    this.inRate = inRate;
    this.outRate = outRate;
    const g = gcd(inRate, outRate);
    this.L = outRate / g; // output steps per ...
    this.M = inRate / g; // ... this many input samples
    this.passthrough = inRate === outRate;
    const design = designLowpass(inRate, outRate, options);
    this.design = design;
    const half = design.half;
    this.half = half;
    this.taps = 2 * half;
    // One filter per output phase p/L; above maxPhases, phases are quantised to P steps.
    this.P = Math.min(this.L, options.maxPhases ?? 1024);
    this.table = new Float32Array(this.P * this.taps);
    for (let p = 0; p < this.P; p++) {
      const frac = p / this.P;
      let sum = 0;
      const row = p * this.taps;
      for (let j = 0; j < this.taps; j++) {
        // Tap j weighs input sample i - half + 1 + j for an output at time i + frac.
        const h = kernel(frac + half - 1 - j, design.cutoff, half, design.beta);
        this.table[row + j] = h;
        sum += h;
      }
      for (let j = 0; j < this.taps; j++) this.table[row + j] /= sum; // unit gain at DC
    }
    this.buf = new Float32Array(4096 + this.taps);
    this.len = half - 1; // zeros before the first sample
    this.i = half - 1; // input index of the next output's integer time
    this.p = 0; // and its phase numerator, 0..L-1
    this.out = new Float32Array(256);
    this.inputCount = 0; // samples taken in
    this.outputCount = 0; // samples given out
  }

  process(input) {
    if (this.passthrough) return Float32Array.from(input);
    const n = input.length;
    if (this.len + n > this.buf.length) {
      const bigger = new Float32Array(Math.max(this.buf.length * 2, this.len + n + this.taps));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(input, this.len);
    this.len += n;
    this.inputCount += n;
    const maxOut = Math.ceil(((this.len - this.i) * this.L) / this.M) + 2;
    if (this.out.length < maxOut) this.out = new Float32Array(Math.max(maxOut, this.out.length * 2));
    const { buf, table, taps, half, L, M, P, out } = this;
    let { i, p } = this;
    let k = 0;
    while (i + half < this.len) {
      const phase = P === L ? p : Math.floor((p * P) / L);
      const row = phase * taps;
      const start = i - half + 1;
      let acc = 0;
      for (let j = 0; j < taps; j++) acc += buf[start + j] * table[row + j];
      out[k++] = acc;
      p += M;
      i += Math.floor(p / L);
      p %= L;
    }
    const drop = i - half + 1;
    if (drop > 0) {
      buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      i -= drop;
    }
    this.i = i;
    this.p = p;
    this.outputCount += k;
    return out.subarray(0, k);
  }

  /**
   * The outputs still held back by the filter's look-ahead, up to the end of the input
   * (end of stream): in all, ceil(inputs * outRate / inRate) samples come out.
   */
  flush() {
    if (this.passthrough) return new Float32Array(0);
    const inputs = this.inputCount;
    const due = Math.ceil((inputs * this.L) / this.M) - this.outputCount;
    const tail = Float32Array.from(this.process(new Float32Array(this.half + 1)));
    this.inputCount = inputs;
    this.outputCount -= tail.length - Math.max(0, due);
    return tail.subarray(0, Math.max(0, due));
  }
}

/** Float samples in [-1, 1] to PCM16 little-endian bytes (clipped, rounded). */
export function encodePcm16(samples) {
  const bytes = new ArrayBuffer(samples.length * 2);
  const view = new DataView(bytes);
  for (let k = 0; k < samples.length; k++) {
    let s = samples[k];
    s = s > 1 ? 1 : s < -1 ? -1 : s || 0; // NaN -> 0
    view.setInt16(2 * k, Math.round(s < 0 ? s * 32768 : s * 32767), true);
  }
  return bytes;
}

/** Cuts a stream of float samples into fixed-size PCM16 chunks (e.g. 1600 = 100 ms at 16 kHz). */
export class Pcm16Chunker {
  constructor(chunkSamples = 1600) {
    this.size = chunkSamples;
    this.pending = new Float32Array(chunkSamples);
    this.fill = 0;
  }

  /** Adds samples; returns the ArrayBuffers of the chunks they complete (possibly none). */
  push(samples) {
    const done = [];
    let k = 0;
    while (k < samples.length) {
      const take = Math.min(this.size - this.fill, samples.length - k);
      this.pending.set(samples.subarray(k, k + take), this.fill);
      this.fill += take;
      k += take;
      if (this.fill === this.size) {
        done.push(encodePcm16(this.pending));
        this.fill = 0;
      }
    }
    return done;
  }

  /** The last, shorter chunk (end of stream), or null when nothing is pending. */
  flush() {
    if (this.fill === 0) return null;
    const last = encodePcm16(this.pending.subarray(0, this.fill));
    this.fill = 0;
    return last;
  }
}
