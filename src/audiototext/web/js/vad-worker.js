// Web Worker: Silero VAD on ONNX Runtime Web over the microphone's 16-kHz PCM16 chunks,
// which the capture worklet posts straight here through a MessagePort (no main-thread hop).
// Posts {type: "ready"}, {type: "speech", kind, timeS} (seconds since the tap started),
// {type: "stats", audioS, busyMs, ...} about once a second of audio, {type: "error"}.

import { loadOrt } from "./ort-runtime.js";
import { FrameQueue, pcm16ToFloat, SAMPLE_RATE_HZ, SileroVad, SpeechIndicator } from "./vad.js";

const MODEL_URL = new URL("../vad/silero_vad.onnx", import.meta.url);
// Audio kept while the runtime loads; older audio is skipped (the indicator is for now).
const MAX_QUEUED_SAMPLES = 10 * SAMPLE_RATE_HZ;
const STATS_EVERY_SAMPLES = SAMPLE_RATE_HZ;

let vad = null;
let failed = false;
let draining = false;
let queue = new FrameQueue();
const indicator = new SpeechIndicator();
const stats = { audioS: 0, busyMs: 0, runs: 0, loadMs: 0, threads: 0, isolated: false };
let sinceStats = 0;

async function init() {
  const started = performance.now();
  try {
    const ort = await loadOrt({ threads: 1 }); // one 32-ms frame is too small to share
    const response = await fetch(MODEL_URL);
    if (!response.ok) throw new Error(`${MODEL_URL.pathname}: HTTP ${response.status}`);
    vad = await SileroVad.create(ort, await response.arrayBuffer());
    stats.loadMs = performance.now() - started;
    stats.threads = ort.env.wasm.numThreads;
    stats.isolated = globalThis.crossOriginIsolated === true;
    postMessage({ type: "ready", ...stats });
    drain();
  } catch (err) {
    failed = true;
    postMessage({ type: "error", message: String((err && err.message) || err) });
  }
}

function onChunk(buffer) {
  if (failed) return;
  queue.push(pcm16ToFloat(buffer));
  if (!vad && queue.length > MAX_QUEUED_SAMPLES) indicator.skip(queue.take().length);
  if (vad) drain();
}

async function drain() {
  if (draining) return;
  draining = true;
  try {
    for (let frames = queue.take(); frames.length; frames = queue.take()) {
      const t0 = performance.now();
      const probabilities = await vad.process(frames);
      stats.busyMs += performance.now() - t0;
      stats.runs += 1;
      stats.audioS += frames.length / SAMPLE_RATE_HZ;
      for (const p of probabilities) {
        const event = indicator.push(p);
        if (event) postMessage({ type: "speech", ...event, probability: p });
      }
      sinceStats += frames.length;
      if (sinceStats >= STATS_EVERY_SAMPLES) {
        sinceStats = 0;
        postMessage({ type: "stats", ...stats });
      }
    }
  } catch (err) {
    failed = true;
    postMessage({ type: "error", message: String((err && err.message) || err) });
  } finally {
    draining = false;
  }
}

self.onmessage = (event) => {
  const msg = event.data || {};
  if (msg.type === "tap") {
    // A new capture: its clock starts at zero.
    queue = new FrameQueue();
    indicator.reset();
    if (vad) vad.reset();
    msg.port.onmessage = (e) => {
      if (e.data && e.data.type === "chunk") onChunk(e.data.data);
    };
  } else if (msg.type === "stats") {
    postMessage({ type: "stats", ...stats });
  }
};

init();
