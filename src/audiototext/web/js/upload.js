// A file through POST /api/v1/transcriptions: the upload with progress (XMLHttpRequest:
// fetch reports no upload progress), the transcript turned into the results the transcript
// model takes, and the drop box that wires it to the page. The XHR class is injected so
// Node's tests drive uploadFile with a fake.

/** What a file upload may be: GET /api/v1/transcriptions (or null when unknown). */
export async function uploadRules(getJson) {
  try {
    return await getJson("/transcriptions");
  } catch {
    return null;
  }
}

/**
 * Uploads `file` as multipart/form-data with `fields`; returns { promise, abort }. The
 * promise resolves with the JSON transcript, or rejects with an Error that has `status`
 * (0: network), `code` and `message` (the server's error body when it sent one, or
 * `code` "ABORTED" after abort()). onProgress(sentBytes, totalBytes) follows the upload;
 * onUploaded() fires when every byte is out and the server is transcribing.
 */
export function uploadFile({
  url,
  file,
  fields = {},
  token = "",
  onProgress = () => {},
  onUploaded = () => {},
  XHR = globalThis.XMLHttpRequest,
  FormDataClass = globalThis.FormData,
}) {
  const xhr = new XHR();
  const promise = new Promise((resolve, reject) => {
    const fail = (status, code, message) => {
      const error = new Error(message || code);
      error.status = status;
      error.code = code;
      reject(error);
    };
    xhr.open("POST", url);
    xhr.setRequestHeader("Accept", "application/json");
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.upload.onload = () => onUploaded();
    xhr.onerror = () => fail(0, "NETWORK", "");
    xhr.onabort = () => fail(0, "ABORTED", "");
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        resolve(body);
      } else if (body && body.error) {
        fail(xhr.status, body.error.code || "", body.error.message || "");
      } else {
        fail(xhr.status, "HTTP", xhr.statusText || String(xhr.status));
      }
    };
    const form = new FormDataClass();
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined && value !== null && value !== "") form.append(key, String(value));
    }
    form.append("file", file, file.name || "audio");
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

/**
 * The transcript of a file as results for TranscriptModel.apply: one final utterance per
 * segment, with the words that fall in it.
 */
export function transcriptResults(transcript) {
  const segments = Array.isArray(transcript && transcript.segments) ? transcript.segments : [];
  const words = Array.isArray(transcript && transcript.words) ? transcript.words : [];
  const out = [];
  segments.forEach((s, k) => {
    const text = String(s.text || "").trim();
    if (!text) return;
    const start = Number(s.start_s) || 0;
    const end = Math.max(start, Number(s.end_s) || 0);
    const last = k === segments.length - 1;
    out.push({
      utterance_id: k + 1,
      is_final: true,
      stability: 1,
      text,
      stable_text: text,
      segments: [{ start_s: start, end_s: end, text }],
      audio_processed_s: end,
      words: words
        .filter((w) => w.start_s >= start && (last ? true : w.start_s < end))
        .map((w) => ({ start_s: Number(w.start_s), end_s: Number(w.end_s), text: String(w.text) })),
    });
  });
  return out;
}

/** "12.3 MB" style size for people (decimal units, as file managers show). */
export function formatBytes(n) {
  const v = Math.max(0, Number(n) || 0);
  if (v < 1000) return `${v} B`;
  if (v < 1e6) return `${(v / 1e3).toFixed(1)} kB`;
  if (v < 1e9) return `${(v / 1e6).toFixed(1)} MB`;
  return `${(v / 1e9).toFixed(2)} GB`;
}

/**
 * The drop box of the transcript panel: a button opening the file picker, a zone taking a
 * dropped file, the upload's progress, Cancel. `onResult(transcript, file)` gets the JSON
 * transcript; `canStart()` says whether an upload may begin now (not while recording).
 */
