// Picks the stream's transport: WebRTC first (Opus over RTP, the lowest delay), and the
// WebSocket by itself when WebRTC cannot start or connect (no RTCPeerConnection, ICE blocked
// by a firewall or proxy, a server without aiortc). Until WebRTC is connected the
// microphone's 100-ms chunks are kept, so a fallback sends the WebSocket what was said while
// WebRTC was trying. Same interface as StreamClient; the two clients are made by factories.

import { RTC_TRANSPORT_ERRORS } from "./rtc-client.js";

const MAX_KEPT_CHUNKS = 300; // 30 s of 100-ms chunks

export class AutoTransport {
  /**
   * @param {object} options
   * @param {(handlers) => object | null} options.makeRtc  an RtcStreamClient, or null when
   *   WebRTC is not to be tried
   * @param {(handlers) => object} options.makeWs  a StreamClient
   * @param {object} options.handlers  StreamClient's, plus onFallback(error)
   */
  constructor({ makeRtc, makeWs, handlers }) {
    this.makeRtc = makeRtc;
    this.makeWs = makeWs;
    this.handlers = handlers || {};
    this.client = null;
    this.kind = null; // "webrtc" or "websocket"
    this.kept = []; // chunks while WebRTC is not yet connected
    this.keeping = true;
    this.finishRequested = false;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get transport() {
    return this.client ? this.client.transport : "idle";
  }

  start() {
    const rtc = this.makeRtc(this.wrap("webrtc"));
    if (rtc) {
      this.client = rtc;
      this.kind = "webrtc";
      rtc.start();
    } else {
      this.fallBack(null); // not tried: nothing to tell
    }
    return this;
  }

  /** A chunk captured at `atS` (s; the WebRTC client's prefix places it by that). */
  sendAudio(data, atS) {
    if (this.keeping) {
      this.kept.push(data);
      if (this.kept.length > MAX_KEPT_CHUNKS) this.kept.shift();
    }
    return this.client ? this.client.sendAudio(data, atS) : true;
  }

  finish() {
    this.finishRequested = true;
    this.client?.finish();
    return this.done;
  }

  abort() {
    this.keeping = false;
    this.client?.abort();
    return this.done;
  }

  wrap(kind) {
    const h = this.handlers;
    return {
      ...h,
      onState: (state, detail) => {
        if (this.kind !== kind) return;
        if (state === "connected") {
          this.keeping = false;
          this.kept = [];
        }
        h.onState?.(state, { ...detail, kind });
      },
      onClosed: (error) => {
        if (this.kind !== kind) return;
        const client = this.client;
        if (kind === "webrtc" && error && !client.everStarted && RTC_TRANSPORT_ERRORS.has(error.code)) {
          this.fallBack(error);
          return;
        }
        this.keeping = false;
        h.onClosed?.(error);
        this.resolveDone(error);
      },
    };
  }

  fallBack(error) {
    this.kind = "websocket";
    if (error) this.handlers.onFallback?.(error);
    const ws = this.makeWs(this.wrap("websocket"));
    this.client = ws;
    ws.start();
    const kept = this.kept;
    this.kept = [];
    for (const chunk of kept) ws.sendAudio(chunk);
    this.keeping = false; // the WebSocket client keeps what it has not sent itself
    if (this.finishRequested) ws.finish();
  }
}
