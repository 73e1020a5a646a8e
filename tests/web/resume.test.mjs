import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const { ResumeState } = await import(web("js/resume.js"));
const { StreamClient } = await import(web("js/stream-client.js"));

const bytes = (seq) => new Uint8Array([seq & 0xff, seq >> 8]).buffer;

test("chunks wait until acknowledged; resume fields follow the last ack and event", () => {
  const s = new ResumeState();
  assert.deepEqual(s.resumeFields(), {});
  for (let k = 1; k <= 5; k++) assert.equal(s.addChunk(bytes(k)), k);
  s.onConnecting();
  assert.equal(s.takeNext(0), null, "nothing goes before session_started");
  assert.equal(s.onSessionStarted({ session_id: "abc", resumed: false, credit_ms: undefined }), "new");
  const sent = [];
  for (let c; (c = s.takeNext(10)); ) sent.push(c.seq);
  assert.deepEqual(sent, [1, 2, 3, 4, 5]);
  assert.equal(s.onAck({ seq: 3 }, 25), 15, "round trip of chunk 3");
  assert.deepEqual(s.chunks.map((c) => c.seq), [4, 5]);
  assert.ok(s.acceptEvent(1));
  assert.ok(s.acceptEvent(2));
  assert.ok(!s.acceptEvent(2));
  assert.ok(!s.acceptEvent(1));
  assert.ok(s.acceptEvent(0), "acks and metrics carry no number");
  assert.deepEqual(s.resumeFields(), { sessionId: "abc", resumeFromSeq: 4, resumeFromEvent: 3 });
  // The connection drops: the next one resends 4 and 5 (and what came since), in order.
  s.addChunk(bytes(6));
  s.onConnecting();
  assert.equal(s.onSessionStarted({ session_id: "abc", resumed: true, next_seq: 4 }), "resumed");
  const resent = [];
  for (let c; (c = s.takeNext(30)); ) resent.push(c.seq);
  assert.deepEqual(resent, [4, 5, 6]);
  assert.equal(s.onAck({ seq: 6 }, 40), 10);
  assert.equal(s.chunks.length, 0);
  assert.ok(s.allSent());
});

test("credit: in-flight audio stays within credit_ms; a lone chunk may use half", () => {
  const s = new ResumeState();
  for (let k = 0; k < 10; k++) s.addChunk(bytes(k), 100);
  s.onConnecting();
  s.onSessionStarted({ session_id: "x", credit_ms: 300 });
  const first = [];
  for (let c; (c = s.takeNext(0)); ) first.push(c.seq);
  assert.deepEqual(first, [1, 2, 3]);
  s.onAck({ seq: 2, credit_ms: 200 }, 1); // 1 chunk in flight, 200 ms credit: 1 more
  const second = [];
  for (let c; (c = s.takeNext(1)); ) second.push(c.seq);
  assert.deepEqual(second, [4]);
  s.onAck({ seq: 4 }, 2); // credit_ms omitted: protobuf's zero
  assert.equal(s.creditMs, 0);
  assert.equal(s.takeNext(2), null);
  s.onAck({ seq: 4, credit_ms: 60 }, 3);
  assert.equal(s.takeNext(3).seq, 5, "alone with half a chunk of credit");
  assert.equal(s.takeNext(3), null);
});

test("without any credit field the server is not flow-controlled", () => {
  const s = new ResumeState();
  for (let k = 0; k < 50; k++) s.addChunk(bytes(k));
  s.onConnecting();
  s.onSessionStarted({ session_id: "x" });
  let n = 0;
  while (s.takeNext(0)) n += 1;
  assert.equal(n, 50);
});

test("the buffer of unacknowledged audio is bounded", () => {
  const s = new ResumeState({ maxBufferedMs: 300 });
  assert.equal(s.addChunk(bytes(1)), 1);
  assert.equal(s.addChunk(bytes(2)), 2);
  assert.equal(s.addChunk(bytes(3)), 3);
  assert.equal(s.addChunk(bytes(4)), 0);
});

test("a session the server no longer has restarts numbering from 1", () => {
  const s = new ResumeState();
  s.addChunk(bytes(1));
  s.addChunk(bytes(2));
  s.onConnecting();
  s.onSessionStarted({ session_id: "old" });
  s.takeNext(0);
  s.onAck({ seq: 1 }, 0);
  s.acceptEvent(5);
  s.onConnecting();
  assert.equal(s.onSessionStarted({ session_id: "new", resumed: false }), "restarted");
  assert.equal(s.sessionId, "new");
  assert.deepEqual(s.chunks.map((c) => c.seq), [1]);
  assert.equal(s.takeNext(0).seq, 1);
  assert.ok(s.acceptEvent(1));
});

// ---- the stream client against a scripted fake server -------------------------------------

class FakeTimers {
  constructor() {
    this.now = 0;
    this.queue = [];
    this.nextId = 1;
  }
  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.queue.push({ id, at: this.now + ms, fn });
    return id;
  }
  clearTimeout(id) {
    this.queue = this.queue.filter((t) => t.id !== id);
  }
  /** Runs every timer due within ms. */
  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at);
      const next = this.queue[0];
      if (!next || next.at > until) break;
      this.queue.shift();
      this.now = next.at;
      next.fn();
    }
    this.now = until;
  }
}

