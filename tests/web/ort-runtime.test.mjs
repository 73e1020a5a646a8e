// The runtime loader: the pinned version's folder, and one thread where the realm is not
// cross-origin isolated (Node is not; neither is a page served without COOP/COEP).
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import test from "node:test";
import { web } from "./helpers.mjs";

test("loads the vendored build with one thread when not isolated", async () => {
  const { loadOrt, ORT_DIR, ORT_VERSION } = await import(web("js/ort-runtime.js"));
  assert.ok(ORT_DIR.href.endsWith(`/vendor/ort-${ORT_VERSION}/`));
  assert.ok(statSync(fileURLToPath(new URL("ort.wasm.min.mjs", ORT_DIR))).isFile());
  assert.notEqual(globalThis.crossOriginIsolated, true);
  const ort = await loadOrt({ threads: 4 });
  assert.equal(ort.env.wasm.numThreads, 1);
  assert.equal(ort.env.wasm.wasmPaths, ORT_DIR.href);
  assert.equal(await loadOrt({ threads: 2 }), ort); // once per realm
});
