// Local transcription while the server is unreachable, and the hand-back when it returns.
// Imported lazily by main.js (only when a stream loses its server), so none of it weighs on
// the page's first load.
//
// The split of the audio is exact by chunk: the server had everything up to its last final;
// the local worker gets the microphone's chunks from the end of that final (the page keeps
// them) until the hand-back, which happens between utterances (the browser's VAD says none
// is under way); the server's new stream gets every chunk after. So no word is transcribed
// twice or not at all. The hand-back opens a new server stream rather than resuming the old
// one: a resumed session would carry on from its own last chunk, re-transcribing what the
// page already has. The local segments are uploaded to the old session
// (POST /api/v1/sessions/{id}/segments, idempotent by segment id), so its history holds the
// server's finals and then the page's.

import { apiBase, authHeaders } from "./api.js";
import { LocalAsr } from "./local-asr.js";
export { keptListing } from "./model-store.js";

const PROBE_EVERY_MS = 1000;
const MAX_WAIT_FOR_PAUSE_MS = 10000; // hand back mid-speech after this (a word may be cut)
const MAX_UTTERANCE_CHUNKS = 250; // 25 s: close a local utterance the VAD never ends
const UPLOAD_ATTEMPTS = 5;

function toFloat(pcm16) {
  const ints = new Int16Array(pcm16);
  const out = new Float32Array(ints.length);
  for (let i = 0; i < ints.length; i += 1) out[i] = ints[i] / 32768;
  return out;
}

export class LocalMode {
  /**
   * @param {object} o
   * @param {object} o.listing the kept model (keptListing())
   * @param {string} o.sessionId the server session the local segments belong to ("" if none)
   * @param {number} o.sessionStartS where that server session's time 0 is in capture time
   * @param {number} o.fromS capture time of the first chunk given to start()
   * @param {(segment) => void} o.onSegment a local segment: {utterance, start, end, text}
   *   in seconds from fromS
   * @param {() => void} o.onBack the server is back and this is a pause: chunks after this
   *   one go to a new server stream
   * @param {(uploaded, error) => void} o.onUploaded after the hand-back's upload
   */
  constructor(o) {
    Object.assign(this, o);
    this.asr = null;
    this.pending = []; // chunks before the worker is ready
    this.segments = [];
    this.inSpeech = false;
    this.closeNext = false;
    this.openChunks = 0;
    this.returningSince = 0;
    this.back = false;
    this.stopped = false;
    this.ready = false;
    this.utterances = 0; // closed so far
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
  }

  /** Loads the worker, feeds it the chunks kept since the server's last final, and probes. */
  async start(chunks, threads) {
    this.asr = new LocalAsr({
      onSegment: (s) => {
        const id = `${this.tag}.${this.segments.length + 1}`;
        this.segments.push({ id, start: s.start, end: s.end, text: s.text });
        this.onSegment(s);
      },
      onDone: (d) => {
        if (this.back && d.utterance === this.lastUtterance) this.resolveFinished();
      },
      onError: (message) => console.warn("local transcription:", message),
    });
    await this.asr.start(this.listing, { threads });
    for (const data of [...chunks, ...this.pending.splice(0)]) this.feed(data);
    this.ready = true;
    this.probe();
  }

  /** One live 100-ms chunk of PCM16 (false once handed back: it belongs to the server). */
  push(data) {
    if (this.back) return false;
    if (!this.ready) {
      this.pending.push(data);
      return true;
    }
    if (this.returningSince && (!this.inSpeech || Date.now() - this.returningSince > MAX_WAIT_FOR_PAUSE_MS)) {
      this.feed(data, true);
      this.back = true;
      this.lastUtterance = this.utterances - 1;
      this.onBack();
      this.upload();
      return true;
    }
    this.feed(data);
    return true;
  }

  feed(data, end = false) {
    this.openChunks += 1;
    const close = end || this.closeNext || this.openChunks >= MAX_UTTERANCE_CHUNKS;
    this.asr.feed(toFloat(data), { end: close });
    if (close) {
      this.closeNext = false;
      this.openChunks = 0;
      this.utterances += 1;
    }
  }

  /** The browser's VAD: an utterance ends (closed with the next chunk) or begins. */
  speech(kind) {
    this.inSpeech = kind === "BEGIN";
    if (kind === "END" && this.openChunks > 0) this.closeNext = true;
  }

  async probe() {
    while (!this.stopped && !this.returningSince) {
      await new Promise((resolve) => setTimeout(resolve, PROBE_EVERY_MS));
      try {
        const r = await fetch(apiBase() + "/health", { headers: authHeaders("application/json"), cache: "no-store" });
        if (r.ok) this.returningSince = Date.now();
      } catch {
        // still unreachable
      }
    }
  }

  /** After the hand-back: the last utterance decoded, the segments go to the old session. */
  async upload() {
    await Promise.race([this.finished, new Promise((resolve) => setTimeout(resolve, 30000))]);
    this.stop();
    const segments = this.segments.map((s) => ({
      id: s.id,
      start_s: Math.max(0, this.fromS - this.sessionStartS + s.start),
      end_s: Math.max(0, this.fromS - this.sessionStartS + s.end),
      text: s.text,
    }));
    if (!this.sessionId || !segments.length) {
      this.onUploaded(0, this.sessionId ? null : "no server session to add them to");
      return;
    }
    let error = null;
    for (let attempt = 0; attempt < UPLOAD_ATTEMPTS; attempt += 1) {
      try {
        const r = await fetch(`${apiBase()}/sessions/${encodeURIComponent(this.sessionId)}/segments`, {
          method: "POST",
          headers: { ...authHeaders("application/json"), "Content-Type": "application/json" },
          body: JSON.stringify({ segments }),
        });
        const body = await r.json().catch(() => ({}));
        if (r.ok) {
          this.onUploaded(body.added + body.repeated, null);
          return;
        }
        error = body.error?.message || `HTTP ${r.status}`;
        if (r.status < 500 && r.status !== 429) break; // retrying will not help
      } catch (err) {
        error = err.message || String(err);
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** attempt));
    }
    this.onUploaded(0, error);
  }

  /** Stop pressed while local: the open utterance is decoded, then the worker ends. */
  async finish() {
    if (this.back) return;
    this.back = true;
    if (this.ready && this.openChunks > 0) {
      this.feed(new ArrayBuffer(0), true);
      this.lastUtterance = this.utterances - 1;
      await Promise.race([this.finished, new Promise((resolve) => setTimeout(resolve, 30000))]);
    }
    this.stop();
  }

  stop() {
    this.stopped = true;
    this.asr?.stop();
  }
}