export class UploadBox {
  constructor(els, t, { url, getToken, getJson, onResult, onBusy = () => {}, canStart = () => true }) {
    this.els = els; // { zone, input, button, cancel, progress, status }
    this.t = t;
    this.url = url;
    this.getToken = getToken;
    this.getJson = getJson;
    this.onResult = onResult;
    this.onBusy = onBusy;
    this.canStart = canStart;
    this.current = null;
    this.rules = null;

    els.button.addEventListener("click", () => els.input.click());
    els.input.addEventListener("change", () => {
      const file = els.input.files && els.input.files[0];
      els.input.value = ""; // the same file may be chosen again
      if (file) this.send(file);
    });
    els.cancel.addEventListener("click", () => this.cancel());
    const zone = els.zone;
    const over = (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = this.current ? "none" : "copy";
      zone.dataset.over = "true";
    };
    zone.addEventListener("dragenter", over);
    zone.addEventListener("dragover", over);
    zone.addEventListener("dragleave", (e) => {
      if (!zone.contains(e.relatedTarget)) delete zone.dataset.over;
    });
    zone.addEventListener("drop", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      delete zone.dataset.over;
      const file = e.dataTransfer.files[0];
      if (file) this.send(file);
    });
    // A file dropped beside the box must not make the browser open it (and lose the page).
    const doc = zone.ownerDocument;
    for (const type of ["dragover", "drop"]) {
      doc.addEventListener(type, (e) => {
        if (hasFiles(e) && !zone.contains(e.target)) e.preventDefault();
      });
    }
  }

  setEnabled(enabled) {
    this.els.button.disabled = !enabled || Boolean(this.current);
  }

  say(text) {
    this.els.status.textContent = text;
  }

  async send(file) {
    const t = this.t;
    if (this.current || this.checking) return;
    if (!this.canStart()) {
      this.say(t("upload.busy_recording"));
      return;
    }
    if (!file.size) {
      this.say(t("upload.empty", { name: file.name }));
      return;
    }
    if (this.rules === null) {
      this.checking = true;
      try {
        this.rules = await uploadRules(this.getJson);
      } finally {
        this.checking = false;
      }
    }
    const limit = this.rules && this.rules.max_upload_bytes;
    if (limit && file.size > limit) {
      this.say(t("upload.too_large", { name: file.name, size: formatBytes(file.size), limit: formatBytes(limit) }));
      return;
    }
    const { progress, cancel } = this.els;
    progress.value = 0;
    progress.max = 100;
    progress.hidden = false;
    cancel.hidden = false;
    this.onBusy(true);
    this.say(t("upload.sending", { name: file.name, percent: 0 }));
    let lastPercent = -1;
    const job = uploadFile({
      url: this.url(),
      file,
      fields: { format: "json" },
      token: this.getToken(),
      onProgress: (sent, total) => {
        const percent = total ? Math.floor((100 * sent) / total) : 0;
        progress.value = percent;
        // Screen readers hear every 10 %, not every event.
        if (percent >= lastPercent + 10 || percent === 100) {
          lastPercent = percent;
          this.say(t("upload.sending", { name: file.name, percent }));
        }
      },
      onUploaded: () => {
        progress.removeAttribute("value"); // indeterminate: the server is transcribing
        this.say(t("upload.transcribing", { name: file.name }));
      },
    });
    this.current = job;
    this.els.button.disabled = true;
    try {
      const transcript = await job.promise;
      this.onResult(transcript, file);
      this.say(t("upload.done", { name: file.name }));
    } catch (err) {
      this.say(this.describe(err, file));
    } finally {
      this.current = null;
      progress.hidden = true;
      cancel.hidden = true;
      this.els.button.disabled = false;
      this.onBusy(false);
    }
  }

  cancel() {
    if (this.current) this.current.abort();
  }

  describe(err, file) {
    const t = this.t;
    if (err.code === "ABORTED") return t("upload.cancelled", { name: file.name });
    if (err.status === 0) return t("upload.network", { name: file.name });
    if (err.status === 413) return t("upload.refused_size", { message: err.message });
    const text = t("upload.failed", { name: file.name, message: err.message || err.code });
    return err.status === 401 ? `${text} ${t("stream.token_hint")}` : text;
  }
}

function hasFiles(e) {
  const types = e.dataTransfer && e.dataTransfer.types;
  return Boolean(types) && Array.from(types).includes("Files");
}
