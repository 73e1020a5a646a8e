// Whisper's log-mel features in JS, the same numbers as the server's audio/features.py (tested
// against it by tests/web/test_local_asr_parity.py): 400-point STFT with a periodic Hann window,
// hop 160, reflect padding of 200 at both ends, last frame dropped, Slaney mel filters, log10
// clamped at 1e-10, a floor 8 below the maximum, (x + 4) / 4. Pure module (Worker and Node).

export const SAMPLE_RATE_HZ = 16000;
export const N_FFT = 400;
export const HOP = 160;
const BINS = N_FFT / 2 + 1;
const FACTORS = [4, 4, 5, 5]; // 400 = 4·4·5·5: a mixed-radix FFT, ~10× fewer products than a DFT

function hzToMel(f) {
  const fSp = 200 / 3;
  return f >= 1000 ? 1000 / fSp + Math.log(f / 1000) / (Math.log(6.4) / 27) : f / fSp;
}

function melToHz(m) {
  const fSp = 200 / 3;
  const minLogMel = 1000 / fSp;
  return m >= minLogMel ? 1000 * Math.exp((Math.log(6.4) / 27) * (m - minLogMel)) : fSp * m;
}

const filterCache = new Map();

/** Slaney mel filters [nMels][201] as float32 values (float64 arithmetic, as librosa/numpy). */
export function melFilters(nMels = 80) {
  if (filterCache.has(nMels)) return filterCache.get(nMels);
  const lo = hzToMel(0);
  const hi = hzToMel(SAMPLE_RATE_HZ / 2);
  const step = (hi - lo) / (nMels + 1);
  const edges = [];
  for (let i = 0; i < nMels + 2; i++) edges.push(melToHz(i === nMels + 1 ? hi : lo + i * step));
  const filters = [];
  for (let m = 0; m < nMels; m++) {
    const row = new Float32Array(BINS);
    const norm = 2 / (edges[m + 2] - edges[m]);
    for (let k = 0; k < BINS; k++) {
      const f = (k * SAMPLE_RATE_HZ) / N_FFT;
      const lower = -(edges[m] - f) / (edges[m + 1] - edges[m]);
      const upper = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
      row[k] = Math.max(0, Math.min(lower, upper)) * norm;
    }
    filters.push(row);
  }
  filterCache.set(nMels, filters);
  return filters;
}

const WINDOW = Float32Array.from({ length: N_FFT }, (_, n) => 0.5 - 0.5 * Math.cos((2 * Math.PI * n) / N_FFT));
const COS = Float64Array.from({ length: N_FFT }, (_, j) => Math.cos((-2 * Math.PI * j) / N_FFT));
const SIN = Float64Array.from({ length: N_FFT }, (_, j) => Math.sin((-2 * Math.PI * j) / N_FFT));

// Decimation in time over FACTORS: writes the n-point DFT of x[off], x[off+stride], ... to out.
function fft(x, off, stride, n, outRe, outIm, at, level, tmpRe, tmpIm) {
  if (n === 1) {
    outRe[at] = x[off];
    outIm[at] = 0;
    return;
  }
  const p = FACTORS[level];
  const m = n / p;
  for (let q = 0; q < p; q++) fft(x, off + q * stride, stride * p, m, outRe, outIm, at + q * m, level + 1, tmpRe, tmpIm);
  const scale = N_FFT / n; // W_n^j = W_400^(j·scale)
  for (let k = 0; k < m; k++) {
    for (let s = 0; s < p; s++) {
      const j = k + s * m;
      let re = 0;
      let im = 0;
      for (let q = 0; q < p; q++) {
        const t = ((q * j) % n) * scale;
        const yr = outRe[at + q * m + k];
        const yi = outIm[at + q * m + k];
        re += yr * COS[t] - yi * SIN[t];
        im += yr * SIN[t] + yi * COS[t];
      }
      tmpRe[s] = re;
      tmpIm[s] = im;
    }
    for (let s = 0; s < p; s++) {
      outRe[at + k + s * m] = tmpRe[s];
      outIm[at + k + s * m] = tmpIm[s];
    }
  }
}

/** Sample i of the signal of `length` samples (audio then zeros) reflect-padded by N_FFT/2. */
function padded(audio, length, i) {
  let j = i - N_FFT / 2;
  const last = length - 1;
  // Repeated reflection, as np.pad does for signals shorter than the padding.
  while (j < 0 || j > last) j = j < 0 ? -j : 2 * last - j;
  return j < audio.length ? audio[j] : 0;
}

/**
 * log-mel of 16-kHz mono `audio` (Float32Array) with `paddingSamples` zeros appended.
 * @returns {{data: Float32Array, nMels: number, frames: number}} row-major [nMels][frames]
 */
export function logMel(audio, { nMels = 80, paddingSamples = 0 } = {}) {
  const length = audio.length + paddingSamples;
  const frames = Math.floor(length / HOP);
  const data = new Float32Array(nMels * frames);
  if (frames === 0) return { data, nMels, frames };
  const filters = melFilters(nMels);
  const frame = new Float32Array(N_FFT);
  const re = new Float64Array(N_FFT);
  const im = new Float64Array(N_FFT);
  const tmpRe = new Float64Array(8);
  const tmpIm = new Float64Array(8);
  const power = new Float64Array(BINS);
  const inside = length > N_FFT; // else every sample needs the reflection rule
  let max = -Infinity;
  for (let t = 0; t < frames; t++) {
    const start = t * HOP;
    for (let n = 0; n < N_FFT; n++) {
      const i = start + n;
      const j = i - N_FFT / 2;
      const x = inside && j >= 0 && j < audio.length ? audio[j] : padded(audio, length, i);
      frame[n] = x * WINDOW[n]; // float32 product, as numpy's frames * window
    }
    fft(frame, 0, 1, N_FFT, re, im, 0, 0, tmpRe, tmpIm);
    for (let k = 0; k < BINS; k++) power[k] = re[k] * re[k] + im[k] * im[k];
    for (let m = 0; m < nMels; m++) {
      const row = filters[m];
      let sum = 0;
      for (let k = 0; k < BINS; k++) sum += power[k] * row[k];
      const v = Math.log10(Math.max(sum, 1e-10));
      data[m * frames + t] = v;
      if (v > max) max = v;
    }
  }
  const floor = Math.fround(Math.fround(max) - 8); // float32, as numpy computes it
  for (let i = 0; i < data.length; i++) data[i] = (Math.max(data[i], floor) + 4) / 4;
  return { data, nMels, frames };
}

/**
 * The encoder's input for an utterance, as the server's streaming/_decode.encoder_input with
 * frames=None: 160 samples of padding, the last frame dropped, an even count (a zero frame
 * added), at least 2, at most `windowFrames`.
 * @returns {{data: Float32Array, nMels: number, frames: number}}
 */
export function encoderInput(audio, { nMels = 80, windowFrames = 3000 } = {}) {
  const mel = logMel(audio, { nMels, paddingSamples: HOP });
  const content = Math.min(mel.frames > 1 ? mel.frames - 1 : mel.frames, windowFrames);
  let target = content + (content % 2);
  target = Math.max(2, Math.min(windowFrames, target + (target % 2)));
  const data = new Float32Array(nMels * target);
  const keep = Math.min(content, target);
  for (let m = 0; m < nMels; m++) {
    data.set(mel.data.subarray(m * mel.frames, m * mel.frames + keep), m * target);
  }
  return { data, nMels, frames: target };
}
