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

import { LocalSession } from "./local-asr-session.js";
import { modelCacheName } from "./model-store.js";
import { loadOrt } from "./ort-runtime.js";
import { LocalWhisper } from "./whisper-local.js";

let session = null;
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
  session = null;
  const settings = {
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
    const engine = await LocalWhisper.create(ort, files);
    if (engine.vocab.multilingual && !settings.language) throw new Error("a multilingual model needs a language for local transcription");
    session = new LocalSession(engine, settings, (m) => postMessage(m));
    postMessage({
      type: "ready",
      model: msg.listing?.model || null,
      precision: msg.listing?.precision || null,
      version: msg.listing?.version || null,
      threads: ort.env.wasm.numThreads,
      loadMs: performance.now() - started,
    });
  } catch (err) {
    session = null;
    postMessage({ type: "error", fatal: true, message: String(err?.message || err) });
  }
}

function onAudio(msg) {
  const raw = msg.samples;
  if (!(raw instanceof Float32Array || raw instanceof ArrayBuffer || raw === undefined)) {
    postMessage({ type: "error", fatal: false, message: "audio samples must be a Float32Array of 16-kHz mono samples" });
    return;
  }
  if (!session) {
    postMessage({ type: "error", fatal: false, message: "audio before the model is ready: wait for ready" });
    return;
  }
  session.push(raw instanceof Float32Array ? raw : new Float32Array(raw || 0));
  const closing = msg.end === true;
  work = work.then(() => session.decode(closing)).catch((err) => {
    postMessage({ type: "error", fatal: false, message: String(err?.message || err) });
  });
}

self.onmessage = (event) => {
  const msg = event.data || {};
  if (msg.type === "init") work = work.then(() => init(msg));
  else if (msg.type === "audio") onAudio(msg);
  else if (msg.type === "reset") work = work.then(() => session?.reset());
  else postMessage({ type: "error", fatal: false, message: `unknown message type ${JSON.stringify(msg.type)}` });
};
