// The microphone audio a WebRTC stream captured before its track connected. The track carries
// audio only from the moment ICE and DTLS are up (seconds on a slow network), so what was
// said between Start and then goes to the server on the data channel, as PCM16 messages and
// an end ({"prefix": {"bytes": N}}), and the server puts it before the track's audio. The
// cut is the capture time the connection came up: chunks before it are sent, the chunk it
// falls in up to it, later ones not (the track has them), so nothing is sent twice.

const BYTES_PER_S = 32000; // PCM16 at 16 kHz mono
export const MAX_PREFIX_S = 10; // the server's limit (rtc_prefix.py); longer: the oldest go

export class AudioPrefix {
  constructor() {
    this.chunks = []; // [{data: ArrayBuffer, atS}] not sent yet
    this.startS = null; // capture time of the prefix's first byte
    this.cutS = null;
    this.nextS = null; // capture time just after the last chunk pushed
    this.bytes = 0; // handed out by take()
    this.closed = false; // no more audio will come (Stop): complete with what there is
  }

  /** One capture chunk (PCM16) starting at capture time `atS`. */
  push(data, atS) {
    if (this.closed || (this.cutS !== null && atS >= this.cutS)) return;
    // Only when the connection came up before the first chunk did: the stream starts at the
    // cut, and that chunk's part before it (under 100 ms) is not sent.
    if (this.startS !== null && atS < this.startS) return;
    this.startS ??= atS;
    this.chunks.push({ data, atS });
    this.nextS = atS + data.byteLength / BYTES_PER_S;
    while (this.chunks.length > 1 && this.nextS - this.chunks[0].atS > MAX_PREFIX_S + 1e-6) {
      this.chunks.shift();
      this.startS = this.chunks[0].atS;
    }
  }

  /** The track's audio starts at capture time `atS` (the connection is up). */
  cut(atS) {
    if (this.cutS !== null) return;
    this.cutS = atS;
    this.startS ??= atS; // nothing before it: an empty prefix
  }

  /** No more chunks will come (the capture stopped). */
  close() {
    this.closed = true;
  }

  /** All of the prefix has been handed out by take(). */
  get complete() {
    if (this.cutS === null) return false;
    return this.closed || (this.nextS !== null && this.nextS >= this.cutS) || this.startS >= this.cutS;
  }

  /** Capture time of the server stream's time 0: the prefix's first byte. */
  get originS() {
    return this.startS ?? this.cutS;
  }

  /** The prefix's pieces ready to send (only once the cut is known), in order. */
  take() {
    if (this.cutS === null) return [];
    const out = [];
    for (const { data, atS } of this.chunks.splice(0)) {
      if (atS >= this.cutS) continue;
      const end = atS + data.byteLength / BYTES_PER_S;
      // The chunk the cut falls in: up to the cut, a whole number of samples.
      const piece = end <= this.cutS ? data : data.slice(0, 2 * Math.round((this.cutS - atS) * 16000));
      if (piece.byteLength) out.push(piece);
    }
    for (const piece of out) this.bytes += piece.byteLength;
    return out;
  }

  /** The end message (after every piece take() gave). */
  endMessage() {
    return JSON.stringify({ prefix: { bytes: this.bytes } });
  }
}
