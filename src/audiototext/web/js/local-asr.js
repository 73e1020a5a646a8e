// The page's side of local transcription (local-asr-worker.js; its header documents the
// messages). Nothing of the runtime or the model loads until start(). Not wired into the page
// yet: the next step switches to it when the server is lost and uploads its segments after.

export class LocalAsr {
  /** @param {object} handlers onSegment(segment), onDone(info), onError(message, fatal) */
  constructor(handlers = {}) {
    this.handlers = handlers;
    this.worker = null;
    this.ready = null;
  }

  /**
   * Starts the worker on a kept model.
   * @param {object} listing GET /api/v1/models/{name}/browser (its files kept: model-store.js)
   * @param {object} options threads, timestamps, language, task (see the worker's header)
   * @returns {Promise<object>} the worker's ready message (threads, loadMs, ...)
   */
  start(listing, options = {}) {
    this.stop();
    const worker = new Worker(new URL("./local-asr-worker.js", import.meta.url), {
      type: "module",
      name: "audiototext-local-asr",
    });
    this.worker = worker;
    this.ready = new Promise((resolve, reject) => {
      worker.onmessage = (event) => {
        const msg = event.data || {};
        if (msg.type === "ready") resolve(msg);
        else if (msg.type === "segment") this.handlers.onSegment?.(msg);
        else if (msg.type === "done") this.handlers.onDone?.(msg);
        else if (msg.type === "error") {
          if (msg.fatal) reject(new Error(msg.message));
          this.handlers.onError?.(msg.message, !!msg.fatal);
        }
      };
      worker.onerror = (event) => {
        event.preventDefault?.();
        const message = event.message || "the local transcription worker failed to load";
        reject(new Error(message));
        this.handlers.onError?.(message, true);
      };
    });
    worker.postMessage({ type: "init", listing, ...options });
    return this.ready;
  }

  /** Sends 16-kHz mono samples (the buffer is transferred); `end` closes the utterance. */
  feed(samples, { end = false } = {}) {
    if (!this.worker) throw new Error("local transcription is not started");
    const copy = samples instanceof Float32Array ? samples : Float32Array.from(samples);
    this.worker.postMessage({ type: "audio", samples: copy, end }, [copy.buffer]);
  }

  reset() {
    this.worker?.postMessage({ type: "reset" });
  }

  stop() {
    this.worker?.terminate();
    this.worker = null;
    this.ready = null;
  }
}
