// Web Worker: transcription in the browser (whisper-local.js on ONNX Runtime Web) from the
// model files kept in the Cache API by model-store.js. The page side is local-asr.js.
//
// Protocol (postMessage; every time is seconds of audio since `init` or the last `reset`):
//   page → worker
//     {type: "init", listing, threads?, timestamps?, language?, task?}  listing: the JSON of
//         GET /api/v1/models/{name}/browser whose files are kept (or `files`: {name:
//         ArrayBuffer} instead, e.g. for a benchmark); threads: ORT threads (1 without
//         cross-origin isolation); timestamps (default true): segments cut at Whisper's
//         timestamps, else one per utterance; maxNewTokens (default: the streaming engine's
//         budget, 12 + 10 per second of audio: greedy decoding without fallback can loop)
//     {type: "audio", samples: Float32Array (16 kHz mono), end?: boolean}  chunks of the open
//         utterance (any sizes; transfer the buffer); `end` closes it and decodes the rest.
//         An utterance longer than 30 s is decoded window by window as it arrives.
//     {type: "reset"}  drops the open utterance and restarts the clock
//   worker → page
//     {type: "ready", model, precision, version, threads, loadMs}
//     {type: "segment", utterance, start, end, text, tokens, noSpeechProb, avgLogprob}
//         (text trimmed; windows Whisper thinks silent and pieces without a word are dropped)
//     {type: "done", utterance, audioS, busyMs}  after the last segment of a closed utterance
//     {type: "error", message, fatal}  fatal: the model could not be loaded (post init again)

import { modelCacheName } from "./model-store.js";
import { loadOrt } from "./ort-runtime.js";
import { SAMPLE_RATE_HZ } from "./log-mel.js";
import { LocalWhisper } from "./whisper-local.js";

// Whisper's silence test (decoding.py's NO_SPEECH_THRESHOLD, LOG_PROB_THRESHOLD).
const NO_SPEECH_THRESHOLD = 0.6;
const LOG_PROB_THRESHOLD = -1.0;

let engine = null;
let settings = {};
let clock = 0; // samples received since init/reset
let utterance = 0;
let open = { start: 0, parts: [], length: 0 }; // the open utterance's audio
let work = Promise.resolve();

async function readKept(listing) {
  if (typeof caches === "undefined") throw new Error("this browser has no Cache API: keep the model on a secure page (https or localhost)");
  const cache = await caches.open(modelCacheName(listing));
  const files = {};
  for (const file of listing.files) {
    const hit = await cache.match(file.url);
    if (!hit) throw new Error(`${file.name} of ${listing.model} is not kept in this browser: keep the model first`);
    files[file.name] = await hit.arrayBuffer();
  }
  return files;
}

async function init(msg) {
  const started = performance.now();
  engine = null;
  settings = {
    timestamps: msg.timestamps !== false,
    language: msg.language || null,
    task: msg.task || "transcribe",
    maxNewTokens: Number.isInteger(msg.maxNewTokens) ? msg.maxNewTokens : null,
  };
  try {
    if (!msg.files && !Array.isArray(msg.listing?.files)) {
      throw new Error("init needs the model's listing (GET /api/v1/models/NAME/browser) or its files");
    }
    const files = msg.files || (await readKept(msg.listing));
    const ort = await loadOrt({ threads: msg.threads || 1 });
    engine = await LocalWhisper.create(ort, files);
    if (engine.vocab.multilingual && !settings.language) throw new Error("a multilingual model needs a language for local transcription");
    reset();
    postMessage({
      type: "ready",
      model: msg.listing?.model || null,
      precision: msg.listing?.precision || null,
      version: msg.listing?.version || null,
      threads: ort.env.wasm.numThreads,
      loadMs: performance.now() - started,
    });
  } catch (err) {
    engine = null;
    postMessage({ type: "error", fatal: true, message: String(err?.message || err) });
  }
}

function reset() {
  clock = 0;
  open = { start: 0, parts: [], length: 0 };
}

