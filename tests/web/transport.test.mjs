import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { AutoTransport } = await import(web("js/transport.js"));
const { RtcStreamClient, gathered, roundTripMs, rtcStreamOrigin } = await import(web("js/rtc-client.js"));

// ---- fakes --------------------------------------------------------------------------------

class FakeTimers {
  constructor() {
    this.now = 0;
    this.next = 1;
    this.pending = new Map();
  }
  setTimeout(fn, ms) {
    const id = this.next++;
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(id) {
    this.pending.delete(id);
  }
  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.pending.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at);
      if (!due.length) break;
      const [id, t] = due[0];
      this.pending.delete(id);
      this.now = t.at;
      t.fn();
    }
    this.now = until;
  }
}

class FakeChannel {
  constructor() {
    this.readyState = "connecting";
    this.sent = [];
  }
  send(text) {
    this.sent.push(text);
  }
  open() {
    this.readyState = "open";
    this.onopen?.();
  }
  message(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  close() {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.onclose?.();
  }
}

function fakePeerClass(made) {
  return class FakePeer {
    constructor(config) {
      this.config = config;
      this.iceGatheringState = "complete";
      this.connectionState = "new";
      this.closed = false;
      this.channel = null;
      this.transceivers = [];
      made.push(this);
    }
    createDataChannel(label) {
      this.channel = new FakeChannel(label);
      return this.channel;
    }
    addTransceiver(track, init) {
      const t = { track, init };
      this.transceivers.push(t);
      return t;
    }
    async createOffer() {
      return { type: "offer", sdp: "v=0 offer" };
    }
    async setLocalDescription(d) {
      this.localDescription = d;
    }
    async setRemoteDescription(d) {
      this.remoteDescription = d;
    }
    addEventListener() {}
    removeEventListener() {}
    close() {
      this.closed = true;
    }
  };
}

function answering(posts, answer = { sdp: "v=0 answer", type: "answer", session_id: "s1", resumed: false }) {
  return async (url, init) => {
    posts.push({ url, body: JSON.parse(init.body), headers: init.headers });
    return { ok: true, status: 200, json: async () => answer };
  };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function rtcClient({ peers, posts, timers, handlers, fetch }) {
  return new RtcStreamClient({
    offerUrl: () => "/api/v1/webrtc/offer",
    track: () => ({ kind: "audio" }),
    token: () => "tok",
    handlers,
    RTCPeerConnection: fakePeerClass(peers),
    fetch: fetch || answering(posts),
    timers,
    now: () => timers.now,
  });
}

// ---- RtcStreamClient ----------------------------------------------------------------------

test("WebRTC: posts the offer with the config, then events on the data channel drive the handlers", async () => {
  const peers = [];
  const posts = [];
  const timers = new FakeTimers();
  const seen = { states: [], results: [], started: [] };
  const client = rtcClient({
    peers,
    posts,
    timers,
    handlers: {
      onState: (s, d) => seen.states.push(`${d.kind}:${s}`),
      onStarted: (d, outcome) => seen.started.push(outcome),
      onResult: (r, seq) => seen.results.push([seq, r.text, r.is_final]),
      onClosed: (e) => (seen.closed = e),
    },
  });
  client.start();
  await flush();
  assert.equal(posts.length, 1);
  assert.equal(posts[0].body.type, "offer");
  assert.equal(posts[0].body.config.interim_results, true);
  assert.equal(posts[0].headers.Authorization, "Bearer tok");
  assert.equal(peers[0].transceivers[0].init.direction, "sendonly");
  assert.deepEqual(peers[0].config, { iceServers: [] });
  const ch = peers[0].channel;
  ch.open();
  ch.message({ started: { session_id: "s1", resumed: false, next_seq: "1", resume_grace_s: 30 }, event_seq: "0" });
  ch.message({ result: { utterance_id: "1", is_final: false, text: "hel" }, event_seq: "1" });
  ch.message({ result: { utterance_id: "1", is_final: true, text: "hello" }, event_seq: "2" });
  ch.message({ result: { utterance_id: "1", is_final: true, text: "hello" }, event_seq: "2" }); // repeat
  assert.deepEqual(seen.started, ["new"]);
  assert.deepEqual(seen.results, [
    [1, "hel", false],
    [2, "hello", true],
  ]);
  assert.ok(seen.states.includes("webrtc:connected"));
  // Stop: FINISH on the channel; the server's close after the last event ends the stream.
  const done = client.finish();
  assert.deepEqual(ch.sent, ['{"control":{"action":"FINISH"}}']);
  ch.close();
  assert.equal(await done, null);
  assert.equal(seen.closed, null);
  assert.ok(peers[0].closed);
});

test("WebRTC: no connection within the timeout ends with ICE_TIMEOUT before any session", async () => {
  const peers = [];
  const timers = new FakeTimers();
  let closed;
  const client = rtcClient({ peers, posts: [], timers, handlers: { onClosed: (e) => (closed = e) } });
  client.start();
  await flush();
  timers.advance(5000);
  assert.equal(closed.code, "ICE_TIMEOUT");
  assert.equal(client.everStarted, false);
  assert.ok(peers[0].closed);
});

test("WebRTC: a dropped connection resumes with session_id and the next event", async () => {
  const peers = [];
  const posts = [];
  const timers = new FakeTimers();
  const outcomes = [];
  const client = rtcClient({ peers, posts, timers, handlers: { onStarted: (d, o) => outcomes.push(o) } });
  client.start();
  await flush();
  peers[0].channel.open();
  peers[0].channel.message({ started: { session_id: "s1", resume_grace_s: 30 } });
  peers[0].channel.message({ result: { is_final: true, text: "a" }, event_seq: "7" });
  peers[0].connectionState = "failed";
  peers[0].onconnectionstatechange();
  assert.equal(client.transport, "reconnecting");
  timers.advance(300);
  await flush();
  assert.equal(posts.length, 2);
  assert.equal(posts[1].body.config.session_id, "s1");
  assert.equal(posts[1].body.config.resume_from_event, 8);
  peers[1].channel.open();
  peers[1].channel.message({ started: { session_id: "s1", resumed: true } });
  assert.deepEqual(outcomes, ["new", "resumed"]);
});

test("WebRTC: a server refusal of the offer ends the stream with its error", async () => {
  const timers = new FakeTimers();
  let closed;
  const fetch = async () => ({
    ok: false,
    status: 401,
    json: async () => ({ error: { code: "UNAUTHENTICATED", message: "needs a token" } }),
  });
  const client = rtcClient({ peers: [], posts: [], timers, fetch, handlers: { onClosed: (e) => (closed = e) } });
  client.start();
  await flush();
  await flush();
  assert.equal(closed.code, "UNAUTHENTICATED");
});

test("gathered() waits for ICE gathering to complete, or the timeout", async () => {
  const timers = new FakeTimers();
  const listeners = {};
  const pc = {
    iceGatheringState: "gathering",
    addEventListener: (name, fn) => (listeners[name] = fn),
    removeEventListener: (name) => delete listeners[name],
  };
  let done = false;
  gathered(pc, 2000, timers).then(() => (done = true));
  await flush();
  assert.equal(done, false);
  pc.iceGatheringState = "complete";
  listeners.icegatheringstatechange();
  await flush();
  assert.equal(done, true);
  assert.equal(listeners.icegatheringstatechange, undefined);
});

test("the round trip comes from the nominated candidate pair", () => {
  const report = new Map([
    ["a", { type: "candidate-pair", state: "failed", nominated: false, currentRoundTripTime: 1 }],
    ["b", { type: "candidate-pair", state: "succeeded", nominated: true, currentRoundTripTime: 0.012 }],
  ]);
  assert.equal(roundTripMs(report), 12);
  assert.equal(roundTripMs(new Map()), null);
});

// ---- AutoTransport ------------------------------------------------------------------------

class FakeClient {
  constructor(kind, handlers) {
    this.kind = kind;
    this.handlers = handlers;
    this.transport = "idle";
    this.audio = [];
    this.everStarted = false;
    this.finished = false;
  }
  start() {
    this.transport = "connecting";
    this.handlers.onState?.("connecting", {});
    return this;
  }
  sendAudio(data) {
    this.audio.push(data);
    return true;
  }
  finish() {
    this.finished = true;
  }
  abort() {}
  connect() {
    this.everStarted = true;
    this.transport = "connected";
    this.handlers.onState?.("connected", {});
  }
  close(error) {
    this.transport = "closed";
    this.handlers.onClosed?.(error);
  }
}

function auto(rtcWanted = true) {
  const made = {};
  const seen = { states: [], fallbacks: [], closed: [] };
  const transport = new AutoTransport({
    handlers: {
      onState: (s, d) => seen.states.push(`${d.kind}:${s}`),
      onFallback: (e) => seen.fallbacks.push(e.code),
      onClosed: (e) => seen.closed.push(e),
    },
    makeRtc: (h) => (rtcWanted ? (made.rtc = new FakeClient("webrtc", h)) : null),
    makeWs: (h) => (made.ws = new FakeClient("websocket", h)),
  });
  return { transport, made, seen };
}

test("fallback: WebRTC that cannot connect hands over to the WebSocket with the audio so far", () => {
  const { transport, made, seen } = auto();
  transport.start();
  transport.sendAudio("c1");
  transport.sendAudio("c2");
  made.rtc.close({ code: "ICE_TIMEOUT", message: "" });
  assert.deepEqual(seen.fallbacks, ["ICE_TIMEOUT"]);
  assert.deepEqual(seen.closed, [], "the page is not told the stream closed");
  assert.equal(transport.kind, "websocket");
  assert.deepEqual(made.ws.audio, ["c1", "c2"]);
  transport.sendAudio("c3");
  assert.deepEqual(made.ws.audio, ["c1", "c2", "c3"]);
  made.ws.connect();
  assert.deepEqual(seen.states, ["webrtc:connecting", "websocket:connecting", "websocket:connected"]);
  assert.equal(transport.transport, "connected");
});

test("fallback: no RTCPeerConnection goes straight to the WebSocket", () => {
  const { transport, made, seen } = auto(false);
  transport.start();
  assert.equal(made.rtc, undefined);
  assert.deepEqual(seen.fallbacks, [], "not tried, so no fallback to tell of");
  assert.equal(transport.kind, "websocket");
  assert.equal(made.ws.transport, "connecting");
});

test("no fallback for errors the WebSocket would get too, nor once WebRTC was connected", () => {
  const a = auto();
  a.transport.start();
  a.made.rtc.close({ code: "UNAUTHENTICATED", message: "token" });
  assert.deepEqual(a.seen.fallbacks, []);
  assert.equal(a.seen.closed[0].code, "UNAUTHENTICATED");

  const b = auto();
  b.transport.start();
  b.transport.sendAudio("c1");
  b.made.rtc.connect();
  assert.deepEqual(b.transport.kept, [], "nothing kept once WebRTC carries the audio");
  b.made.rtc.close({ code: "RESUME_EXPIRED", message: "" });
  assert.deepEqual(b.seen.fallbacks, []);
  assert.equal(b.seen.closed[0].code, "RESUME_EXPIRED");
});

test("a Stop pressed while WebRTC was still trying finishes the WebSocket after the fallback", () => {
  const { transport, made } = auto();
  transport.start();
  transport.sendAudio("c1");
  transport.finish();
  made.rtc.close({ code: "ICE_FAILED", message: "" });
  assert.deepEqual(made.ws.audio, ["c1"]);
  assert.equal(made.ws.finished, true);
});

test("WebRTC: onMediaStart when the connection is up, once per peer, not for a replaced one", async () => {
  const peers = [];
  const timers = new FakeTimers();
  const starts = [];
  const client = rtcClient({ peers, posts: [], timers, handlers: { onMediaStart: () => starts.push(peers.length) } });
  client.start();
  await flush();
  peers[0].connectionState = "connecting";
  peers[0].onconnectionstatechange();
  assert.deepEqual(starts, []);
  peers[0].connectionState = "connected";
  peers[0].onconnectionstatechange();
  assert.deepEqual(starts, [1]);
  peers[0].channel.open();
  peers[0].channel.message({ started: { session_id: "s1", resume_grace_s: 30 } });
  peers[0].connectionState = "failed";
  peers[0].onconnectionstatechange();
  timers.advance(300);
  await flush();
  peers[0].connectionState = "connected"; // late news from the old peer: not this stream's
  peers[0].onconnectionstatechange();
  peers[1].connectionState = "connected";
  peers[1].onconnectionstatechange();
  assert.deepEqual(starts, [1, 2]);
});

test("WebRTC stream origin: the connection's capture time; a resume skips the time it was down", () => {
  // The track connected 1.4 s into the capture: the server's 0 s is the capture's 1.4 s.
  assert.equal(rtcStreamOrigin({ streamS: 0, audioS: 1.6, mediaAtS: 1.4, lostAudioS: null }, "new"), 1.4);
  assert.equal(rtcStreamOrigin({ streamS: 0, audioS: 1.6, mediaAtS: null, lostAudioS: null }, "new"), 1.6);
  // Lost at 10 s, back at 13 s: the server had up to its 8.6 s, which is now capture 13 s.
  const resumed = rtcStreamOrigin({ streamS: 1.4, audioS: 13.2, mediaAtS: 13, lostAudioS: 10 }, "resumed");
  assert.ok(Math.abs(resumed - 4.4) < 1e-9, resumed);
  // A restarted session counts from 0 again, at the new connection.
  assert.equal(rtcStreamOrigin({ streamS: 1.4, audioS: 13.2, mediaAtS: 13, lostAudioS: 10 }, "restarted"), 13);
});

// ---- the audio captured before the track connects (rtc-prefix.js) -------------------------

test("WebRTC: audio captured before the connection goes on the data channel, then FINISH", async () => {
  const peers = [];
  const posts = [];
  const timers = new FakeTimers();
  let nowS = 0;
  const origins = [];
  const client = new RtcStreamClient({
    offerUrl: () => "/api/v1/webrtc/offer",
    track: () => ({ kind: "audio" }),
    captureS: () => nowS,
    handlers: { onMediaStart: (s) => origins.push(s) },
    RTCPeerConnection: fakePeerClass(peers),
    fetch: answering(posts),
    timers,
    now: () => timers.now,
  });
  client.start();
  await flush();
  assert.equal(posts[0].body.prefix, true);
  const pcm = (n) => new Int16Array(n).fill(7).buffer;
  for (let i = 0; i < 5; i += 1) client.sendAudio(pcm(1600), i / 10);
  nowS = 0.55; // the track's audio starts here
  peers[0].connectionState = "connected";
  peers[0].onconnectionstatechange();
  assert.deepEqual(origins, [0]);
  const ch = peers[0].channel;
  ch.open();
  assert.equal(ch.sent.length, 5, "the five whole chunks; the sixth has not come");
  client.sendAudio(pcm(1600), 0.5);
  client.sendAudio(pcm(1600), 0.6); // the track's
  assert.equal(ch.sent[5].byteLength, 1600); // up to 0.55 s
  assert.deepEqual(JSON.parse(ch.sent[6]), { prefix: { bytes: 5 * 3200 + 1600 } });
  assert.equal(ch.sent.length, 7);
  client.finish();
  assert.equal(ch.sent[7], '{"control":{"action":"FINISH"}}');
});

test("WebRTC: stopped before the connection came up, the prefix and its end go before FINISH", async () => {
  const peers = [];
  const timers = new FakeTimers();
  const client = new RtcStreamClient({
    offerUrl: () => "/api/v1/webrtc/offer",
    track: () => ({ kind: "audio" }),
    captureS: () => 0.3,
    handlers: {},
    RTCPeerConnection: fakePeerClass(peers),
    fetch: answering([]),
    timers,
    now: () => timers.now,
  });
  client.start();
  await flush();
  client.sendAudio(new ArrayBuffer(3200), 0);
  client.sendAudio(new ArrayBuffer(1000), 0.1); // the capture's last, partial chunk
  client.finish();
  const ch = peers[0].channel;
  ch.open();
  assert.deepEqual(
    ch.sent.map((m) => (typeof m === "string" ? m : m.byteLength)),
    [3200, 1000, '{"prefix":{"bytes":4200}}', '{"control":{"action":"FINISH"}}'],
  );
});

// A client whose capture chunks count samples on (so a piece's place can be checked), with
// a connection that drops at capture time `dropS` after the server took `nextSeq` - 1 chunks.
async function resumedClient({ dropS, backS, nextSeq, outcome = "resumed" }) {
  const peers = [];
  const posts = [];
  const timers = new FakeTimers();
  const origins = [];
  let nowS = 0;
  const client = new RtcStreamClient({
    offerUrl: () => "/api/v1/webrtc/offer",
    track: () => ({ kind: "audio" }),
    captureS: () => nowS,
    handlers: { onMediaStart: (s, continues) => origins.push([s, continues]) },
    RTCPeerConnection: fakePeerClass(peers),
    fetch: answering(posts),
    timers,
    now: () => timers.now,
  });
  const pcm = (i) => Int16Array.from({ length: 1600 }, (_, k) => (i * 1600 + k) % 32768).buffer;
  let i = 0;
  const captureUntil = (s) => {
    for (; i / 10 < s - 1e-9; i += 1) client.sendAudio(pcm(i), i / 10);
    nowS = s;
  };
  client.start();
  await flush();
  captureUntil(0.05);
  peers[0].connectionState = "connected";
  peers[0].onconnectionstatechange();
  peers[0].channel.open();
  peers[0].channel.message({ started: { session_id: "s1", resumed: false, next_seq: "1", resume_grace_s: 30 } });
  captureUntil(dropS);
  peers[0].connectionState = "failed";
  peers[0].onconnectionstatechange();
  timers.advance(300);
  await flush();
  captureUntil(backS);
  const pc = peers[1];
  pc.connectionState = "connected";
  pc.onconnectionstatechange();
  pc.channel.open();
  const beforeStarted = pc.channel.sent.length;
  pc.channel.message({ started: { session_id: "s1", resumed: outcome === "resumed", next_seq: String(nextSeq) } });
  captureUntil(backS + 0.2); // the track's from here: not in the prefix
  const sent = pc.channel.sent;
  const pieces = sent.filter((m) => typeof m !== "string");
  const samples = pieces.flatMap((p) => [...new Int16Array(p)]);
  return { posts, origins, beforeStarted, end: JSON.parse(sent.at(-1)), samples };
}

test("WebRTC: a resume sends the audio from the server's next chunk up to the new track", async () => {
  // Dropped at 2.0 s with the server at chunk 13 (its 1.2 s); back at 3.05 s.
  const r = await resumedClient({ dropS: 2.0, backS: 3.05, nextSeq: 13 });
  assert.equal(r.posts[1].body.prefix, true);
  assert.equal(r.posts[1].body.config.session_id, "s1");
  assert.equal(r.beforeStarted, 0, "nothing before session_started says where the server is");
  const n = Math.round((3.05 - 1.2) * 16000);
  assert.deepEqual(r.end, { prefix: { bytes: 2 * n, next_seq: 13 } });
  assert.equal(r.samples.length, n);
  assert.deepEqual(r.samples, Array.from({ length: n }, (_, k) => (19200 + k) % 32768), "each sample once, in order");
  // The stream's time went on through the outage: its origin is still capture 0 s.
  assert.deepEqual(r.origins, [[0, undefined], [0, true]]);
});

test("WebRTC: a resume after a longer outage than is kept sends the newest and moves the origin", async () => {
  const r = await resumedClient({ dropS: 2.0, backS: 15.05, nextSeq: 13 });
  assert.equal(r.samples[0], (51 * 1600) % 32768, "from the oldest kept chunk (5.1 s)");
  assert.equal(r.end.prefix.bytes, 2 * Math.round((15.05 - 5.1) * 16000));
  const [origin, continues] = r.origins.at(-1);
  assert.ok(Math.abs(origin - 3.9) < 1e-9, origin); // 5.1 s of capture is the server's 1.2 s
  assert.equal(continues, true);
});

test("WebRTC: a session the server no longer had starts anew at the cut, with an empty prefix", async () => {
  const r = await resumedClient({ dropS: 2.0, backS: 3.05, nextSeq: 1, outcome: "restarted" });
  assert.deepEqual(r.end, { prefix: { bytes: 0, next_seq: 1 } });
  assert.deepEqual(r.origins.at(-1), [3.05, false]);
});

test("WebRTC stream origin: a resume whose prefix filled the outage keeps the origin given", () => {
  const at = rtcStreamOrigin({ streamS: 1.4, audioS: 13.2, mediaAtS: 1.4, lostAudioS: 10, mediaContinues: true }, "resumed");
  assert.equal(at, 1.4);
});
