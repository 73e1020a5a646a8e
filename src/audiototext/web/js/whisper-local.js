// Whisper on ONNX Runtime Web: the converted encoder.onnx and decoder.onnx the server runs,
// fed as inference/whisper.py feeds them (the variable-length encoder on the audio present; the
// decoder's appending key/value cache), with greedy search under Whisper's rules as
// inference/decoding.py applies them (suppress tokens, suppress blank, timestamp rules, the
// token budget), so the tokens equal the server's greedy tokens (tests/web/
// test_local_asr_parity.py). Pure module: the runtime is passed in (Worker and Node).

import { encoderInput, HOP, SAMPLE_RATE_HZ } from "./log-mel.js";
import { TIME_PRECISION_S, WhisperVocabulary } from "./whisper-tokens.js";

const MAX_INITIAL_TIMESTAMP_S = 1.0;

/** Whisper's logit rules for one sequence (decoding.py's _Rules for a batch of one). */
export class LogitRules {
  constructor(vocab, { timestamps }) {
    this.suppress = vocab.suppressTokens;
    this.begin = vocab.beginSuppressTokens;
    this.timestamps = timestamps;
    this.eot = vocab.eot;
    this.noTs = vocab.noTimestamps;
    this.tsBegin = vocab.timestampBegin;
    this.maxInitial = vocab.timestampBegin + Math.round(MAX_INITIAL_TIMESTAMP_S / TIME_PRECISION_S);
  }

  /** Sets what the rules forbid in `x` (the next token's logits) to -Infinity. */
  mask(x, seq, step) {
    for (const t of this.suppress) x[t] = -Infinity;
    if (step === 0) for (const t of this.begin) x[t] = -Infinity;
    if (!this.timestamps) return;
    const tb = this.tsBegin;
    const n = x.length;
    x[this.noTs] = -Infinity;
    if (step === 0) {
      x.fill(-Infinity, 0, tb);
      x.fill(-Infinity, this.maxInitial + 1, n);
      return;
    }
    let check = true;
    const last = seq[seq.length - 1];
    if (last >= tb) {
      const penultimate = seq.length >= 2 ? seq[seq.length - 2] : last;
      if (penultimate >= tb) {
        x.fill(-Infinity, tb, n); // a pair is closed: text (or the end) must follow
        check = false;
      } else {
        x.fill(-Infinity, 0, this.eot); // a lone timestamp: another one, or the end
      }
    }
    for (let i = seq.length - 1; i >= 0; i--) {
      if (seq[i] >= tb) {
        // Never backwards; after text, later than the segment's start (no zero-length segment).
        x.fill(-Infinity, tb, last >= tb ? seq[i] : seq[i] + 1);
        break;
      }
    }
    if (check) {
      // A timestamp is forced where all timestamps together beat the best text token.
      let best = -Infinity;
      for (let k = 0; k < tb; k++) if (x[k] > best) best = x[k];
      if (logSumExp(x, tb, n) > best) x.fill(-Infinity, 0, tb);
    }
  }
}

function logSumExp(x, from, to) {
  let m = -Infinity;
  for (let k = from; k < to; k++) if (x[k] > m) m = x[k];
  if (!Number.isFinite(m)) return m;
  let sum = 0;
  for (let k = from; k < to; k++) sum += Math.exp(x[k] - m);
  return m + Math.log(sum);
}

/** log-softmax of x at `index`. */
function logProb(x, index) {
  return x[index] - logSumExp(x, 0, x.length);
}

function argmax(x) {
  let best = 0;
  for (let k = 1; k < x.length; k++) if (x[k] > x[best]) best = k;
  return best;
}

/** decoding.py's budget: half the text context, never past its end. */
export function maxNewTokens(textCtx, promptLength, requested = null) {
  let total = requested == null ? textCtx : promptLength + requested;
  total = Math.min(total, textCtx);
  return Math.max(1, Math.min(Math.floor(total / 2), total - (promptLength - 1)));
}

