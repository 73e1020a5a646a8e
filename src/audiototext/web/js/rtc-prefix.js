// The audio a new WebRTC stream captured before its track connected (seconds on a slow
// network): sent on the data channel as PCM16 messages and {"prefix": {"bytes": N}}, and put
// before the track's audio by the server (rtc_prefix.py). Cut at the capture time the
// connection came up: the track carries what follows, so nothing is sent twice.
// A resumed session's prefix is the audio the server missed while the connection was down:
// it starts where the session's stream stands (session_started's next_seq S: chunk S starts
// (S - 1) x 100 ms into the stream), so it waits for that (awaitStart, then startAt).

const BYTES_PER_S = 32000; // PCM16 at 16 kHz mono
export const MAX_PREFIX_S = 10; // the server's limit; beyond it the oldest go

export class AudioPrefix {
  constructor() {
    this.chunks = []; // [{data, atS}] not handed out yet
    this.startS = this.cutS = this.nextS = null; // capture times: first byte, cut, after last
    this.bytes = 0; // handed out by take()
    this.closed = false; // the capture stopped
    this.waitingStart = false; // a resume's start is not known yet
    this.nextSeq = null; // the server's next chunk, where a resume's prefix starts
  }

  /** A resume's prefix: nothing goes until startAt() says where the server stands. */
  awaitStart() {
    this.waitingStart = true;
  }

  /**
   * Start at capture time `atS` (the session's chunk `nextSeq`): what is kept before it goes.
   * When the kept audio does not reach back that far (over MAX_PREFIX_S down), it starts at
   * the oldest kept: the caller moves its stream origin by `startS - atS`.
   */
  startAt(atS, nextSeq) {
    this.waitingStart = false;
    this.nextSeq = nextSeq;
    if (this.cutS !== null && atS >= this.cutS) {
      this.chunks = []; // the server has it all (the track's audio follows)
      this.startS = this.cutS;
      return;
    }
    while (this.chunks.length && this.chunks[0].atS + this.chunks[0].data.byteLength / BYTES_PER_S <= atS) {
      this.chunks.shift();
    }
    const first = this.chunks[0];
    if (first && first.atS < atS) {
      const skip = 2 * Math.round((atS - first.atS) * 16000);
      this.chunks[0] = { data: first.data.slice(skip), atS };
    }
    this.startS = this.chunks.length ? Math.max(atS, this.chunks[0].atS) : (this.cutS ?? atS);
  }

  /** A PCM16 chunk captured from `atS`. */
  push(data, atS) {
    if (this.closed || (this.cutS !== null && atS >= this.cutS)) return;
    // Connected before the first chunk came: the stream starts at the cut, not before.
    if (this.startS !== null && atS < this.startS && !this.waitingStart) return;
    this.startS ??= atS;
    this.chunks.push({ data, atS });
    this.nextS = atS + data.byteLength / BYTES_PER_S;
    while (this.chunks.length > 1 && this.nextS - this.chunks[0].atS > MAX_PREFIX_S + 1e-6) {
      this.chunks.shift();
      this.startS = this.chunks[0].atS;
    }
  }

  cut(atS) {
    this.cutS ??= atS;
    this.startS ??= atS;
  }

  close() {
    this.closed = true;
  }

  get complete() {
    if (this.cutS === null || this.waitingStart) return false;
    return this.closed || this.nextS >= this.cutS || this.startS >= this.cutS;
  }

  /** Capture time of the server stream's time 0. */
  get originS() {
    return this.startS ?? this.cutS;
  }

  /** The pieces before the cut not yet handed out (none until the cut is known). */
  take() {
    if (this.cutS === null || this.waitingStart) return [];
    const out = [];
    for (const { data, atS } of this.chunks.splice(0)) {
      const keep = Math.min(data.byteLength, 2 * Math.round((this.cutS - atS) * 16000));
      if (keep > 0) out.push(keep < data.byteLength ? data.slice(0, keep) : data);
    }
    for (const piece of out) this.bytes += piece.byteLength;
    return out;
  }

  endMessage() {
    const resumed = this.nextSeq === null ? {} : { next_seq: this.nextSeq };
    return JSON.stringify({ prefix: { bytes: this.bytes, ...resumed } });
  }
}
