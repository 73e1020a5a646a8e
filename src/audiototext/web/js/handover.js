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
import { keptListing } from "./model-store.js";

const PROBE_EVERY_MS = 1000;
const MAX_WAIT_FOR_PAUSE_MS = 10000; // hand back mid-speech after this (a word may be cut)
const MAX_UTTERANCE_CHUNKS = 250; // 25 s: close a local utterance the VAD never ends
const UPLOAD_ATTEMPTS = 5;
const PREROLL_CHUNKS = 10;
const SPEECH_LEAD_S = PREROLL_CHUNKS / 10; // fed before the VAD's "speech": the preroll's second
// ... and after its end: END is stamped where the silence began, and live chunks go on to the
// chunk after the VAD's decision (100 ms later); cut at the last word, Whisper repeats it.
const SPEECH_TAIL_S = 0.3;
// Speech under way at the server's last final is that final's (its words end before the VAD's
// END, which comes later): fed only when it goes on this long past it (Whisper wrote "You" for
// the last moments of a word).
const CONTINUED_SPEECH_S = 1.0;
const BYTES_PER_S = 32000; // PCM16 at 16 kHz

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
   * @param {() => Array} o.vadLog the browser VAD's [kind, captureS] events (main.js)
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
    this.closeNext = false;
    this.openChunks = 0;
    this.returningSince = 0;
    this.back = false;
    this.stopped = false;
    this.ready = false;
    this.inSpeech = !!o.inSpeech; // the VAD's state when the server was lost
    this.utterances = 0; // closed so far
    this.decoded = 0; // of them, decoded ("done")
    this.starts = []; // per utterance: {workerS, captureS} of its first chunk
    this.preroll = []; // [chunk, captureS] of the last second of silence
    this.seenS = o.fromS; // capture time of the next chunk
    this.fedS = 0; // audio given to the worker
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
  }

  /** Loads the worker, feeds it the chunks kept since the server's last final, and probes. */
  async start(chunks, threads) {
    this.asr = new LocalAsr({
      onSegment: (s) => {
        // Worker time counts only the audio fed (silence between utterances is not):
        // back to capture time through the utterance's first chunk.
        const at = this.starts[s.utterance];
        const shift = at.captureS - at.workerS - this.fromS;
        const segment = { ...s, start: s.start + shift, end: s.end + shift };
        this.segments.push({ ...segment, id: `${this.tag}.${this.segments.length + 1}` });
        this.onSegment(segment);
      },
      onDone: () => {
        this.decoded += 1;
        if (this.back && this.decoded >= this.utterances) this.resolveFinished();
      },
      onError: (message) => console.warn("local transcription:", message),
    });
    await this.asr.start(this.listing, { threads });
    // What was said since the server's last final and while the model loaded: an utterance
    // per stretch of the VAD's speech (from a second before it), as live audio is. The
    // silence between is not decoded: fed whole, Whisper wrote "you" for it.
    const all = [...chunks, ...this.pending.splice(0)];
    const plan = replayPlan(this.vadLog(), this.fromS, all.map((d) => d.byteLength / BYTES_PER_S));
    all.forEach((data, i) => {
      if (plan[i].closeBefore) this.close();
      if (plan[i].feed) this.feed(data);
      else this.keep(data);
      this.seenS += data.byteLength / BYTES_PER_S;
    });
    if (!this.inSpeech) this.close();
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
    const waited = this.returningSince && Date.now() - this.returningSince > MAX_WAIT_FOR_PAUSE_MS;
    if (this.returningSince && ((!this.inSpeech && !this.closeNext) || waited)) {
      this.close(); // between utterances: the next chunk is the new server stream's first
      this.back = true;
      if (this.decoded >= this.utterances) this.resolveFinished();
      this.onBack();
      this.upload();
      return false;
    }
    if (this.inSpeech || this.openChunks > 0) {
      this.feed(data);
      if (this.closeNext || this.openChunks >= MAX_UTTERANCE_CHUNKS) this.close();
    } else {
      this.keep(data);
    }
    this.seenS += data.byteLength / BYTES_PER_S;
    return true;
  }

  /** Silence between utterances is not decoded (Whisper makes words of it); its last second
   * is kept, as the VAD says "speech" a little after it starts. */
  keep(data) {
    this.preroll.push([data, this.seenS]);
    if (this.preroll.length > PREROLL_CHUNKS) this.preroll.shift();
  }

  feed(data, captureS = this.seenS) {
    if (this.openChunks === 0) this.starts[this.utterances] = { workerS: this.fedS, captureS };
    this.openChunks += 1;
    this.asr.feed(toFloat(data));
    this.fedS += data.byteLength / BYTES_PER_S;
  }

  /** Ends the open utterance (the worker decodes what is left of it). */
  close() {
    this.closeNext = false;
    if (this.openChunks === 0) return;
    this.asr.feed(new Float32Array(0), { end: true });
    this.openChunks = 0;
    this.utterances += 1;
  }

  /** The browser's VAD: an utterance begins (the preroll goes first) or ends. */
  speech(kind) {
    this.inSpeech = kind === "BEGIN";
    if (kind === "BEGIN" && this.ready && this.openChunks === 0) {
      for (const [data, at] of this.preroll) this.feed(data, at);
      this.preroll = [];
    }
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
    if (this.ready) {
      this.close();
      if (this.decoded >= this.utterances) this.resolveFinished();
      await Promise.race([this.finished, new Promise((resolve) => setTimeout(resolve, 30000))]);
    }
    this.stop();
  }

  stop() {
    this.stopped = true;
    this.asr?.stop();
  }
}

