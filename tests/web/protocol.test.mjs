import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const P = await import(web("js/protocol.js"));

test("a result in protobuf JSON: strings for uint64, camelCase, omitted zeros", () => {
  const m = P.parseServerMessage(
    JSON.stringify({
      eventSeq: "12",
      result: {
        utteranceId: "3",
        isFinal: true,
        text: " Hi.",
        segments: [{ endS: 1.5, text: " Hi." }],
        words: [{ text: " Hi.", startS: 0.1, endS: 0.4 }],
      },
    }),
  );
  assert.equal(m.type, "result");
  assert.equal(m.event_seq, 12);
  assert.deepEqual(m.data, {
    utterance_id: 3,
    is_final: true,
    stability: 0,
    text: " Hi.",
    stable_text: "",
    segments: [{ start_s: 0, end_s: 1.5, text: " Hi." }],
    audio_processed_s: 0,
    words: [{ text: " Hi.", start_s: 0.1, end_s: 0.4 }],
  });
});

test("snake_case names as in the contract", () => {
  const m = P.parseServerMessage(
    '{"event_seq": 4, "session_started": {"session_id": "a", "next_seq": "7", "credit_ms": 0}}',
  );
  assert.equal(m.type, "session_started");
  assert.deepEqual(m.data, {
    session_id: "a",
    resumed: false,
    next_seq: 7,
    credit_ms: 0,
    model: "",
    resume_grace_s: 0,
    session_store: false,
  });
  assert.equal(P.parseServerMessage('{"started": {}}').data.next_seq, 1);
  assert.equal(P.parseServerMessage('{"started": {}}').data.credit_ms, undefined);
});

test("speech events by name or number; ack, metrics, error; unknown passes", () => {
  assert.equal(P.parseServerMessage('{"speech_event": {"kind": "BEGIN"}}').data.kind, "BEGIN");
  assert.deepEqual(P.parseServerMessage('{"speechEvent": {"kind": 2, "timeS": 1.5}}').data, {
    kind: "END",
    time_s: 1.5,
  });
  assert.deepEqual(P.parseServerMessage('{"ack": {"seq": "9"}}').data, {
    seq: 9,
    lag_ms: 0,
    credit_ms: undefined,
    stored_seq: 0,
  });
  assert.equal(P.parseServerMessage('{"ack": {"seq": "9", "storedSeq": "7"}}').data.stored_seq, 7);
  assert.deepEqual(P.parseServerMessage('{"metrics": {"rtf": 0.12, "queueDepth": 2}}').data, {
    rtf: 0.12,
    latency_ms: 0,
    queue_depth: 2,
    active_streams: 0,
    alerts: [],
  });
  const alerted = P.parseServerMessage(
    '{"metrics": {"alerts": [{"name": "memory_low", "message": "free memory 9 MB", "since": 1.7e9}, null, 3]}}',
  ).data;
  assert.deepEqual(alerted.alerts, [{ name: "memory_low", message: "free memory 9 MB", since: 1.7e9 }]);
  assert.deepEqual(P.parseServerMessage('{"error": {"code": "INVALID_ARGUMENT"}}').data, {
    code: "INVALID_ARGUMENT",
    message: "",
  });
  assert.equal(P.parseServerMessage('{"hello": 1}').type, "unknown");
  assert.throws(() => P.parseServerMessage("[1]"), SyntaxError);
  assert.throws(() => P.parseServerMessage("not json"), SyntaxError);
});

test("config and control messages", () => {
  assert.deepEqual(JSON.parse(P.configMessage()), {
    config: { encoding: "PCM16", sample_rate_hz: 16000, channels: 1, interim_results: true },
  });
  assert.deepEqual(
    JSON.parse(P.configMessage({ sessionId: "s", resumeFromSeq: 5, resumeFromEvent: 3 })).config,
    {
      encoding: "PCM16",
      sample_rate_hz: 16000,
      channels: 1,
      interim_results: true,
      session_id: "s",
      resume_from_seq: 5,
      resume_from_event: 3,
    },
  );
  assert.deepEqual(JSON.parse(P.FINISH_MESSAGE), { control: { action: "FINISH" } });
  assert.equal(P.CHUNK_BYTES, 3200);
});

test("the stream URL follows the page's scheme and carries the token", () => {
  assert.equal(
    P.streamUrl({ protocol: "https:", host: "box:8443" }, "/api/v1/stream", "a b&c"),
    "wss://box:8443/api/v1/stream?token=a+b%26c",
  );
  assert.equal(
    P.streamUrl({ protocol: "http:", host: "127.0.0.1:8080" }),
    "ws://127.0.0.1:8080/api/v1/stream",
  );
});

test("the token goes as a subprotocol beside audiototext.v1, never in the URL", () => {
  assert.deepEqual(P.streamProtocols(""), ["audiototext.v1"]);
  assert.deepEqual(P.streamProtocols("s3cret-Tok_1.x"), [
    "audiototext.v1",
    "audiototext.token.s3cret-Tok_1.x",
  ]);
  // Characters a subprotocol cannot hold: base64url of the UTF-8.
  assert.deepEqual(P.streamProtocols("a b/é"), ["audiototext.v1", "audiototext.token-b64.YSBiL8Op"]);
});
