// The audio a new WebRTC stream captured before its track connected (seconds on a slow
// network): sent on the data channel as PCM16 messages and {"prefix": {"bytes": N}}, and put
// before the track's audio by the server (rtc_prefix.py). Cut at the capture time the
// connection came up: the track carries what follows, so nothing is sent twice.

const BYTES_PER_S = 32000; // PCM16 at 16 kHz mono
export const MAX_PREFIX_S = 10; // the server's limit; beyond it the oldest go

export class AudioPrefix {
  constructor() {
    this.chunks = []; // [{data, atS}] not handed out yet
    this.startS = this.cutS = this.nextS = null; // capture times: first byte, cut, after last
    this.bytes = 0; // handed out by take()
    this.closed = false; // the capture stopped
  }

  /** A PCM16 chunk captured from `atS`. */
  push(data, atS) {
    if (this.closed || (this.cutS !== null && atS >= this.cutS)) return;
    // Connected before the first chunk came: the stream starts at the cut, not before.
    if (this.startS !== null && atS < this.startS) return;
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
    if (this.cutS === null) return false;
    return this.closed || this.nextS >= this.cutS || this.startS >= this.cutS;
  }

  /** Capture time of the server stream's time 0. */
  get originS() {
    return this.startS ?? this.cutS;
  }

  /** The pieces before the cut not yet handed out (none until the cut is known). */
  take() {
    if (this.cutS === null) return [];
    const out = [];
    for (const { data, atS } of this.chunks.splice(0)) {
      const keep = Math.min(data.byteLength, 2 * Math.round((this.cutS - atS) * 16000));
      if (keep > 0) out.push(keep < data.byteLength ? data.slice(0, keep) : data);
    }
    for (const piece of out) this.bytes += piece.byteLength;
    return out;
  }

  endMessage() {
    return JSON.stringify({ prefix: { bytes: this.bytes } });
  }
}
