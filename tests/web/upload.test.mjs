import assert from "node:assert/strict";
import test from "node:test";
import { web } from "./helpers.mjs";

const U = await import(web("js/upload.js"));
const { TranscriptModel } = await import(web("js/transcript.js"));
const { toSrt } = await import(web("js/exporters.js"));

const TRANSCRIPT = {
  text: "Hello there. General Kenobi.",
  language: "en",
  duration_s: 4,
  segments: [
    { start_s: 0.2, end_s: 1.5, text: " Hello there." },
    { start_s: 2.0, end_s: 3.6, text: " General Kenobi." },
  ],
  words: [
    { start_s: 0.2, end_s: 0.6, text: " Hello" },
    { start_s: 0.7, end_s: 1.5, text: " there." },
    { start_s: 2.0, end_s: 2.8, text: " General" },
    { start_s: 2.9, end_s: 3.6, text: " Kenobi." },
  ],
  filename: "talk.wav",
};

test("a file's transcript becomes one final utterance per segment, words included", () => {
  const results = U.transcriptResults(TRANSCRIPT);
  assert.equal(results.length, 2);
  assert.deepEqual(
    results.map((r) => [r.utterance_id, r.is_final, r.text, r.words.length]),
    [
      [1, true, "Hello there.", 2],
      [2, true, "General Kenobi.", 2],
    ],
  );
  assert.deepEqual(U.transcriptResults({}), []);
  assert.deepEqual(U.transcriptResults({ segments: [{ start_s: 0, end_s: 1, text: "  " }] }), []);
});

test("the results go into the transcript model after a live session, and export", () => {
  const model = new TranscriptModel();
  model.beginSession(0);
  model.apply({ utterance_id: 1, is_final: true, text: "Live.", segments: [{ start_s: 0, end_s: 2, text: "Live." }] }, 1);
  model.beginSession(model.endS());
  for (const r of U.transcriptResults(TRANSCRIPT)) assert.equal(model.apply(r).change, "final");
  const finals = model.finals();
  assert.deepEqual(finals.map((u) => u.text), ["Live.", "Hello there.", "General Kenobi."]);
  assert.equal(finals[1].start_s, 2.2); // after the live session's end
  const srt = toSrt(model.list());
  assert.match(srt, /3\n00:00:04,000 --> 00:00:05,600\nGeneral Kenobi\./);
});

class FakeFormData {
  constructor() {
    this.entries = [];
  }
  append(key, value, name) {
    this.entries.push([key, value, name]);
  }
}

function fakeXhr(behaviour) {
  const made = [];
  class FakeXHR {
    constructor() {
      this.headers = {};
      this.upload = {};
      made.push(this);
    }
    open(method, url) {
      this.method = method;
      this.url = url;
    }
    setRequestHeader(k, v) {
      this.headers[k] = v;
    }
    send(body) {
      this.body = body;
      queueMicrotask(() => behaviour(this));
    }
    abort() {
      this.onabort?.();
    }
  }
  return { FakeXHR, made };
}

test("uploadFile posts a form with the token and reports progress, then the transcript", async () => {
  const { FakeXHR, made } = fakeXhr((x) => {
    x.upload.onprogress({ loaded: 50, total: 100, lengthComputable: true });
    x.upload.onprogress({ loaded: 100, total: 100, lengthComputable: true });
    x.upload.onload();
    x.status = 200;
    x.responseText = JSON.stringify(TRANSCRIPT);
    x.onload();
  });
  const seen = [];
  let uploaded = false;
  const job = U.uploadFile({
    url: "/api/v1/transcriptions",
    file: { name: "talk.wav", size: 100 },
    fields: { format: "json", language: "" },
    token: "s3cret",
    onProgress: (a, b) => seen.push([a, b]),
    onUploaded: () => (uploaded = true),
    XHR: FakeXHR,
    FormDataClass: FakeFormData,
  });
  assert.deepEqual(await job.promise, TRANSCRIPT);
  const x = made[0];
  assert.equal(x.method, "POST");
  assert.equal(x.headers.Authorization, "Bearer s3cret");
  assert.deepEqual(x.body.entries.map((e) => e[0]), ["format", "file"]); // empty fields left out
  assert.equal(x.body.entries[1][2], "talk.wav");
  assert.deepEqual(seen, [[50, 100], [100, 100]]);
  assert.ok(uploaded);
});

test("uploadFile rejects with the server's error, a network failure or an abort", async () => {
  const refuse = fakeXhr((x) => {
    x.status = 413;
    x.responseText = JSON.stringify({ error: { code: "RESOURCE_EXHAUSTED", message: "over the limit" } });
    x.onload();
  });
  const args = { url: "/u", file: { name: "a", size: 1 }, FormDataClass: FakeFormData };
  await assert.rejects(U.uploadFile({ ...args, XHR: refuse.FakeXHR }).promise, (e) => {
    assert.equal(e.status, 413);
    assert.equal(e.code, "RESOURCE_EXHAUSTED");
    assert.equal(e.message, "over the limit");
    return true;
  });
  const down = fakeXhr((x) => x.onerror());
  await assert.rejects(U.uploadFile({ ...args, XHR: down.FakeXHR }).promise, (e) => e.status === 0 && e.code === "NETWORK");
  const hang = fakeXhr(() => {});
  const job = U.uploadFile({ ...args, XHR: hang.FakeXHR });
  job.abort();
  await assert.rejects(job.promise, (e) => e.code === "ABORTED");
});

test("sizes for people", () => {
  assert.equal(U.formatBytes(999), "999 B");
  assert.equal(U.formatBytes(1500), "1.5 kB");
  assert.equal(U.formatBytes(209715200), "209.7 MB");
});
