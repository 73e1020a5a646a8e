// What a reconnect needs, without any I/O: the audio chunks the server has not acknowledged
// (numbered 1, 2, 3, ... in the order they were made), the last event received, the session
// id, and the send credit. Mirrors the Python client's UnackedAudio (client/_unacked.py).
//
// On a WebSocket the chunk number is implicit: the server numbers binary frames from 1, or
// from resume_from_seq after a resume. So after a reconnect the page resends exactly the
// chunks from ackedSeq + 1 on, in order, and asks for the events after lastEventSeq.
//
// With a shared session store (session_started.session_store: serve --session-store redis:)
// another server may resume the session from the chunk after ack.stored_seq, so acknowledged
// chunks after it are kept too (not counted as unacknowledged), a resume leaves
// resume_from_seq out and the server numbers frames from its session_started.next_seq.

export class ResumeState {
  constructor({ chunkMs = 100, maxBufferedMs = 120000 } = {}) {
    this.chunkMs = chunkMs;
    this.maxBufferedMs = maxBufferedMs;
    this.sessionId = "";
    this.chunks = []; // {seq, data, ms, sentAt}, in seq order, not yet acknowledged
    this.nextSeq = 1; // seq of the next chunk made
    this.sendSeq = 1; // next chunk to write on the current connection
    this.ackedSeq = 0; // highest seq the server acknowledged
    this.lastEventSeq = 0; // highest event_seq received
    this.creditMs = null; // null: the server has not spoken of credit on this connection
    this.connected = false;
    this.storedSeq = null; // null: no session store; else chunks after it are kept
    this.maxKeptMs = 300000; // acknowledged audio kept for the store, at most
  }

  /** Unacknowledged audio held (what the buffer limit counts). */
  get bufferedMs() {
    return this.chunks.reduce((ms, c) => (c.seq > this.ackedSeq ? ms + c.ms : ms), 0);
  }

  /** Queues a chunk; returns its seq, or 0 when the buffer of unacknowledged audio is full. */
  addChunk(data, ms = this.chunkMs) {
    if (this.bufferedMs + ms > this.maxBufferedMs) return 0;
    const seq = this.nextSeq++;
    this.chunks.push({ seq, data, ms, sentAt: 0 });
    return seq;
  }

  /** The config fields of a (re)connection: empty before the first session_started. */
  resumeFields() {
    if (!this.sessionId) return {};
    return {
      sessionId: this.sessionId,
      resumeFromSeq: this.storedSeq === null ? this.ackedSeq + 1 : undefined,
      resumeFromEvent: this.lastEventSeq + 1,
    };
  }

  /** A new connection is about to send its config: nothing of it is in flight yet. */
  onConnecting() {
    this.connected = false;
    this.creditMs = null;
    this.sendSeq = this.ackedSeq + 1;
    for (const c of this.chunks) c.sentAt = 0;
  }

  /**
   * The server accepted the config. Returns "new", "resumed", or "restarted" when we asked
   * to resume but the server opened a fresh session (the old one was gone): the remaining
   * audio then starts again from seq 1 and event numbering restarts.
   */
  onSessionStarted(started) {
    let outcome = "new";
    if (this.sessionId && started.resumed) {
      outcome = "resumed";
    } else if (this.sessionId && !started.resumed) {
      outcome = "restarted";
      this.chunks = this.chunks.filter((c) => c.seq > this.ackedSeq);
      this.renumberFromOne();
      this.lastEventSeq = 0;
    }
    if (started.session_store && this.storedSeq === null) this.storedSeq = 0;
    if (outcome === "resumed" && this.storedSeq !== null && started.next_seq) {
      // No resume_from_seq was sent: frames are numbered from the server's next_seq, which
      // a server that restored the session from the store may put below our last ack.
      this.sendSeq = started.next_seq;
      if (started.next_seq - 1 > this.ackedSeq) this.onAck({ seq: started.next_seq - 1 }, 0);
    }
    if (started.session_id) this.sessionId = started.session_id;
    this.creditMs = started.credit_ms === undefined ? null : started.credit_ms;
    this.connected = true;
    return outcome;
  }

  renumberFromOne() {
    let seq = 1;
    for (const c of this.chunks) {
      c.seq = seq++;
      c.sentAt = 0;
    }
    this.nextSeq = seq;
    this.ackedSeq = 0;
    this.sendSeq = 1;
  }

  /**
   * The server acknowledged every chunk up to ack.seq. Returns the round trip in ms of that
   * chunk when it was sent on this connection, else null.
   */
  onAck(ack, now) {
    let rtt = null;
    const acked = this.chunks.length ? this.chunks[ack.seq - this.chunks[0].seq] : undefined;
    if (acked && acked.seq === ack.seq && acked.sentAt && ack.seq > this.ackedSeq) {
      rtt = now - acked.sentAt;
    }
    if (ack.seq > this.ackedSeq) this.ackedSeq = ack.seq;
    if (this.storedSeq !== null && ack.stored_seq > this.storedSeq) this.storedSeq = ack.stored_seq;
    const floor = this.storedSeq === null ? this.ackedSeq : Math.min(this.ackedSeq, this.storedSeq);
    while (this.chunks.length && this.chunks[0].seq <= floor) this.chunks.shift();
    let kept = 0;
    for (const c of this.chunks) if (c.seq <= this.ackedSeq) kept += c.ms;
    while (kept > this.maxKeptMs && this.chunks.length && this.chunks[0].seq <= this.ackedSeq) {
      kept -= this.chunks.shift().ms; // bounded: a resume elsewhere may then miss audio
    }
    if (this.sendSeq < this.ackedSeq + 1) this.sendSeq = this.ackedSeq + 1;
    if (ack.credit_ms !== undefined) this.creditMs = ack.credit_ms;
    else if (this.creditMs !== null) this.creditMs = 0; // protobuf JSON omits a zero
    return rtt;
  }

  /** Audio written on this connection and not yet acknowledged. */
  inflightMs() {
    let ms = 0;
    for (const c of this.chunks) if (c.seq > this.ackedSeq && c.seq < this.sendSeq) ms += c.ms;
    return ms;
  }

  /**
   * The next chunk to write now, marked as sent, or null: nothing left, not connected, or no
   * credit. A chunk may always go alone when nothing is in flight and the credit covers half
   * of it (as in the Python client), so a small credit never deadlocks the stream.
   */
  takeNext(now) {
    if (!this.connected || this.sendSeq >= this.nextSeq || !this.chunks.length) return null;
    const index = this.sendSeq - this.chunks[0].seq;
    const chunk = this.chunks[index];
    if (!chunk) return null;
    if (this.creditMs !== null) {
      const inflight = this.inflightMs();
      const alone = inflight === 0 && this.creditMs >= chunk.ms / 2;
      if (!alone && inflight + chunk.ms > this.creditMs) return null;
    }
    chunk.sentAt = now;
    this.sendSeq = chunk.seq + 1;
    return chunk;
  }

  /** Every chunk made has been written on this connection. */
  allSent() {
    return this.sendSeq >= this.nextSeq;
  }

  /**
   * True the first time an event_seq is seen; events without a number (acks, metrics: 0)
   * always pass. A session numbers its events 1, 2, 3, ... and sends them in order, so one
   * at or below the last received is a repeat (e.g. resent after a resume).
   */
  acceptEvent(eventSeq) {
    if (!eventSeq) return true;
    if (eventSeq <= this.lastEventSeq) return false;
    this.lastEventSeq = eventSeq;
    return true;
  }
}