/** A window's tokens cut at timestamp pairs (inference/segments.py's split_at_timestamps). */
export function splitAtTimestamps(tokens, tsBegin, frames) {
  const single = tokens.length >= 2 && tokens[tokens.length - 2] < tsBegin && tokens[tokens.length - 1] >= tsBegin;
  const cuts = [];
  for (let i = 1; i < tokens.length; i++) if (tokens[i] >= tsBegin && tokens[i - 1] >= tsBegin) cuts.push(i);
  const time = (t) => (t - tsBegin) * TIME_PRECISION_S;
  if (!cuts.length) {
    const stamps = tokens.filter((t) => t >= tsBegin);
    let end = (frames * HOP) / SAMPLE_RATE_HZ;
    if (stamps.length && stamps[stamps.length - 1] !== tsBegin) end = time(stamps[stamps.length - 1]);
    return { pieces: [{ start: 0, end, tokens }], consumedFrames: frames };
  }
  if (single) cuts.push(tokens.length);
  const pieces = [];
  let last = 0;
  for (const cut of cuts) {
    const part = tokens.slice(last, cut);
    pieces.push({ start: time(part[0]), end: time(part[part.length - 1]), tokens: part });
    last = cut;
  }
  // Unfinished text after the last pair is decoded again with the audio that follows (or,
  // at the end of the audio, taken as it is: `rest`).
  const consumedFrames = single ? frames : (tokens[last - 1] - tsBegin) * 2;
  const tail = tokens.slice(last);
  const rest = single || !tail.length ? null : { start: time(tokens[last - 1]), end: (frames * HOP) / SAMPLE_RATE_HZ, tokens: tail };
  return { pieces, consumedFrames, rest };
}

function bytesOf(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new Error("model files must be ArrayBuffers or Uint8Arrays");
}

function jsonOf(value, name) {
  if (typeof value === "object" && !(value instanceof ArrayBuffer) && !(value instanceof Uint8Array)) return value;
  try {
    return JSON.parse(new TextDecoder().decode(bytesOf(value)));
  } catch (err) {
    throw new Error(`${name} is not valid JSON: ${err.message}`);
  }
}

export class LocalWhisper {
  /**
   * @param {object} ort the onnxruntime-web module
   * @param {object} files by browser file name: encoder.onnx, decoder.onnx, decoder.onnx.data
   *   (int8), tokenizer.json, model_config.json (bytes; the JSON ones may be parsed objects)
   */
  static async create(ort, files) {
    for (const name of ["encoder.onnx", "decoder.onnx", "tokenizer.json", "model_config.json"]) {
      if (!files[name]) throw new Error(`the model's ${name} is missing`);
    }
    const config = jsonOf(files["model_config.json"], "model_config.json");
    const vocab = new WhisperVocabulary(jsonOf(files["tokenizer.json"], "tokenizer.json"), config);
    // Errors only: the decoder's in_place/beam_width/cache_indirection are initializers that
    // are also inputs (the server's in-place cache mode), which ORT warns about at each load.
    const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all", logSeverityLevel: 3 };
    const encoder = await ort.InferenceSession.create(bytesOf(files["encoder.onnx"]), options);
    const external = files["decoder.onnx.data"]
      ? { externalData: [{ path: "decoder.onnx.data", data: bytesOf(files["decoder.onnx.data"]) }] }
      : {};
    const decoder = await ort.InferenceSession.create(bytesOf(files["decoder.onnx"]), { ...options, ...external });
    return new LocalWhisper(ort, encoder, decoder, vocab, config);
  }

  constructor(ort, encoder, decoder, vocab, config) {
    this.ort = ort;
    this.encoder = encoder;
    this.decoder = decoder;
    this.vocab = vocab;
    this.dims = config.dims;
    this.layers = config.dims.decoder_layers;
    this.heads = config.dims.decoder_heads;
    this.headDim = config.dims.d_model / config.dims.decoder_heads;
    this.windowFrames = 2 * config.dims.n_audio_ctx;
    this.crossNames = [];
    for (let i = 0; i < this.layers; i++) this.crossNames.push(`cross_k_${i}`, `cross_v_${i}`);
    const missing = this.crossNames.filter((n) => !encoder.outputNames.includes(n));
    if (missing.length) throw new Error(`encoder.onnx lacks outputs ${missing.join(", ")}: convert the model again`);
  }

  /** Seconds of audio one window holds (30). */
  get windowSeconds() {
    return (this.windowFrames * HOP) / SAMPLE_RATE_HZ;
  }

