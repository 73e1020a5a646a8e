// The WebSocket stream's messages: what the page sends, and the server's JSON events turned
// into one normalised shape. The server follows the protobuf JSON mapping, so fields that are
// 0 / false / empty may be missing, 64-bit integers may arrive as strings, enums as names or
// numbers, and names may be lowerCamelCase (eventSeq) instead of snake_case (event_seq).

export const SAMPLE_RATE_HZ = 16000;
export const CHUNK_MS = 100;
export const CHUNK_BYTES = (SAMPLE_RATE_HZ * CHUNK_MS * 2) / 1000; // 3200

const EVENT_KINDS = {
  session_started: "session_started",
  started: "session_started", // the proto's oneof field name
  result: "result",
  speech_event: "speech_event",
  ack: "ack",
  metrics: "metrics",
  error: "error",
};

/** lowerCamelCase -> snake_case (keys only; snake_case passes through). */
export function snakeKey(key) {
  return key.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

/** Deep copy with every object key in snake_case. */
export function snakeKeys(value) {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[snakeKey(k)] = snakeKeys(v);
    return out;
  }
  return value;
}

/** A number from a JSON number, numeric string or nothing (protobuf's omitted zero). */
export function num(value, fallback = 0) {
  if (value === undefined || value === null || value === "") return fallback;
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

function bool(value) {
  return value === true || value === "true" || value === 1;
}

function str(value) {
  return value === undefined || value === null ? "" : String(value);
}

function speechKind(value) {
  if (value === 1 || value === "1" || value === "BEGIN") return "BEGIN";
  if (value === 2 || value === "2" || value === "END") return "END";
  return "UNSPECIFIED";
}

function spans(list) {
  return (Array.isArray(list) ? list : []).map((s) => ({
    start_s: num(s.start_s),
    end_s: num(s.end_s),
    text: str(s.text),
  }));
}

/**
 * Parses one text frame from the server. Returns { type, event_seq, data } where type is one
 * of session_started, result, speech_event, ack, metrics, error, or "unknown"; data has every
 * field of that type with defaults filled in and numbers as numbers.
 * Throws SyntaxError when the frame is not a JSON object.
 */
export function parseServerMessage(text) {
  const raw = JSON.parse(text);
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new SyntaxError("server message is not a JSON object");
  }
  const msg = snakeKeys(raw);
  const eventSeq = num(msg.event_seq);
  for (const [key, type] of Object.entries(EVENT_KINDS)) {
    if (!(key in msg)) continue;
    const d = msg[key] || {};
    return { type, event_seq: eventSeq, data: normalise(type, d) };
  }
  return { type: "unknown", event_seq: eventSeq, data: msg };
}

function normalise(type, d) {
  switch (type) {
    case "session_started":
      return {
        session_id: str(d.session_id),
        resumed: bool(d.resumed),
        next_seq: num(d.next_seq, 1) || 1,
        credit_ms: d.credit_ms === undefined ? undefined : num(d.credit_ms),
        model: str(d.model),
        resume_grace_s: num(d.resume_grace_s),
        session_store: bool(d.session_store),
      };
    case "result":
      return {
        utterance_id: num(d.utterance_id),
        is_final: bool(d.is_final),
        stability: num(d.stability),
        text: str(d.text),
        stable_text: str(d.stable_text),
        segments: spans(d.segments),
        audio_processed_s: num(d.audio_processed_s),
        words: spans(d.words),
      };
    case "speech_event":
      return { kind: speechKind(d.kind), time_s: num(d.time_s) };
    case "ack":
      return {
        seq: num(d.seq),
        lag_ms: num(d.lag_ms),
        credit_ms: d.credit_ms === undefined ? undefined : num(d.credit_ms),
        stored_seq: num(d.stored_seq),
      };
    case "metrics":
      return {
        rtf: num(d.rtf),
        latency_ms: num(d.latency_ms),
        queue_depth: num(d.queue_depth),
        active_streams: num(d.active_streams),
        // The server's raised alerts, as gRPC Metrics and /api/v1/system carry them.
        alerts: (Array.isArray(d.alerts) ? d.alerts : [])
          .filter((a) => a && typeof a === "object")
          .map((a) => ({ name: str(a.name), message: str(a.message), since: num(a.since) })),
      };
    case "error":
      return { code: str(d.code), message: str(d.message) };
    default:
      return d;
  }
}

/** The first text frame of a connection. */
export function configMessage({ sessionId, resumeFromSeq, resumeFromEvent, extra } = {}) {
  const config = {
    encoding: "PCM16",
    sample_rate_hz: SAMPLE_RATE_HZ,
    channels: 1,
    interim_results: true,
    ...(extra || {}),
  };
  if (sessionId) {
    config.session_id = sessionId;
    config.resume_from_seq = resumeFromSeq;
    config.resume_from_event = resumeFromEvent;
  }
  return JSON.stringify({ config });
}

export const FINISH_MESSAGE = JSON.stringify({ control: { action: "FINISH" } });

/**
 * ws: or wss: URL of the stream endpoint for a page at `location`. The page sends its token
 * as a subprotocol (streamProtocols), not here: a token in a URL lands in access logs. The
 * `token` argument (?token=) is for programs that can do nothing else.
 */
export function streamUrl(location, path = "/api/v1/stream", token = "") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(path, `${scheme}//${location.host}`);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

/** The WebSocket subprotocol the server speaks (it answers with this name only). */
export const PROTOCOL = "audiototext.v1";
// RFC 6455 / 7230: a subprotocol is a "token": these characters only.
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function base64url(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * The subprotocols to offer: audiototext.v1, and with a token audiototext.token.<token>
 * (browsers cannot set an Authorization header on a WebSocket); a token with characters a
 * subprotocol cannot hold goes as audiototext.token-b64.<base64url of its UTF-8>.
 */
export function streamProtocols(token = "") {
  if (!token) return [PROTOCOL];
  if (TOKEN_CHARS.test(token)) return [PROTOCOL, `audiototext.token.${token}`];
  return [PROTOCOL, `audiototext.token-b64.${base64url(token)}`];
}

/** Close codes after which reconnecting cannot help (bad input / auth, server error). */
export const FATAL_CLOSE_CODES = new Set([1008, 1011, 1003, 1007, 1009, 1010]);
/** The server is overloaded: retry, but slowly. */
export const OVERLOADED_CLOSE_CODE = 1013;
