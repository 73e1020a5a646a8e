// Silero VAD in the browser: the same ONNX file and the same framing as the server's
// audio/vad.py (512-sample frames of 16-kHz audio, each preceded by the last 64 samples of the
// frame before; the LSTM state carried from call to call), so the probabilities match it.
// Pure module: the runtime is passed in, so Node's tests run it too.

export const SAMPLE_RATE_HZ = 16000;
export const FRAME_SAMPLES = 512; // 32 ms
export const CONTEXT_SAMPLES = 64;
const STATE_SIZE = 128; // LSTM h and c, each [1, 1, 128]

/** PCM16 little-endian mono → float32 in [-1, 1), as the server's codec divides. */
export function pcm16ToFloat(buffer) {
  const pcm = new Int16Array(buffer);
  const out = new Float32Array(pcm.length);
  for (let k = 0; k < pcm.length; k++) out[k] = pcm[k] / 32768;
  return out;
}

/** Collects samples that arrive in any sizes and hands out whole frames. */
export class FrameQueue {
  constructor() {
    this.buffer = new Float32Array(FRAME_SAMPLES * 16);
    this.length = 0;
  }

  push(samples) {
    if (this.length + samples.length > this.buffer.length) {
      const bigger = new Float32Array(Math.max(this.buffer.length * 2, this.length + samples.length));
      bigger.set(this.buffer.subarray(0, this.length));
      this.buffer = bigger;
    }
    this.buffer.set(samples, this.length);
    this.length += samples.length;
  }

  /** Every whole frame queued (a multiple of FRAME_SAMPLES samples, maybe none). */
  take() {
    const whole = this.length - (this.length % FRAME_SAMPLES);
    const frames = this.buffer.slice(0, whole);
    this.buffer.copyWithin(0, whole, this.length);
    this.length -= whole;
    return frames;
  }
}

/** One stream's Silero VAD: a session of the packaged model and its carried state. */
export class SileroVad {
  /**
   * @param {object} ort the onnxruntime-web module
   * @param {Uint8Array|ArrayBuffer} model the bytes of silero_vad.onnx (inputs input, h, c)
   */
  static async create(ort, model) {
    const bytes = model instanceof Uint8Array ? model : new Uint8Array(model);
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    const inputs = new Set(session.inputNames);
    if (!["input", "h", "c"].every((name) => inputs.has(name))) {
      throw new Error(`not the sequence export of Silero VAD (inputs ${[...inputs].join(", ")})`);
    }
    return new SileroVad(ort, session);
  }

  constructor(ort, session) {
    this.ort = ort;
    this.session = session;
    this.reset();
  }

  reset() {
    this.h = new Float32Array(STATE_SIZE);
    this.c = new Float32Array(STATE_SIZE);
    this.context = new Float32Array(CONTEXT_SAMPLES);
  }

  /** Speech probability of each 512-sample frame of `samples` (a multiple of 512 long). */
  async process(samples) {
    if (samples.length % FRAME_SAMPLES) {
      throw new Error(`VAD input must be a multiple of ${FRAME_SAMPLES} samples, got ${samples.length}`);
    }
    const frames = samples.length / FRAME_SAMPLES;
    if (frames === 0) return new Float32Array(0);
    const width = CONTEXT_SAMPLES + FRAME_SAMPLES;
    const input = new Float32Array(frames * width);
    for (let f = 0; f < frames; f++) {
      const row = f * width;
      if (f === 0) input.set(this.context, row);
      else input.set(samples.subarray(f * FRAME_SAMPLES - CONTEXT_SAMPLES, f * FRAME_SAMPLES), row);
      input.set(samples.subarray(f * FRAME_SAMPLES, (f + 1) * FRAME_SAMPLES), row + CONTEXT_SAMPLES);
    }
    const { Tensor } = this.ort;
    const out = await this.session.run({
      input: new Tensor("float32", input, [frames, width]),
      h: new Tensor("float32", this.h, [1, 1, STATE_SIZE]),
      c: new Tensor("float32", this.c, [1, 1, STATE_SIZE]),
    });
    this.h = Float32Array.from(out.hn.data);
    this.c = Float32Array.from(out.cn.data);
    this.context = samples.slice(samples.length - CONTEXT_SAMPLES);
    return Float32Array.from(out.speech_probs.data);
  }
}

/**
 * Speech on/off from frame probabilities, with the server's default thresholds (VadOptions:
 * speech at 0.5, silence below 0.35 held for 100 ms): the instant indicator, not endpoints.
 */
export class SpeechIndicator {
  constructor({ threshold = 0.5, negThreshold = 0.35, minSilenceMs = 100 } = {}) {
    this.threshold = threshold;
    this.negThreshold = negThreshold;
    this.minSilenceSamples = (SAMPLE_RATE_HZ * minSilenceMs) / 1000;
    this.reset();
  }

  reset() {
    this.speaking = false;
    this.silenceStart = null;
    this.samples = 0;
  }

  /** Passes over samples that were not scored (dropped while the runtime loaded). */
  skip(samples) {
    this.samples += samples;
  }

  /** Feeds one frame's probability; returns {kind: "BEGIN"|"END", timeS} or null. */
  push(probability) {
    const start = this.samples;
    this.samples += FRAME_SAMPLES;
    if (!this.speaking) {
      if (probability < this.threshold) return null;
      this.speaking = true;
      this.silenceStart = null;
      return { kind: "BEGIN", timeS: start / SAMPLE_RATE_HZ };
    }
    if (probability >= this.negThreshold) {
      this.silenceStart = null;
      return null;
    }
    if (this.silenceStart === null) this.silenceStart = start;
    if (this.samples - this.silenceStart < this.minSilenceSamples) return null;
    this.speaking = false;
    const end = this.silenceStart;
    this.silenceStart = null;
    return { kind: "END", timeS: end / SAMPLE_RATE_HZ };
  }
}