/**
 * A fake server session: numbers binary frames from 1 or from resume_from_seq, drops chunks
 * it already has, acknowledges each chunk, and emits a numbered result every 3 chunks.
 */
class FakeServer {
  constructor() {
    this.sockets = [];
    this.received = []; // first byte of each accepted chunk, in order
    this.nextSeq = 1;
    this.events = []; // every event ever made, by event_seq - 1
    this.configs = [];
    this.finished = false;
    this.refuseNext = 0;
  }

  socketClass() {
    const server = this;
    return class FakeSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.bufferedAmount = 0;
        this.sent = [];
        server.sockets.push(this);
        queueMicrotask(() => {
          if (server.refuseNext > 0) {
            server.refuseNext -= 1;
            this.readyState = 3;
            this.onclose?.({ code: 1006, reason: "" });
            return;
          }
          this.readyState = 1;
          this.onopen?.();
        });
      }
      send(data) {
        if (this.readyState !== 1) throw new Error("not open");
        this.sent.push(data);
        server.onFrame(this, data);
      }
      close(code = 1000, reason = "") {
        if (this.readyState === 3) return;
        this.readyState = 3;
        queueMicrotask(() => this.onclose?.({ code, reason }));
      }
      /** The network drops: no more frames either way. */
      cut() {
        this.readyState = 3;
        this.onclose?.({ code: 1006, reason: "" });
      }
      /** A text frame from the server, delivered later as a browser would. */
      push(obj) {
        if (this.readyState !== 1) return;
        const data = JSON.stringify(obj);
        queueMicrotask(() => this.onmessage?.({ data }));
      }
    };
  }

  onFrame(ws, data) {
    if (typeof data === "string") {
      const msg = JSON.parse(data);
      if (msg.config) {
        const c = msg.config;
        this.configs.push(c);
        ws.frameSeq = c.session_id ? Number(c.resume_from_seq) : 1;
        const resumed = Boolean(c.session_id);
        // protobuf JSON: 64-bit numbers as strings, camelCase names, zero fields omitted
        ws.push({
          started: {
            sessionId: "s1",
            ...(resumed ? { resumed: true } : {}),
            nextSeq: String(this.nextSeq),
            creditMs: 2000,
            resumeGraceS: 30,
          },
        });
        const from = resumed ? Number(c.resume_from_event) : 1;
        for (const e of this.events.slice(from - 1)) ws.push(e);
      } else if (msg.control?.action === "FINISH") {
        this.finished = true;
        const id = this.events.length + 1;
        this.emit(ws, { utterance_id: String(id), is_final: true, text: `final ${id}` });
        ws.close(1000, "done");
      }
      return;
    }
    const seq = ws.frameSeq++;
    if (seq < this.nextSeq) return; // a resent chunk the server already has
    assert.equal(seq, this.nextSeq, "no gap in chunk numbers");
    this.nextSeq += 1;
    this.received.push(new Uint8Array(data)[0]);
    ws.push({ ack: { seq: String(seq), lagMs: 5, creditMs: 2000 } });
    if (seq % 3 === 0) {
      this.emit(ws, { utterance_id: String(seq / 3), isFinal: true, text: `chunks to ${seq}` });
    }
  }

  emit(ws, result) {
    const event = { eventSeq: String(this.events.length + 1), result };
    this.events.push(event);
    ws.push(event);
  }
}

function makeClient(server, timers, log) {
  return new StreamClient({
    url: () => "ws://page.test/api/v1/stream?token=t",
    WebSocket: server.socketClass(),
    now: () => timers.now,
    timers,
    random: () => 1,
    handlers: {
      onState: (state) => log.states.push(state),
      onStarted: (_s, outcome) => log.started.push(outcome),
      onResult: (r, seq) => log.results.push([seq, r.utterance_id, r.text]),
      onRtt: (ms) => log.rtts.push(ms),
      onClosed: (error) => log.closed.push(error),
    },
  });
}

const flush = () => new Promise((resolve) => setImmediate(resolve));
const newLog = () => ({ states: [], started: [], results: [], rtts: [], closed: [] });

