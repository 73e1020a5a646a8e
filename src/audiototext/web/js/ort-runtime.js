// ONNX Runtime Web, loaded on demand (never by the page's first load): the WASM-only build
// vendored in ../vendor/ort-VERSION/ by scripts/vendor-ort.sh, which also rewrites the pin.

export const ORT_VERSION = "1.31.1";
export const ORT_DIR = new URL(`../vendor/ort-${ORT_VERSION}/`, import.meta.url);

let loading = null;

/**
 * The runtime's module, set up once per realm. Threads only where the page is cross-origin
 * isolated (SharedArrayBuffer); elsewhere ORT runs one thread.
 * @param {{threads?: number}} options threads wanted (capped by the cores and isolation)
 */
export function loadOrt({ threads = 1 } = {}) {
  if (!loading) {
    loading = import(new URL("ort.wasm.min.mjs", ORT_DIR).href).then((ort) => {
      const isolated = globalThis.crossOriginIsolated === true;
      const cores = globalThis.navigator?.hardwareConcurrency || 1;
      ort.env.wasm.numThreads = isolated ? Math.max(1, Math.min(threads, cores)) : 1;
      ort.env.wasm.wasmPaths = ORT_DIR.href;
      return ort;
    });
  }
  return loading;
}
