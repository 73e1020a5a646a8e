// Shared by the page's unit tests: where the page's files are.
import { fileURLToPath } from "node:url";
import path from "node:path";

export const WEB_DIR = fileURLToPath(new URL("../../src/audiototext/web/", import.meta.url));
export const JS_DIR = path.join(WEB_DIR, "js");
export const web = (rel) => new URL(`../../src/audiototext/web/${rel}`, import.meta.url).href;

// The vendored ONNX Runtime Web under Node: one thread, the .wasm read from its gzipped copy.
export async function nodeOrt() {
  const { readFileSync } = await import("node:fs");
  const { gunzipSync } = await import("node:zlib");
  const { ORT_DIR } = await import(web("js/ort-runtime.js"));
  const ort = await import(new URL("ort.wasm.min.mjs", ORT_DIR).href);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmBinary = gunzipSync(readFileSync(new URL("ort-wasm-simd-threaded.wasm.gz", ORT_DIR)));
  return ort;
}
