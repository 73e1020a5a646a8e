// The Model panel's "Keep in this browser" box: the server's model's browser files into the
// Cache API (model-store.js), with the size before and a progress bar during.

import { authHeaders, getJson } from "./api.js";
import { formatBytes } from "./format.js";
import { canKeepModels, isKept, keepModel } from "./model-store.js";

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
    if (!canKeepModels()) return;
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
    if (await isKept(this.listing)) this.status.textContent = this.t("keep.kept", { model, size });
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
