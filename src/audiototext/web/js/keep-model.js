// The Model panel's "Keep in this browser" box: the server's model's browser files into the
// Cache API (model-store.js), with the size before and a progress bar during.

import { authHeaders, getJson } from "./api.js";
import { formatBytes } from "./format.js";
import { canKeepModels, isKept, keepModel, rememberKept } from "./model-store.js";
import { LocalVad } from "./local-vad.js";

const $ = (id) => document.getElementById(id);
const BROWSER_PRECISIONS = ["int8", "fp32"]; // what server/http/browser_models.py offers

export class KeepModelBox {
  constructor(t) {
    this.t = t;
    this.box = $("model-keep");
    this.button = $("keep-model");
    this.progress = $("keep-progress");
    this.status = $("keep-status");
    this.listing = null;
    this.button.addEventListener("click", () => this.keep());
  }

  /** Shows the box for the server's model, if it has browser files and this browser can keep them. */
  async load() {
    // Local transcription needs the Cache API (the kept files) and WebAssembly SIMD (the
    // runtime's one build): without either, say so once; the page works with the server only.
    const missing = [LocalVad.supported() ? "" : this.t("keep.no_simd"), canKeepModels() ? "" : this.t("keep.no_cache")].filter(Boolean);
    if (missing.length) {
      this.button.hidden = true;
      this.box.querySelector(".hint").hidden = true;
      this.status.textContent = this.t("keep.unsupported", { missing: missing.join(", ") });
      this.box.dataset.unsupported = "true";
      this.box.hidden = false;
      return;
    }
    let model;
    try {
      model = (await getJson("/health")).model;
      // Asked first so that a model with no such conversion costs no 404 (a console error).
      const info = await getJson(`/models/${model}`);
      if (!info.cached.some((e) => BROWSER_PRECISIONS.includes(e.precision))) return;
      this.listing = await getJson(`/models/${model}/browser`);
    } catch {
      return; // no conversion the browser can use: nothing to offer
    }
    const size = formatBytes(this.listing.total_bytes, this.t.locale);
    this.button.textContent = this.t("keep.button", { model, size });
    this.box.hidden = false;
    if (await isKept(this.listing)) {
      rememberKept(this.listing);
      this.status.textContent = this.t("keep.kept", { model, size });
    }
  }

  async keep() {
    const listing = this.listing;
    if (!listing) return;
    this.button.disabled = true;
    this.progress.hidden = false;
    this.progress.value = 0;
    this.status.textContent = "";
    const size = formatBytes(listing.total_bytes, this.t.locale);
    try {
      await keepModel(listing, {
        headers: authHeaders("*/*"),
        onProgress: (done, total) => {
          this.progress.value = Math.floor((100 * done) / total);
          this.status.textContent = this.t("keep.progress", {
            done: formatBytes(done, this.t.locale),
            size,
          });
        },
      });
      rememberKept(listing);
      this.status.textContent = this.t("keep.kept", { model: listing.model, size });
      this.box.dataset.kept = listing.version;
    } catch (err) {
      this.status.textContent = this.t("keep.failed", { message: err.message || String(err) });
    } finally {
      this.button.disabled = false;
      this.progress.hidden = true;
    }
  }
}
