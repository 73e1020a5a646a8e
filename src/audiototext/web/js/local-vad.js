// The page's side of the in-browser VAD (vad-worker.js): started lazily with the first
// capture, so the runtime (≈3.8 MB) is never part of the page's first load. Tells the
// handlers when speech starts and ends, before any server answer.

export class LocalVad {
  /** @param {object} handlers onSpeech(kind, timeS), onState(state, detail) */
  constructor(handlers) {
    this.handlers = handlers;
    this.worker = null;
    this.state = LocalVad.supported() ? "off" : "unsupported";
  }

  /** WebAssembly SIMD is what the vendored build needs; module workers load it. */
  static supported() {
    if (typeof Worker === "undefined" || typeof WebAssembly !== "object") return false;
    // A function returning v128.const 0: valid only where WebAssembly has SIMD.
    const body = [0, 0xfd, 0x0c, ...new Array(16).fill(0), 0x0b];
    const simd = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7b,
      3, 2, 1, 0, 10, body.length + 2, 1, body.length, ...body]);
    try {
      return WebAssembly.validate(simd);
    } catch {
      return false;
    }
  }

  setState(state, detail = {}) {
    this.state = state;
    this.handlers.onState?.(state, detail);
  }

  /** Feeds the VAD from this capture (a MicCapture that has started). */
  attach(capture) {
    if (this.state === "unsupported" || this.state === "failed") return;
    if (!this.worker) {
      this.setState("loading");
      this.worker = new Worker(new URL("./vad-worker.js", import.meta.url), {
        type: "module",
        name: "audiototext-vad",
      });
      this.worker.onmessage = (event) => this.onMessage(event.data || {});
      this.worker.onerror = (event) => {
        event.preventDefault?.();
        this.setState("failed", { message: event.message || "the VAD worker failed to load" });
      };
    }
    const channel = new MessageChannel();
    this.worker.postMessage({ type: "tap", port: channel.port1 }, [channel.port1]);
    capture.tap(channel.port2);
  }

  onMessage(msg) {
    if (msg.type === "ready") this.setState("ready", msg);
    else if (msg.type === "stats") this.handlers.onStats?.(msg);
    else if (msg.type === "speech") this.handlers.onSpeech?.(msg.kind, msg.timeS);
    else if (msg.type === "error") {
      this.setState("failed", msg);
      this.worker.terminate();
      this.worker = null;
    }
  }
}