  /**
   * Transcribes one utterance of at most 30 s (16-kHz mono Float32Array) greedily, no
   * fallback, no prompt: the server's engine with the same settings gives the same tokens.
   * @param {object} options timestamps (true), language and task (multilingual models),
   *   maxNewTokens (null: Whisper's budget), signal (an AbortSignal checked every step)
   * @returns {Promise<object>} tokens (end token excluded), text (trimmed), pieces [{start,
   *   end, tokens, text}], rest (the text after the last timestamp pair, or null), consumedS,
   *   noSpeechProb, avgLogprob, melMs, encodeMs, decodeMs
   */
  async transcribe(audio, { timestamps = true, language = null, task = "transcribe", maxNewTokens: requested = null, signal = null } = {}) {
    if (!(audio instanceof Float32Array)) throw new Error("audio must be a Float32Array of 16-kHz samples");
    if (audio.length > this.windowSeconds * SAMPLE_RATE_HZ) {
      throw new Error(`audio of ${(audio.length / SAMPLE_RATE_HZ).toFixed(1)} s is longer than one ${this.windowSeconds}-s window: feed it through a LocalSession`);
    }
    const t0 = performance.now();
    const mel = encoderInput(audio, { nMels: this.dims.n_mels, windowFrames: this.windowFrames });
    const t1 = performance.now();
    const input = new this.ort.Tensor("float32", mel.data, [1, mel.nMels, mel.frames]);
    const cross = await this.encoder.run({ input_features: input }, this.crossNames);
    const t2 = performance.now();
    const vocab = this.vocab;
    const prompt = [...vocab.sotSequence(language, task)];
    if (!timestamps) prompt.push(vocab.noTimestamps);
    const rules = new LogitRules(vocab, { timestamps });
    const limit = maxNewTokens(this.dims.n_text_ctx, prompt.length, requested);
    const step = new DecoderSteps(this, cross);
    const first = await step.prefill(prompt, prompt.indexOf(vocab.sot));
    const noSpeechProb = Math.exp(logProb(first.sot, vocab.noSpeech));
    let logits = first.last;
    const tokens = [];
    let sumLogprob = 0;
    for (let n = 0; ; n++) {
      if (signal?.aborted) throw new Error("transcription cancelled");
      rules.mask(logits, tokens, n);
      const token = argmax(logits);
      sumLogprob += logProb(logits, token);
      if (token === vocab.eot) break;
      tokens.push(token);
      if (n + 1 >= limit) break;
      logits = await step.next(token);
    }
    const t3 = performance.now();
    const split = timestamps
      ? splitAtTimestamps(tokens, vocab.timestampBegin, mel.frames)
      : { pieces: [{ start: 0, end: audio.length / SAMPLE_RATE_HZ, tokens }], consumedFrames: mel.frames };
    const withText = (p) => ({ ...p, text: vocab.decode(p.tokens).trim() });
    const pieces = split.pieces.map(withText);
    return {
      tokens,
      text: vocab.decode(tokens).trim(),
      pieces,
      rest: split.rest ? withText(split.rest) : null,
      consumedS: Math.min(audio.length, split.consumedFrames * HOP) / SAMPLE_RATE_HZ,
      noSpeechProb,
      avgLogprob: sumLogprob / (tokens.length + 1),
      frames: mel.frames,
      melMs: t1 - t0,
      encodeMs: t2 - t1,
      decodeMs: t3 - t2,
    };
  }
}

/** One decoding call's key/value cache (the decoder's appending mode: present → past). */
class DecoderSteps {
  constructor(model, cross) {
    this.model = model;
    this.ort = model.ort;
    this.feeds = {};
    for (const name of model.crossNames) this.feeds[name] = cross[name];
    const empty = new Float32Array(0);
    this.outputs = ["logits"];
    for (let i = 0; i < model.layers; i++) {
      for (const kind of ["k", "v"]) {
        this.feeds[`past_${kind}_${i}`] = new this.ort.Tensor("float32", empty, [1, model.heads, 0, model.headDim]);
        this.outputs.push(`present_${kind}_${i}`);
      }
    }
    this.length = 0;
  }

  int64(values, dims) {
    return new this.ort.Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), dims);
  }

  async run(ids, picked) {
    const n = ids.length;
    const total = this.length + n;
    if (total > this.model.dims.n_text_ctx) throw new Error(`the decoder's context of ${this.model.dims.n_text_ctx} tokens is full`);
    const feeds = {
      ...this.feeds,
      input_ids: this.int64(ids, [1, n]),
      position_ids: this.int64(ids.map((_, k) => this.length + k), [1, n]),
      attention_mask: this.int64(new Array(total).fill(1), [1, total]),
      logits_index: this.int64(picked, [1, picked.length]),
    };
    const out = await this.model.decoder.run(feeds, this.outputs);
    for (let i = 0; i < this.model.layers; i++) {
      for (const kind of ["k", "v"]) this.feeds[`past_${kind}_${i}`] = out[`present_${kind}_${i}`];
    }
    this.length = total;
    const vocab = this.model.dims.n_vocab;
    const data = out.logits.data;
    return picked.map((_, k) => Float32Array.from(data.subarray(k * vocab, (k + 1) * vocab)));
  }

  /** Feeds the prompt; the logits at its start-of-transcript token and at its last token. */
  async prefill(prompt, sotIndex) {
    const [sot, last] = await this.run(prompt, [sotIndex, prompt.length - 1]);
    return { sot, last };
  }

  async next(token) {
    return (await this.run([token], [0]))[0];
  }
}