/**
 * Switches a recording session of the page (main.js's Page) to local transcription: the
 * server client is dropped, the chunks kept since its last final go to the worker first.
 * Returns false when no model is kept in this browser.
 */
export async function goLocal(page, session) {
  const listing = await keptListing();
  if (!listing || session.local || session.stopping) return false;
  const old = session.client;
  const sessionId = old?.client?.state?.sessionId || old?.client?.sessionId || "";
  session.client = null; // its events are ignored from now on
  old?.abort();
  session.lostAt ??= performance.now();
  const fromS = session.tail.length ? session.tail[0].s : session.audioS;
  page.model.beginSession(session.startS + fromS);
  let n = 0;
  const local = new LocalMode({
    listing,
    sessionId,
    sessionStartS: session.streamS,
    fromS,
    inSpeech: page.vadSpeaking,
    vadLog: () => page.vadLog,
    tag: `L${++session.locals}`,
    onSegment: (s) => {
      // From the loss to the first local text (bench/handover.py reads it).
      document.body.dataset.localAfterMs ??= Math.round(performance.now() - (session.lostAt ?? performance.now()));
      const span = { start_s: s.start, end_s: s.end, text: s.text };
      page.view.update(page.model.apply({ utterance_id: n++, is_final: true, text: s.text, segments: [span], origin: "local" }));
    },
    onBack: () => {
      session.local = null;
      session.streamS = session.audioS;
      session.tail = [];
      document.body.dataset.mode = "server";
      page.note.textContent = page.t("local.back");
      page.connect(session);
    },
    onUploaded: (count, error) => {
      page.note.textContent = error ? page.t("local.unsaved", { message: error }) : page.t("local.saved", { n: count });
      if (!error) page.history.reload();
    },
  });
  session.local = local;
  page.status.setTransport("local", {});
  page.note.textContent = page.t("local.on");
  document.body.dataset.mode = "local";
  const threads = globalThis.crossOriginIsolated ? Math.min(2, navigator.hardwareConcurrency || 1) : 1;
  try {
    await local.start(session.tail.map((c) => c.data), threads);
    // From the loss to the worker decoding (bench/handover.py reads it).
    document.body.dataset.localReadyMs = Math.round(performance.now() - session.lostAt);
  } catch (err) {
    console.warn("local transcription failed:", err);
    session.local = null;
    page.note.textContent = page.t("local.failed", { message: err.message || String(err) });
    page.connect(session);
    return true;
  }
  return true;
}

/**
 * How the chunks kept since the server's last final are replayed to the local worker: per
 * chunk (durations in s, the first at capture time `fromS`), whether it is fed (it overlaps
 * a stretch of the VAD's speech, the second before it (the VAD says "speech" a little late)
 * or the 0.3 s after it) and whether the open utterance closes before it (the stretch it belonged to
 * is over). `log` holds the VAD's [kind, captureS] events; speech under way at `fromS` is a
 * stretch from there when it goes on for CONTINUED_SPEECH_S past it (or has not ended).
 * Stretches less than the lead-in apart make one utterance.
 */
export function replayPlan(log, fromS, durations) {
  const stretches = []; // [start, end] in capture time; end Infinity while under way
  let open = null;
  for (const [kind, at] of log) {
    if (kind === "BEGIN" && open === null) open = Math.max(at - SPEECH_LEAD_S, fromS);
    else if (kind === "END" && open !== null) {
      const continued = open > fromS || at - fromS >= CONTINUED_SPEECH_S;
      if (at > fromS && continued) stretches.push([open, at + SPEECH_TAIL_S]);
      open = null;
    }
  }
  if (open !== null) stretches.push([open, Infinity]);
  const merged = [];
  for (const [start, end] of stretches) {
    const last = merged.at(-1);
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  const plan = [];
  let at = fromS;
  let previous = -1; // the stretch of the last chunk fed
  for (const d of durations) {
    const k = merged.findIndex(([start, end]) => at + d > start + 1e-6 && at < end - 1e-6);
    plan.push({ feed: k >= 0, closeBefore: previous >= 0 && k !== previous });
    if (k >= 0 || previous >= 0) previous = k;
    at += d;
  }
  return plan;
}