test("stream client: a cut mid-stream loses and repeats nothing", async () => {
  const server = new FakeServer();
  const timers = new FakeTimers();
  const log = newLog();
  const client = makeClient(server, timers, log).start();
  for (let k = 1; k <= 4; k++) client.sendAudio(bytes(k));
  await flush();
  assert.deepEqual(server.received, [1, 2, 3, 4]);
  assert.equal(client.transport, "connected");
  // More audio is queued, then the link dies before the server sees it.
  const first = server.sockets[0];
  first.readyState = 2; // closing: the client must not write
  client.sendAudio(bytes(5));
  client.sendAudio(bytes(6));
  first.cut();
  assert.equal(client.transport, "reconnecting");
  client.sendAudio(bytes(7)); // the microphone keeps going
  timers.advance(1000);
  await flush();
  assert.equal(server.sockets.length, 2);
  const cfg = server.configs[1];
  assert.equal(cfg.session_id, "s1");
  assert.equal(cfg.resume_from_seq, 5);
  assert.equal(cfg.resume_from_event, 2);
  for (let k = 8; k <= 9; k++) client.sendAudio(bytes(k));
  const done = client.finish();
  await flush();
  assert.equal(await done, null);
  assert.deepEqual(server.received, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(log.results, [
    [1, 1, "chunks to 3"],
    [2, 2, "chunks to 6"],
    [3, 3, "chunks to 9"],
    [4, 4, "final 4"],
  ]);
  assert.deepEqual(log.started, ["new", "resumed"]);
  assert.deepEqual(log.states, ["connecting", "connected", "reconnecting", "reconnecting", "connected", "closed"]);
  assert.deepEqual(log.closed, [null]);
  assert.ok(log.rtts.length > 0);
});

test("stream client: events replayed after a resume are dropped", async () => {
  const server = new FakeServer();
  const timers = new FakeTimers();
  const log = newLog();
  const client = makeClient(server, timers, log).start();
  for (let k = 1; k <= 6; k++) client.sendAudio(bytes(k));
  await flush();
  // The server replays from the start (as if it ignored resume_from_event).
  server.configs.length = 0;
  const original = server.onFrame.bind(server);
  server.onFrame = (ws, data) => {
    if (typeof data === "string" && JSON.parse(data).config?.session_id) {
      ws.frameSeq = Number(JSON.parse(data).config.resume_from_seq);
      ws.push({ started: { sessionId: "s1", resumed: true, nextSeq: String(server.nextSeq) } });
      for (const e of server.events) ws.push(e);
      return;
    }
    original(ws, data);
  };
  server.sockets[0].cut();
  timers.advance(1000);
  await flush();
  assert.deepEqual(log.results.map((r) => r[0]), [1, 2]);
  assert.equal(client.stats.duplicates, 2);
  client.abort();
});

test("stream client: an unreachable server gives up after a few attempts", async () => {
  const server = new FakeServer();
  server.refuseNext = 10;
  const timers = new FakeTimers();
  const log = newLog();
  const client = makeClient(server, timers, log).start();
  for (let k = 0; k < 5; k++) {
    await flush();
    timers.advance(10000);
  }
  const error = await client.done;
  assert.equal(error.code, "UNREACHABLE");
  assert.equal(server.sockets.length, 3);
  assert.equal(log.states.at(-1), "closed");
});

test("stream client: a refusal (1008) with an error message is final", async () => {
  const server = new FakeServer();
  server.onFrame = (ws, data) => {
    if (typeof data === "string") {
      ws.push({ error: { code: "UNAUTHENTICATED", message: "missing or wrong token" } });
      ws.close(1008, "auth");
    }
  };
  const timers = new FakeTimers();
  const log = newLog();
  const client = makeClient(server, timers, log).start();
  await flush();
  await flush();
  const error = await client.done;
  assert.deepEqual(error, { code: "UNAUTHENTICATED", message: "missing or wrong token" });
  assert.equal(server.sockets.length, 1, "no retry");
  timers.advance(60000);
  assert.equal(server.sockets.length, 1);
});

test("stream client: the session expires when the link stays down past resume_grace_s", async () => {
  const server = new FakeServer();
  const timers = new FakeTimers();
  const log = newLog();
  const client = makeClient(server, timers, log).start();
  client.sendAudio(bytes(1));
  await flush();
  server.refuseNext = 1000;
  server.sockets[0].cut();
  for (let k = 0; k < 40; k++) {
    timers.advance(5000);
    await flush();
  }
  const error = await client.done;
  assert.equal(error.code, "RESUME_EXPIRED");
});

test("with a session store, acknowledged chunks after stored_seq stay for another server", () => {
  const s = new ResumeState();
  for (let k = 1; k <= 6; k++) s.addChunk(bytes(k));
  s.onConnecting();
  s.onSessionStarted({ session_id: "abc", resumed: false, next_seq: 1, session_store: true });
  for (let c; (c = s.takeNext(10)); );
  s.onAck({ seq: 5, stored_seq: 2, credit_ms: 10000 }, 20);
  assert.deepEqual(s.chunks.map((c) => c.seq), [3, 4, 5, 6], "kept after stored_seq 2");
  assert.equal(s.bufferedMs, 100, "only chunk 6 counts against the buffer");
  assert.equal(s.inflightMs(), 100);
  // The server died; another restored the session from the store (chunks up to 2).
  s.onConnecting();
  assert.equal(s.resumeFields().resumeFromSeq, undefined, "the server numbers the frames");
  assert.equal(
    s.onSessionStarted({ session_id: "abc", resumed: true, next_seq: 3, session_store: true }),
    "resumed",
  );
  const resent = [];
  for (let c; (c = s.takeNext(30)); ) resent.push(c.seq);
  assert.deepEqual(resent, [3, 4, 5, 6]);
  s.onAck({ seq: 6, stored_seq: 6 }, 40);
  assert.equal(s.chunks.length, 0);
});
