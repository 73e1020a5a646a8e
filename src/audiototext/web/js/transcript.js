// The transcript as data: utterances keyed by (session, utterance_id). A partial replaces the
// previous partial of its utterance, the final replaces the partial and is never replaced
// again; results whose event_seq was already applied are dropped. Nothing is pruned while
// the page lives (Clear empties it). Pure: no DOM.
//
// Each Start opens a new server session whose stream time and utterance ids restart; the
// model keeps sessions apart and shifts each one's times to follow the previous one, so an
// export of several sessions has increasing timestamps.

export class TranscriptModel {
  constructor() {
    this.clear();
  }

  clear() {
    this.utterances = new Map(); // key -> utterance
    this.session = 0;
    this.offsetS = 0;
    this.lastEventSeq = 0;
    this.finalKeys = new Set();
    this.hasSession = false;
  }

  /**
   * A new server session starts (not a resume): later results belong to it. `startS` is
   * where its stream time 0 falls on the page's timeline (e.g. the audio already streamed by
   * earlier sessions); it is never before the end of the utterances already held.
   */
  beginSession(startS = 0) {
    if (this.hasSession) this.session += 1;
    this.hasSession = true;
    this.offsetS = Math.max(this.endS(), startS);
    this.lastEventSeq = 0;
  }

  /** The latest end time of any utterance (seconds, page timeline). */
  endS() {
    let end = 0;
    for (const u of this.utterances.values()) {
      if (u.end_s !== null && u.end_s > end) end = u.end_s;
    }
    return end;
  }

  /** The page-timeline time of a stream time of the current session. */
  toPageTime(streamS) {
    return streamS + this.offsetS;
  }

  /**
   * Applies one normalised result (protocol.js) with its event_seq. Returns
   * { change: "partial" | "final" | "ignored", utterance } where utterance is the stored one.
   */
  apply(result, eventSeq = 0) {
    if (!this.hasSession) this.beginSession();
    if (eventSeq) {
      if (eventSeq <= this.lastEventSeq) return { change: "ignored", reason: "repeat" };
      this.lastEventSeq = eventSeq;
    }
    const key = `${this.session}:${result.utterance_id}`;
    if (this.finalKeys.has(key)) return { change: "ignored", reason: "after final" };
    const times = spanOf(result);
    const utterance = {
      key,
      session: this.session,
      utterance_id: result.utterance_id,
      is_final: result.is_final,
      origin: result.origin || "server", // "local": transcribed in this browser (handover.js)
      text: (result.text || "").trim(),
      stable_text: (result.stable_text || "").trim(),
      stability: result.stability || 0,
      start_s: times ? times[0] + this.offsetS : null,
      end_s: times ? times[1] + this.offsetS : null,
      segments: shift(result.segments, this.offsetS),
      words: shift(result.words, this.offsetS),
    };
    const previous = this.utterances.get(key);
    if (!utterance.text && !result.is_final && !previous) {
      return { change: "ignored", reason: "empty partial" };
    }
    this.utterances.set(key, utterance);
    if (result.is_final) this.finalKeys.add(key);
    return { change: result.is_final ? "final" : "partial", utterance };
  }

  /** Every utterance in order (session, then utterance id). */
  list() {
    return [...this.utterances.values()].sort(
      (a, b) => a.session - b.session || a.utterance_id - b.utterance_id,
    );
  }

  finals() {
    return this.list().filter((u) => u.is_final && u.text);
  }

  partials() {
    return this.list().filter((u) => !u.is_final);
  }
}

function spanOf(result) {
  const spans = result.segments && result.segments.length ? result.segments : result.words || [];
  if (!spans.length) return null;
  let start = Infinity;
  let end = -Infinity;
  for (const s of spans) {
    start = Math.min(start, s.start_s);
    end = Math.max(end, s.end_s);
  }
  return [start, Math.max(start, end)];
}

function shift(list, offset) {
  return (list || []).map((s) => ({
    start_s: s.start_s + offset,
    end_s: s.end_s + offset,
    text: s.text,
  }));
}
