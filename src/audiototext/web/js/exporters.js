// Transcript downloads: plain text, SubRip (srt), WebVTT (vtt) and JSON, from the final
// utterances of transcript.js. Pure functions of their input.

/** 1.2345 s -> "00:00:01,235" (srt) or "00:00:01.235" (vtt). Hours grow past 99. */
export function timestamp(seconds, separator = ",") {
  let ms = Math.round(Math.max(0, Number(seconds) || 0) * 1000);
  const h = Math.floor(ms / 3600000);
  ms -= h * 3600000;
  const m = Math.floor(ms / 60000);
  ms -= m * 60000;
  const s = Math.floor(ms / 1000);
  ms -= s * 1000;
  const two = (n) => String(n).padStart(2, "0");
  return `${two(h)}:${two(m)}:${two(s)}${separator}${String(ms).padStart(3, "0")}`;
}

/**
 * Subtitle cues: one per segment of each final utterance (one per utterance when it has no
 * segments); an utterance without any time follows the previous cue.
 */
export function cues(utterances) {
  const out = [];
  let clock = 0;
  for (const u of utterances) {
    if (!u.is_final || !u.text) continue;
    const segments = (u.segments || []).filter((s) => s.text && s.text.trim());
    const parts = segments.length
      ? segments.map((s) => ({ start: s.start_s, end: s.end_s, text: s.text.trim() }))
      : [{ start: u.start_s, end: u.end_s, text: u.text }];
    for (const p of parts) {
      const start = p.start ?? clock;
      const end = Math.max(start, p.end ?? start);
      out.push({ start, end, text: p.text });
      clock = end;
    }
  }
  return out;
}

const cueText = (text) => text.replace(/-->/g, "->").replace(/\r?\n+/g, " ").trim();

export function toText(utterances) {
  const lines = utterances.filter((u) => u.is_final && u.text).map((u) => u.text.trim());
  return lines.length ? lines.join("\n") + "\n" : "";
}

export function toSrt(utterances) {
  return cues(utterances)
    .map(
      (c, k) =>
        `${k + 1}\n${timestamp(c.start, ",")} --> ${timestamp(c.end, ",")}\n${cueText(c.text)}\n`,
    )
    .join("\n");
}

export function toVtt(utterances) {
  const escape = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const body = cues(utterances)
    .map((c) => `${timestamp(c.start, ".")} --> ${timestamp(c.end, ".")}\n${escape(cueText(c.text))}\n`)
    .join("\n");
  return body ? `WEBVTT\n\n${body}` : "WEBVTT\n";
}

export function toJson(utterances, meta = {}) {
  const round = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);
  const spans = (list) =>
    (list || []).map((s) => ({ start_s: round(s.start_s), end_s: round(s.end_s), text: s.text }));
  const doc = {
    ...meta,
    utterances: utterances
      .filter((u) => u.is_final && u.text)
      .map((u) => ({
        session: u.session,
        utterance_id: u.utterance_id,
        start_s: round(u.start_s),
        end_s: round(u.end_s),
        text: u.text,
        segments: spans(u.segments),
        words: spans(u.words),
      })),
  };
  return JSON.stringify(doc, null, 2) + "\n";
}

export const FORMATS = {
  txt: { render: toText, mime: "text/plain;charset=utf-8" },
  srt: { render: toSrt, mime: "application/x-subrip;charset=utf-8" },
  vtt: { render: toVtt, mime: "text/vtt;charset=utf-8" },
  json: { render: toJson, mime: "application/json;charset=utf-8" },
};
