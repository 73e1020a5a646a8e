// Static checks of the shipped files: every reference resolves, nothing is fetched from
// another origin, the page stays light.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import test from "node:test";
import { JS_DIR, WEB_DIR } from "./helpers.mjs";

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : [full];
  });
}
const files = walk(WEB_DIR);

// The budget is 300 KB on first load; this guard keeps a fifth of it in reserve (every
// shipped file counts here, even ones the page fetches only when used), but for vendor/: the
// WebAssembly runtime, which only a worker loads, after the page is up (next test), and the
// workers' own modules (the local transcription and VAD workers': loaded only with them, after
// the page is up, never by the page's graph; the next test checks that).
const VENDOR = path.join(WEB_DIR, "vendor") + path.sep;
const LOCAL_ASR_WORKER = ["local-asr-worker.js", "local-asr-session.js", "whisper-local.js", "whisper-tokens.js", "log-mel.js"];
const VAD_WORKER = ["vad-worker.js", "vad.js", "ort-runtime.js"];
const WORKER_ONLY = [...LOCAL_ASR_WORKER, ...VAD_WORKER].map((f) => path.join(JS_DIR, f));
// Loaded by the page with import() only when a stream loses its server (hand-over to local
// transcription), never on first load: outside the budget, and checked to be outside the
// static graph below.
const LAZY = ["handover.js", "local-asr.js"].map((f) => path.join(JS_DIR, f));

/** Every module main.js reaches through static and dynamic imports (not Worker URLs). */
function pageGraph(file = path.join(JS_DIR, "main.js"), seen = new Set(), pattern = /(?:from|import\()\s*"(\.[^"]+)"/g) {
  if (seen.has(file)) return seen;
  seen.add(file);
  const src = readFileSync(file, "utf8");
  for (const m of src.matchAll(pattern)) pageGraph(path.join(path.dirname(file), m[1]), seen, pattern);
  return seen;
}

/** What the first load fetches: main.js's static imports, transitively. */
const firstLoadGraph = () => pageGraph(path.join(JS_DIR, "main.js"), new Set(), /from\s*"(\.[^"]+)"/g);

test("the lazily loaded hand-over modules are not in the first load", () => {
  const all = pageGraph();
  const first = firstLoadGraph();
  for (const f of LAZY) {
    assert.ok(all.has(f), `${path.relative(WEB_DIR, f)} is no longer loaded by the page: drop it from LAZY`);
    assert.ok(!first.has(f), `${path.relative(WEB_DIR, f)} is imported statically: it counts in the first load`);
  }
});

test("the workers' modules are not in the page's module graph", () => {
  const graph = pageGraph();
  assert.ok(graph.size > 5, [...graph].join(" "));
  for (const f of WORKER_ONLY) assert.ok(!graph.has(f), path.relative(WEB_DIR, f));
});

test("total weight well under 300 KB", () => {
  const page = files.filter((f) => !f.startsWith(VENDOR) && !WORKER_ONLY.includes(f) && !LAZY.includes(f));
  const total = page.reduce((sum, f) => sum + statSync(f).size, 0);
  // 240 KiB until the WebRTC prefix (rtc-prefix.js and its use: ~4 KiB, audio said while
  // connecting is no longer lost) took some of the reserve, and its use on a resume (~4 KiB,
  // audio said while a connection was down is no longer lost) some more.
  assert.ok(total < 248 * 1024, `${total} bytes`);
});

test("only the workers' module graphs reach the vendored runtime", () => {
  const mentions = files
    .filter((f) => /\.(html|css|js)$/.test(f) && !f.startsWith(VENDOR))
    .filter((f) => /vendor\/|ort-runtime\.js/.test(readFileSync(f, "utf8")))
    .map((f) => path.relative(WEB_DIR, f))
    .sort();
  // sw.js names vendor/ to cache it; ort-runtime.js is the one loader; the workers import it.
  assert.deepEqual(mentions, ["js/local-asr-worker.js", "js/ort-runtime.js", "js/vad-worker.js", "sw.js"]);
  const main = readFileSync(path.join(JS_DIR, "main.js"), "utf8");
  assert.ok(!/vad-worker|ort-runtime/.test(main));
});

test("no request leaves the origin: no absolute URLs in markup, styles or code", () => {
  for (const file of files) {
    if (!/\.(html|css|js)$/.test(file)) continue;
    const text = readFileSync(file, "utf8");
    const urls = [...text.matchAll(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s"'`)]*/gi)].map((m) => m[0]);
    assert.deepEqual(urls, [], path.relative(WEB_DIR, file));
    assert.ok(!/@import|url\(\s*["']?(?:https?:)?\/\//i.test(text), file);
  }
});

test("index.html references existing files", () => {
  const html = readFileSync(path.join(WEB_DIR, "index.html"), "utf8");
  const refs = [...html.matchAll(/(?:src|href)="([^"#]+)"/g)].map((m) => m[1]);
  assert.ok(refs.includes("js/main.js") && refs.includes("app.css"));
  for (const ref of refs) assert.ok(statSync(path.join(WEB_DIR, ref)).isFile(), ref);
  assert.match(html, /<html lang="en">/);
  assert.match(html, /<button id="start"[^>]*type="button"/);
  assert.match(html, /id="finals" aria-live="polite"/);
});

// Served by the server from elsewhere in the package (server/http/web.py page_extras).
const SERVED_ELSEWHERE = { "vad/silero_vad.onnx": "../audio/assets/silero_vad.onnx" };

test("every relative import of every module resolves", () => {
  for (const file of readdirSync(JS_DIR).filter((f) => f.endsWith(".js"))) {
    const src = readFileSync(path.join(JS_DIR, file), "utf8");
    for (const m of src.matchAll(/(?:from|import\()\s*"(\.[^"]+)"/g)) {
      assert.ok(statSync(path.join(JS_DIR, m[1])).isFile(), `${file} imports ${m[1]}`);
    }
    for (const m of src.matchAll(/new URL\("(\.[^"]+)", import\.meta\.url\)/g)) {
      const onPage = path.relative(WEB_DIR, path.join(JS_DIR, m[1]));
      const target = path.join(WEB_DIR, SERVED_ELSEWHERE[onPage] || onPage);
      assert.ok(statSync(target).isFile() || statSync(target).isDirectory(), `${file}: ${m[1]}`);
    }
  }
});

test("the page's modules parse (Node can import those without DOM at load)", async () => {
  for (const name of [
    "resampler",
    "protocol",
    "resume",
    "stream-client",
    "rtc-client",
    "rtc-prefix",
    "transport",
    "transcript",
    "exporters",
    "format",
    "i18n",
    "alerts",
    "history",
    "vad",
    "ort-runtime",
    "log-mel",
    "whisper-tokens",
    "whisper-local",
    "local-asr",
    "local-asr-session",
  ]) {
    await import(new URL(`../../src/audiototext/web/js/${name}.js`, import.meta.url).href);
  }
});
