// One stream of local transcription (what local-asr-worker.js runs): the open utterance's
// audio, decoded a 30-s window at a time as it arrives and the rest when it is closed, with
// Whisper's seek (audio after the last complete timestamp pair goes into the next window), its
// silence test, and a greedy loop's repeats dropped. Pure module: the engine (a LocalWhisper)
// and where messages go are passed in, so Node's tests run it too.

import { SAMPLE_RATE_HZ } from "./log-mel.js";

// Whisper's silence test (decoding.py's NO_SPEECH_THRESHOLD, LOG_PROB_THRESHOLD).
const NO_SPEECH_THRESHOLD = 0.6;
const LOG_PROB_THRESHOLD = -1.0;

/**
 * A greedy decoder's loop at the end of a piece: "at the station tomorrow morning, tomorrow
 * morning." → "at the station tomorrow morning." (a phrase of 2+ words said again at once,
 * compared without case and punctuation); a single word only when said three times ("morning,
 * morning, morning": "that that" is English). As with the server's collapse_repeats, a real
 * immediate repetition costs one phrase; a loop would cost a line of invented text.
 */
export function collapseLoop(text) {
  let words = text.trim().split(/\s+/);
  const bare = (w) => w.toLowerCase().replace(/[^\p{L}\p{N}']/gu, "");
  for (let again = true; again; ) {
    again = false;
    let run = 1; // the last word said that many times in a row
    while (run < words.length && bare(words.at(-1 - run)) === bare(words.at(-1))) run += 1;
    const loops = run >= 3 ? [[1, run - 1]] : []; // [words in the phrase, words to drop]
    for (let n = Math.floor(words.length / 2); n >= 2; n -= 1) loops.push([n, n]);
    for (const [n, cut] of loops) {
      const tail = words.slice(-n).map(bare).join(" ");
      if (tail && tail === words.slice(-2 * n, -n).map(bare).join(" ")) {
        const end = words.at(-1).match(/[.!?]$/)?.[0] || "";
        words = words.slice(0, -cut);
        words[words.length - 1] = words.at(-1).replace(/[,;:]$/, "") + (/[.!?]$/.test(words.at(-1)) ? "" : end);
        again = true;
        break;
      }
    }
  }
  return words.join(" ");
}

export class LocalSession {
  /**
   * @param {object} engine a LocalWhisper
   * @param {object} settings timestamps, language, task, maxNewTokens (null: 12 + 10 per
   *   second of audio, the streaming engine's budget: greedy decoding without fallback loops)
   * @param {function} emit receives the worker's segment and done messages
   */
  constructor(engine, settings, emit) {
    this.engine = engine;
    this.settings = settings;
    this.emit = emit;
    this.reset();
  }

  reset() {
    this.clock = 0; // samples received since the start or the last reset
    this.utterance = 0;
    this.open = { start: 0, parts: [], length: 0, audioS: 0, busyMs: 0 };
  }

  /** Appends 16-kHz samples to the open utterance. */
  push(samples) {
    const open = this.open;
    if (open.length === 0 && open.audioS === 0) open.start = this.clock;
    if (!samples.length) return;
    open.parts.push(samples);
    open.length += samples.length;
    this.clock += samples.length;
  }

  take(samples) {
    const open = this.open;
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

  /** Decodes whole 30-s windows of the open utterance, or all of it when `closing`. */
  async decode(closing) {
    const open = this.open;
    const window = this.engine.windowSeconds * SAMPLE_RATE_HZ;
    while (open.length >= window || (closing && open.length > 0)) {
      const busy = performance.now();
      const start = open.start;
      const audio = this.take(Math.min(window, open.length));
      const durationS = audio.length / SAMPLE_RATE_HZ;
      const maxNewTokens = this.settings.maxNewTokens ?? Math.floor(12 + 10 * durationS);
      const result = await this.engine.transcribe(audio, { ...this.settings, maxNewTokens });
      open.audioS += durationS;
      // Unfinished text after the last timestamp pair: its audio goes back for the next window.
      const consumed = Math.round(result.consumedS * SAMPLE_RATE_HZ);
      const again = audio.length === window && consumed >= SAMPLE_RATE_HZ && consumed < audio.length;
      if (again) {
        open.parts.unshift(audio.subarray(consumed));
        open.length += audio.length - consumed;
        open.start = start + consumed;
      }
      const silent = result.noSpeechProb > NO_SPEECH_THRESHOLD && result.avgLogprob < LOG_PROB_THRESHOLD;
      if (!silent) this.emitPieces(again || !result.rest ? result.pieces : [...result.pieces, result.rest], start, result);
      open.busyMs += performance.now() - busy;
    }
    if (closing) {
      this.emit({ type: "done", utterance: this.utterance, audioS: open.audioS, busyMs: open.busyMs });
      this.utterance += 1;
      this.open = { start: this.clock, parts: [], length: 0, audioS: 0, busyMs: 0 };
    }
  }

  emitPieces(pieces, start, result) {
    let previous = "";
    for (let [n, piece] of pieces.entries()) {
      if (!/[\p{L}\p{N}]/u.test(piece.text)) continue; // no word in it
      piece = { ...piece, text: collapseLoop(piece.text) };
      // A greedy decoder's repetition loop (streaming/_decode.collapse_repeats, by piece): a
      // piece said again at once, or a trailing fragment of the one before, is dropped;
      // compared without case or punctuation ("morning." then the unfinished "morning,").
      const said = piece.text.toLowerCase().replace(/[^\p{L}\p{N}' ]/gu, "").trim();
      const fragment = n === pieces.length - 1 && !/[.!?]$/.test(piece.text) && previous.startsWith(said);
      if (said === previous || fragment) continue;
      previous = said;
      this.emit({
        type: "segment",
        utterance: this.utterance,
        start: start / SAMPLE_RATE_HZ + piece.start,
        end: start / SAMPLE_RATE_HZ + piece.end,
        text: piece.text,
        tokens: piece.tokens,
        noSpeechProb: result.noSpeechProb,
        avgLogprob: result.avgLogprob,
      });
    }
  }
}
