// The WebRTC transport: the microphone track goes to the server as Opus over RTP, and the
// server's events come back on a data channel as the same JSON the WebSocket sends. The
// server (aiortc) does not trickle ICE, so the offer is posted once gathering is complete.
// A connection lost after the session started is resumed with a new offer carrying the
// session id and the next event wanted. Each connection sends on its data channel what its
// track missed (rtc-prefix.js): a new stream's audio from the first chunk, a resumed one's
// from where the server's stream stands (session_started's next_seq) up to the new track.
// Same interface and handlers as StreamClient; the browser's classes are injected for tests.

import { FINISH_MESSAGE, parseServerMessage } from "./protocol.js";
import { AudioPrefix, MAX_PREFIX_S } from "./rtc-prefix.js";

const CHUNK_S = 0.1; // the server numbers whole 100-ms chunks: chunk S starts at (S - 1) x 0.1 s

// Failures of the transport itself, before any session started: the WebSocket may work.
export const RTC_TRANSPORT_ERRORS = new Set([
  "RTC_UNSUPPORTED",
  "RTC_SETUP",
  "ICE_TIMEOUT",
  "ICE_FAILED",
  "UNREACHABLE",
  "UNIMPLEMENTED",
]);

export class RtcStreamClient {
  /**
   * @param {object} options
   * @param {() => string} options.offerUrl  the POST URL of the offer
   * @param {() => MediaStreamTrack} options.track  the microphone
   * @param {() => string} [options.token]
   * @param {() => number} [options.captureS]  capture time now (sendAudio's atS): with it,
   *   the prefix is sent
   * @param {object} options.handlers  as StreamClient's, plus onRtcStats(stats)
   */
  constructor(options) {
    this.offerUrl = options.offerUrl;
    this.track = options.track;
    this.token = options.token || (() => "");
    this.handlers = options.handlers || {};
    this.extraConfig = options.extraConfig || {};
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.gatherTimeoutMs = options.gatherTimeoutMs ?? 2000;
    this.finishTimeoutMs = options.finishTimeoutMs ?? 60000;
    this.PeerConnection = options.RTCPeerConnection || globalThis.RTCPeerConnection;
    this.fetch = options.fetch || ((...args) => globalThis.fetch(...args));
    this.timers = options.timers || globalThis;
    this.now = options.now || (() => performance.now());
    this.captureS = options.captureS || null;
    this.prefix = null;
    this.prefixSent = false;
    this.recent = []; // [{data, atS}]: the last MAX_PREFIX_S of capture, for a resume's prefix
    this.originS = null; // capture time of the server stream's time 0
    this.kind = "webrtc";
    this.transport = "idle"; // connecting, connected, reconnecting, closed
    this.pc = null;
    this.channel = null;
    this.sessionId = "";
    this.lastEvent = 0;
    this.everStarted = false;
    this.graceS = 30;
    this.droppedAt = null;
    this.attempts = 0;
    this.finishRequested = false;
    this.finishSent = false;
    this.lastServerError = null;
    this.timer = null;
    this.finishTimer = null;
    this.statsTimer = null;
    this.statsEveryMs = options.statsEveryMs ?? 2000;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  start() {
    if (typeof this.PeerConnection !== "function") {
      this.end({ code: "RTC_UNSUPPORTED", message: "no RTCPeerConnection" });
    } else {
      this.connect();
    }
    return this;
  }

  /** The track carries the audio; chunks (captured at `atS`) only make the prefix. */
  sendAudio(data, atS) {
    if (this.captureS && typeof atS === "number") {
      this.recent.push({ data, atS });
      while (this.recent.length > 1 && atS - this.recent[0].atS > MAX_PREFIX_S + 1) this.recent.shift();
    }
    if (this.prefix && !this.prefixSent && typeof atS === "number") {
      this.prefix.push(data, atS);
      this.sendPrefix();
    }
    return this.transport !== "closed";
  }

  finish() {
    if (!this.finishRequested && this.transport !== "closed") {
      this.finishRequested = true;
      this.prefix?.close(); // the capture has stopped
      this.finishTimer = this.timers.setTimeout(
        () => this.end({ code: "FINISH_TIMEOUT", message: "" }),
        this.finishTimeoutMs,
      );
      this.sendPrefix();
      this.sendFinish();
    }
    return this.done;
  }

  abort() {
    this.end(null);
    return this.done;
  }

  setTransport(state, detail = {}) {
    this.transport = state;
    this.handlers.onState?.(state, { ...detail, kind: this.kind });
  }

  async connect() {
    this.setTransport(this.everStarted ? "reconnecting" : "connecting", { attempt: this.attempts + 1 });
    this.lastServerError = null;
    this.finishSent = false;
    let pc;
    try {
      pc = new this.PeerConnection({ iceServers: [] });
    } catch (err) {
      this.lost(null, { code: "RTC_UNSUPPORTED", message: String(err && err.message) });
      return;
    }
    this.pc = pc;
    // A resume's prefix starts where the server's stream stands: known at session_started.
    this.prefix = this.captureS ? new AudioPrefix() : null;
    this.prefixSent = false;
    if (this.prefix && this.sessionId) {
      this.prefix.awaitStart();
      for (const { data, atS } of this.recent) this.prefix.push(data, atS);
    }
    const channel = pc.createDataChannel("events", { ordered: true });
    this.channel = channel;
    channel.onopen = () => channel === this.channel && this.onOpen();
    channel.onmessage = (event) => channel === this.channel && this.onMessage(event.data);
    channel.onclose = () => this.lost(pc, { code: "CHANNEL_CLOSED", message: "" });
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") this.lost(pc, { code: "ICE_FAILED", message: "" });
      // DTLS is up: the track's packets flow from now, and the server's stream time (its
      // first frame) starts here, not at the page's first captured chunk.
      if (pc.connectionState === "connected" && pc === this.pc) {
        const nowS = this.captureS?.();
        this.prefix?.cut(nowS);
        if (this.prefix?.waitingStart) return; // onMediaStart at session_started (startPrefix)
        this.originS = this.prefix ? this.prefix.originS : nowS;
        this.handlers.onMediaStart?.(this.originS);
      }
    };
    this.clearTimer();
    this.timer = this.timers.setTimeout(() => {
      if (pc === this.pc && !(this.channel && this.channel.readyState === "open")) {
        this.lost(pc, { code: "ICE_TIMEOUT", message: "" });
      }
    }, this.connectTimeoutMs);
    let answer;
    try {
      const transceiver = pc.addTransceiver(this.track(), { direction: "sendonly" });
      preferOpus(transceiver);
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, this.gatherTimeoutMs, this.timers);
      answer = await this.postOffer(pc.localDescription);
    } catch (err) {
      if (pc === this.pc) this.lost(pc, err && err.code ? err : { code: "RTC_SETUP", message: String(err) });
      return;
    }
    if (pc !== this.pc) return;
    if (answer.session_id) this.sessionId = answer.session_id;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (err) {
      this.lost(pc, { code: "RTC_SETUP", message: String(err && err.message) });
    }
  }

  async postOffer(offer) {
    const config = { interim_results: true, ...this.extraConfig };
    if (this.sessionId) {
      config.session_id = this.sessionId;
      config.resume_from_event = this.lastEvent + 1;
    }
    const prefix = this.prefix ? { prefix: true } : {};
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await this.fetch(this.offerUrl(), {
        method: "POST",
        headers,
        body: JSON.stringify({ sdp: offer.sdp, type: offer.type, config, ...prefix }),
        cache: "no-store",
      });
    } catch (err) {
      throw { code: "UNREACHABLE", message: String(err && err.message) };
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok || !body || !body.sdp) {
      const error = (body && body.error) || { code: `HTTP_${response.status}`, message: "" };
      throw { code: String(error.code), message: String(error.message || ""), fatal: true };
    }
    return body;
  }

  onOpen() {
    this.clearTimer();
    this.sendPrefix();
    if (this.finishRequested) this.sendFinish();
  }

  /** The prefix's ready pieces, then (complete) its end. */
  sendPrefix() {
    const channel = this.channel;
    const prefix = this.prefix;
    if (!prefix || this.prefixSent || !channel || channel.readyState !== "open") return;
    prefix.cut(this.captureS()); // no-op once cut (the channel opens after "connected")
    try {
      for (const piece of prefix.take()) channel.send(piece);
      if (!prefix.complete) return;
      channel.send(prefix.endMessage());
    } catch {
      return; // closed meanwhile: handled as a lost connection
    }
    this.prefixSent = true;
    if (this.finishRequested) this.sendFinish();
  }

  onMessage(data) {
    if (typeof data !== "string") return;
    let msg;
    try {
      msg = parseServerMessage(data);
    } catch {
      return;
    }
    const d = msg.data;
    switch (msg.type) {
      case "session_started": {
        const first = !this.everStarted;
        this.everStarted = true;
        this.sessionId = d.session_id || this.sessionId;
        if (d.resume_grace_s > 0) this.graceS = d.resume_grace_s;
        if (!first) this.attempts = 0;
        this.droppedAt = null;
        const outcome = first ? "new" : d.resumed ? "resumed" : "restarted";
        if (outcome === "restarted") this.lastEvent = 0;
        if (this.prefix?.waitingStart) this.startPrefix(d, outcome);
        this.setTransport(this.finishSent ? "finishing" : "connected", { sessionId: this.sessionId, outcome });
        this.handlers.onStarted?.(d, outcome);
        this.pollRtt();
        break;
      }
      case "result":
      case "speech_event":
        if (msg.event_seq && msg.event_seq <= this.lastEvent) return; // a repeat after a resume
        if (msg.event_seq) this.lastEvent = msg.event_seq;
        if (msg.type === "result") this.handlers.onResult?.(d, msg.event_seq);
        else this.handlers.onSpeechEvent?.(d, msg.event_seq);
        break;
      case "ack":
        this.handlers.onAck?.(d);
        break;
      case "metrics":
        this.handlers.onMetrics?.(d);
        break;
      case "error":
        this.lastServerError = d;
        this.handlers.onServerError?.(d);
        break;
      default:
        if (d && d.webrtc) this.handlers.onRtcStats?.(d.webrtc);
        break;
    }
  }

  /**
   * A resume's prefix starts at the server's next chunk, in capture time; a restarted session
   * (the server no longer had it) starts anew at the cut. Tells onMediaStart the stream's
   * origin, with `continues` true: the resumed stream's time went on through the outage.
   */
  startPrefix(started, outcome) {
    const prefix = this.prefix;
    prefix.cut(this.captureS());
    const nextSeq = Number(started.next_seq) || 1;
    if (outcome === "resumed" && this.originS !== null) {
      const fromS = this.originS + (nextSeq - 1) * CHUNK_S;
      prefix.startAt(fromS, nextSeq);
      this.originS += Math.max(0, prefix.startS - fromS); // down longer than what is kept
    } else {
      prefix.startAt(prefix.cutS, nextSeq);
      this.originS = prefix.startS;
    }
    this.handlers.onMediaStart?.(this.originS, outcome === "resumed");
    this.sendPrefix();
  }

  sendFinish() {
    const channel = this.channel;
    if (this.finishSent || !channel || channel.readyState !== "open") return;
    if (this.prefix && !this.prefixSent) return; // FINISH after the prefix
    this.finishSent = true;
    // The track stops first, so FINISH follows the last audio the server will get.
    try {
      channel.send(FINISH_MESSAGE);
    } catch {
      this.finishSent = false;
    }
  }

  /** The connection `pc` ended (or could not start): finish, give up, or resume. */
  lost(pc, error) {
    if (pc !== null && pc !== this.pc) return;
    if (this.transport === "closed") return;
    this.closePeer();
    if (this.finishSent && !this.lastServerError && error.code === "CHANNEL_CLOSED") {
      this.end(null);
      return;
    }
    if (this.lastServerError) {
      this.end(this.lastServerError);
      return;
    }
    if (!this.everStarted || error.fatal) {
      this.end(error);
      return;
    }
    if (this.droppedAt === null) this.droppedAt = this.now();
    if (this.now() - this.droppedAt > this.graceS * 1000) {
      this.end({ code: "RESUME_EXPIRED", message: error.message });
      return;
    }
    this.attempts += 1;
    const delay = Math.min(5000, 250 * 2 ** (this.attempts - 1));
    this.setTransport("reconnecting", { inMs: delay, error });
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      if (this.transport !== "closed") this.connect();
    }, delay);
  }

  /** The round trip of the ICE pair in use (the browser measures it), every few seconds. */
  pollRtt() {
    if (this.statsTimer) this.timers.clearTimeout(this.statsTimer);
    const pc = this.pc;
    this.statsTimer = this.timers.setTimeout(async () => {
      this.statsTimer = null;
      if (!pc || pc !== this.pc || typeof pc.getStats !== "function") return;
      try {
        const ms = roundTripMs(await pc.getStats());
        if (ms !== null && pc === this.pc) this.handlers.onRtt?.(ms, ms);
      } catch {
        // no statistics: no round trip shown
      }
      if (pc === this.pc) this.pollRtt();
    }, this.statsEveryMs);
  }

  closePeer() {
    this.clearTimer();
    if (this.statsTimer) this.timers.clearTimeout(this.statsTimer);
    this.statsTimer = null;
    const pc = this.pc;
    const channel = this.channel;
    this.pc = null;
    this.channel = null;
    try {
      channel?.close();
      pc?.close();
    } catch {
      // already closed
    }
  }

  end(error) {
    if (this.transport === "closed") return;
    this.closePeer();
    if (this.finishTimer) this.timers.clearTimeout(this.finishTimer);
    this.finishTimer = null;
    this.setTransport("closed", { error });
    this.handlers.onClosed?.(error);
    this.resolveDone(error);
  }

  clearTimer() {
    if (this.timer) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }
}