function take(samples) {
  const out = new Float32Array(samples);
  let at = 0;
  while (at < samples) {
    const part = open.parts[0];
    const n = Math.min(part.length, samples - at);
    out.set(part.subarray(0, n), at);
    at += n;
    if (n === part.length) open.parts.shift();
    else open.parts[0] = part.subarray(n);
  }
  open.length -= samples;
  open.start += samples;
  return out;
}

/** Decodes the open utterance's audio: whole 30-s windows, or everything when it is closed. */
async function decode(closing) {
  const window = engine.windowSeconds * SAMPLE_RATE_HZ;
  const id = utterance;
  const busy = performance.now();
  let audioS = 0;
  while (open.length >= window || (closing && open.length > 0)) {
    const start = open.start;
    const audio = take(Math.min(window, open.length));
    const durationS = audio.length / SAMPLE_RATE_HZ;
    const maxNewTokens = settings.maxNewTokens ?? Math.floor(12 + 10 * durationS);
    const result = await engine.transcribe(audio, { ...settings, maxNewTokens });
    audioS += audio.length / SAMPLE_RATE_HZ;
    // Audio after the last complete timestamp pair goes back for the next window.
    const consumed = Math.round(result.consumedS * SAMPLE_RATE_HZ);
    const again = audio.length === window && consumed >= SAMPLE_RATE_HZ && consumed < audio.length;
    if (again) {
      open.parts.unshift(audio.subarray(consumed));
      open.length += audio.length - consumed;
      open.start = start + consumed;
    }
    const silent = result.noSpeechProb > NO_SPEECH_THRESHOLD && result.avgLogprob < LOG_PROB_THRESHOLD;
    if (silent) continue;
    const pieces = again || !result.rest ? result.pieces : [...result.pieces, result.rest];
    let previous = "";
    for (const [n, piece] of pieces.entries()) {
      if (!/[\p{L}\p{N}]/u.test(piece.text)) continue;
      // A greedy decoder's repetition loop (streaming/_decode.collapse_repeats, by piece): a
      // piece said again at once, or a trailing fragment of the one before, is dropped.
      const said = piece.text.toLowerCase();
      const fragment = n === pieces.length - 1 && !/[.!?]$/.test(said) && previous.startsWith(said);
      if (said === previous || fragment) continue;
      previous = said;
      postMessage({
        type: "segment",
        utterance: id,
        start: (start / SAMPLE_RATE_HZ) + piece.start,
        end: (start / SAMPLE_RATE_HZ) + piece.end,
        text: piece.text,
        tokens: piece.tokens,
        noSpeechProb: result.noSpeechProb,
        avgLogprob: result.avgLogprob,
      });
    }
  }
  if (closing) {
    postMessage({ type: "done", utterance: id, audioS, busyMs: performance.now() - busy });
    utterance += 1;
  }
}

function onAudio(msg) {
  const raw = msg.samples;
  if (!(raw instanceof Float32Array || raw instanceof ArrayBuffer || raw === undefined)) {
    postMessage({ type: "error", fatal: false, message: "audio samples must be a Float32Array of 16-kHz mono samples" });
    return;
  }
  if (!engine) {
    postMessage({ type: "error", fatal: false, message: "audio before the model is ready: wait for ready" });
    return;
  }
  const samples = raw instanceof Float32Array ? raw : new Float32Array(raw || 0);
  if (open.length === 0) open.start = clock;
  if (samples.length) {
    open.parts.push(samples);
    open.length += samples.length;
    clock += samples.length;
  }
  const closing = msg.end === true;
  work = work.then(() => decode(closing)).catch((err) => {
    postMessage({ type: "error", fatal: false, message: String(err?.message || err) });
  });
}

self.onmessage = (event) => {
  const msg = event.data || {};
  if (msg.type === "init") work = work.then(() => init(msg));
  else if (msg.type === "audio") onAudio(msg);
  else if (msg.type === "reset") work = work.then(reset);
  else postMessage({ type: "error", fatal: false, message: `unknown message type ${JSON.stringify(msg.type)}` });
};
