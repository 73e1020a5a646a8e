// The WebSocket transport: one server session across any number of connections. Sends the
// config, then 100-ms PCM16 chunks within the server's credit; reconnects with backoff when
// the connection drops and resumes the same session, resending the chunks the server has
// not acknowledged and asking for the events it has not delivered (resume.js). The socket
// class, clock and timers are injected, so Node's tests drive it with a fake socket.

import {
  configMessage,
  FATAL_CLOSE_CODES,
  FINISH_MESSAGE,
  OVERLOADED_CLOSE_CODE,
  parseServerMessage,
} from "./protocol.js";
import { ResumeState } from "./resume.js";

const OPEN = 1;
const HIGH_WATER_BYTES = 256 * 1024;

export class StreamClient {
  /**
   * @param {object} options
   * @param {() => string} options.url  the ws(s):// URL, read at every (re)connection
   * @param {() => string[]} [options.protocols]  subprotocols to offer (the token), read
   *   at every (re)connection
   * @param {object} options.handlers  onState(state, detail), onStarted(started, outcome),
   *   onResult(result, eventSeq), onSpeechEvent(event, eventSeq), onMetrics(metrics),
   *   onRtt(ms, smoothedMs), onServerError(error), onClosed(error | null)
   */
  constructor(options) {
    this.url = options.url;
    this.protocols = options.protocols || null;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.handlers = options.handlers || {};
    this.now = options.now || (() => performance.now());
    this.timers = options.timers || globalThis;
    this.random = options.random || Math.random;
    this.initialBackoffMs = options.initialBackoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
    this.maxInitialAttempts = options.maxInitialAttempts ?? 3;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10000;
    this.finishTimeoutMs = options.finishTimeoutMs ?? 60000;
    this.defaultGraceS = options.defaultGraceS ?? 30;
    this.extraConfig = options.extraConfig || {};
    this.state = new ResumeState({ maxBufferedMs: options.maxBufferedMs ?? 120000 });
    this.transport = "idle"; // connecting, connected, reconnecting, closed
    this.ws = null;
    this.everStarted = false;
    this.attempts = 0;
    this.droppedAt = null;
    this.graceS = this.defaultGraceS;
    this.finishRequested = false;
    this.finishSent = false;
    this.closedError = null;
    this.lastServerError = null;
    this.srtt = null;
    this.timer = null;
    this.pumpTimer = null;
    this.finishTimer = null;
    this.stats = { connections: 0, reconnects: 0, duplicates: 0, chunksSent: 0, chunksResent: 0 };
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  start() {
    this.connect();
    return this;
  }

  /** Queues one chunk of PCM16 bytes; false when too much audio waits unacknowledged. */
  sendAudio(data) {
    if (this.transport === "closed" || this.finishRequested) return false;
    if (!this.state.addChunk(data)) {
      this.fail({ code: "BUFFER_FULL", message: "" });
      return false;
    }
    this.pump();
    return true;
  }

  /** No more audio: FINISH once every chunk is out; resolves when the server closes. */
  finish() {
    if (!this.finishRequested && this.transport !== "closed") {
      this.finishRequested = true;
      this.finishTimer = this.timers.setTimeout(
        () => this.fail({ code: "FINISH_TIMEOUT", message: "" }),
        this.finishTimeoutMs,
      );
      this.pump();
    }
    return this.done;
  }

  /** Ends at once (page closing, second Stop). */
  abort() {
    this.end(null, 1000, "aborted");
    return this.done;
  }

  setTransport(state, detail = {}) {
    this.transport = state;
    this.handlers.onState?.(state, detail);
  }

  connect() {
    this.state.onConnecting();
    this.finishSent = false;
    this.lastServerError = null;
    this.stats.connections += 1;
    this.setTransport(this.everStarted ? "reconnecting" : "connecting", {
      attempt: this.attempts + 1,
    });
    let ws;
    try {
      ws = this.protocols
        ? new this.WebSocket(this.url(), this.protocols())
        : new this.WebSocket(this.url());
    } catch (err) {
      this.fail({ code: "BAD_URL", message: String(err && err.message) });
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      ws.send(configMessage({ ...this.state.resumeFields(), extra: this.extraConfig }));
    };
    ws.onmessage = (event) => {
      if (ws === this.ws) this.onMessage(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.onClose(event.code, event.reason || "");
    };
    ws.onerror = () => {}; // a close event follows with the code
    this.clearTimer();
    this.timer = this.timers.setTimeout(() => {
      if (ws === this.ws && !this.state.connected) this.drop(ws, 4000, "no session_started");
    }, this.connectTimeoutMs);
  }

  drop(ws, code, reason) {
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    if (ws === this.ws) this.onClose(code, reason);
  }

  onMessage(data) {
    if (typeof data !== "string") return; // the server sends text frames only
    let msg;
    try {
      msg = parseServerMessage(data);
    } catch {
      return; // not JSON: ignore it rather than break the session
    }
    const d = msg.data;
    switch (msg.type) {
      case "session_started": {
        this.clearTimer();
        const outcome = this.state.onSessionStarted(d);
        if (d.resume_grace_s > 0) this.graceS = d.resume_grace_s;
        const first = !this.everStarted;
        this.everStarted = true;
        if (!first) this.stats.reconnects += 1;
        this.attempts = 0;
        this.droppedAt = null;
        this.setTransport("connected", { sessionId: this.state.sessionId, outcome });
        this.handlers.onStarted?.(d, first ? "new" : outcome);
        this.pump();
        break;
      }
      case "result":
      case "speech_event":
        if (!this.state.acceptEvent(msg.event_seq)) {
          this.stats.duplicates += 1;
          return;
        }
        if (msg.type === "result") this.handlers.onResult?.(d, msg.event_seq);
        else this.handlers.onSpeechEvent?.(d, msg.event_seq);
        break;
      case "ack": {
        const rtt = this.state.onAck(d, this.now());
        if (rtt !== null) {
          this.srtt = this.srtt === null ? rtt : 0.8 * this.srtt + 0.2 * rtt;
          this.handlers.onRtt?.(rtt, this.srtt);
        }
        this.handlers.onAck?.(d);
        this.pump();
        break;
      }
      case "metrics":
        this.handlers.onMetrics?.(d);
        break;
      case "error":
        this.lastServerError = d;
        this.handlers.onServerError?.(d);
        break;
      default:
        break;
    }
  }

  pump() {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || !this.state.connected) return;
    let chunk;
    while (ws.bufferedAmount < HIGH_WATER_BYTES && (chunk = this.state.takeNext(this.now()))) {
      if (chunk.sends) this.stats.chunksResent += 1;
      chunk.sends = (chunk.sends || 0) + 1;
      this.stats.chunksSent += 1;
      ws.send(chunk.data);
    }
    if (ws.bufferedAmount >= HIGH_WATER_BYTES && !this.state.allSent() && !this.pumpTimer) {
      this.pumpTimer = this.timers.setTimeout(() => {
        this.pumpTimer = null;
        this.pump();
      }, 50);
    }
    if (this.finishRequested && !this.finishSent && this.state.allSent()) {
      this.finishSent = true;
      ws.send(FINISH_MESSAGE);
    }
  }

  onClose(code, reason) {
    this.ws = null;
    this.clearTimer();
    this.state.connected = false;
    if (this.transport === "closed") return;
    if (this.finishSent && code === 1000) {
      this.end(null);
      return;
    }
    const serverError = this.lastServerError;
    if (FATAL_CLOSE_CODES.has(code)) {
      this.end(serverError || { code: `CLOSE_${code}`, message: reason });
      return;
    }
    if (!this.everStarted) {
      this.attempts += 1;
      if (this.attempts >= this.maxInitialAttempts) {
        this.end(serverError || { code: "UNREACHABLE", message: reason });
        return;
      }
    } else {
      if (this.droppedAt === null) this.droppedAt = this.now();
      this.attempts += 1;
      if (this.now() - this.droppedAt > this.graceS * 1000) {
        this.end(serverError || { code: "RESUME_EXPIRED", message: reason });
        return;
      }
    }
    const base = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** (this.attempts - 1));
    const delay =
      (code === OVERLOADED_CLOSE_CODE ? Math.max(base, 2000) : base) * (0.5 + this.random() / 2);
    this.setTransport(this.everStarted ? "reconnecting" : "connecting", {
      inMs: delay,
      code,
      error: serverError,
    });
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      if (this.transport !== "closed") this.connect();
    }, delay);
  }

  fail(error) {
    this.end(error, 1000, "client error");
  }

  end(error, closeCode, closeReason) {
    if (this.transport === "closed") return;
    this.clearTimer();
    if (this.pumpTimer) this.timers.clearTimeout(this.pumpTimer);
    if (this.finishTimer) this.timers.clearTimeout(this.finishTimer);
    this.pumpTimer = this.finishTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws && closeCode) {
      try {
        ws.close(closeCode, closeReason);
      } catch {
        // already closed
      }
    }
    this.closedError = error;
    this.setTransport("closed", { error });
    this.handlers.onClosed?.(error);
    this.resolveDone(error);
  }

  clearTimer() {
    if (this.timer) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }
}