/** currentRoundTripTime (s) of the nominated, succeeded candidate pair, in ms; or null. */
export function roundTripMs(report) {
  for (const s of report.values()) {
    if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) {
      if (typeof s.currentRoundTripTime === "number") return s.currentRoundTripTime * 1000;
    }
  }
  return null;
}

/** Opus alone in the offer when the browser lets the page say so (the server takes no other). */
function preferOpus(transceiver) {
  const caps = globalThis.RTCRtpSender?.getCapabilities?.("audio");
  if (!caps || typeof transceiver.setCodecPreferences !== "function") return;
  const opus = caps.codecs.filter((c) => /^audio\/opus$/i.test(c.mimeType));
  if (opus.length) {
    try {
      transceiver.setCodecPreferences(opus);
    } catch {
      // the browser's own choice then; it offers Opus anyway
    }
  }
}

/** Resolves when ICE gathering is complete (or after `timeoutMs`, with what was gathered). */
export function gathered(pc, timeoutMs, timers = globalThis) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      timers.clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    const timer = timers.setTimeout(finish, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * Where a WebRTC stream's time 0 falls in capture time (the page's session.streamS), given
 * the capture time of a connection's first audio (mediaAtS: the start of the audio sent
 * before the track connected, or the connection's moment; audioS if unknown) and when it was
 * lost (lostAudioS). A resumed session carries on from what the server had, skipping the
 * time it was down, unless the missed audio went as the resume's prefix (mediaContinues:
 * mediaAtS is then the origin itself, moved only by what was too old to send).
 */
export function rtcStreamOrigin({ streamS, audioS, mediaAtS, lostAudioS, mediaContinues }, outcome) {
  const at = mediaAtS ?? audioS;
  if (outcome === "resumed" && mediaContinues) return at; // the outage's audio was the prefix
  if (outcome === "resumed") return streamS + at - (lostAudioS ?? at);
  return at;
}
