// The status bar (server health, transport, round trip), the model panel and the
// diagnostics panel.

import { getJson, HttpError, postEvents, postJson } from "./api.js";
import { flatten, formatLanguages, formatMb, formatValue, label } from "./format.js";
import { networkRows, recommendationRows } from "./network.js";
import {
  groupModels,
  languageChoices,
  normaliseChoice,
  pullProgress,
  streamConfigFields,
  taskChoices,
} from "./models.js";
import {
  deviceConfigField,
  deviceOptions,
  deviceSummary,
  LIVE_STATS_KEYS,
  loadedModelRows,
  normaliseDevice,
  resourceRows,
  streamRows,
} from "./resources.js";

function setPill(el, textEl, state, text) {
  el.dataset.state = state;
  if (textEl.textContent !== text) textEl.textContent = text;
}

export class StatusBar {
  constructor(t) {
    this.t = t;
    this.health = document.getElementById("health");
    this.healthText = document.getElementById("health-text");
    this.transport = document.getElementById("transport");
    this.transportText = document.getElementById("transport-text");
    this.rtt = document.getElementById("rtt-value");
    this.version = document.getElementById("version");
    this.serverModel = "";
  }

  async checkHealth() {
    const t = this.t;
    try {
      const h = await getJson("/health", { timeoutMs: 3000 });
      this.serverModel = h.model || "";
      if (h.version) this.version.textContent = `v${h.version}`;
      if (h.status === "SERVING") {
        setPill(this.health, this.healthText, "ok", t("health.serving", { model: h.model || "?" }));
      } else {
        setPill(this.health, this.healthText, "warn", t("health.not_serving"));
      }
      return true;
    } catch (err) {
      if (err instanceof HttpError && (err.status === 401 || err.status === 403)) {
        setPill(this.health, this.healthText, "warn", t("health.unauthorized"));
      } else {
        setPill(this.health, this.healthText, "bad", t("health.unreachable"));
      }
      return false;
    }
  }

  /** state: idle, connecting, connected, reconnecting, closed; detail.kind: webrtc or
   * websocket (shown before the state, and as the pill's data-kind). */
  setTransport(state, detail = {}) {
    const t = this.t;
    const look = {
      idle: ["idle", t("transport.idle")],
      connecting: ["busy", t("transport.connecting")],
      connected: ["ok", t("transport.connected")],
      reconnecting: ["busy", t("transport.reconnecting")],
      finishing: ["ok", t("transport.finishing")],
      local: ["busy", t("transport.local")],
      closed: detail.error ? ["bad", t("transport.closed_error")] : ["idle", t("transport.closed")],
    }[state] || ["idle", state];
    const kind = detail.kind && state !== "idle" ? t(`transport.${detail.kind}`) : "";
    this.transport.dataset.kind = kind ? detail.kind : "";
    setPill(this.transport, this.transportText, look[0], kind ? `${kind} · ${look[1]}` : look[1]);
    if (state !== "connected" && state !== "finishing") this.setRtt(null);
  }

  setRtt(ms) {
    const text = ms === null ? "—" : `${Math.round(ms)} ms`;
    if (this.rtt.textContent !== text) this.rtt.textContent = text;
  }
}

const CHOICE_KEY = "audiototext.model-choice";

function loadChoice() {
  try {
    const saved = JSON.parse(localStorage.getItem(CHOICE_KEY) || "{}");
    return saved && typeof saved === "object" ? saved : {};
  } catch {
    return {};
  }
}

function saveChoice(choice) {
  try {
    localStorage.setItem(CHOICE_KEY, JSON.stringify(choice));
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
}

/**
 * The model panel: which model, language and task the next session uses. The selector
 * lists downloaded models and those the server can download; choosing one of the latter
 * downloads and converts it on the server (progress bar fed by Server-Sent Events).
 */
export class ModelsPanel {
  constructor(t) {
    this.t = t;
    this.list = document.getElementById("model-list");
    this.select = document.getElementById("model-select");
    this.languageSelect = document.getElementById("language-select");
    this.taskSelect = document.getElementById("task-select");
    this.deviceSelect = document.getElementById("device-select");
    this.deviceNote = document.getElementById("device-note");
    this.devices = deviceOptions(null); // until /api/v1/system says more: GPU held back
    this.error = document.getElementById("models-error");
    this.pullBox = document.getElementById("model-pull");
    this.pullLabel = document.getElementById("pull-label");
    this.pullBar = document.getElementById("pull-progress");
    this.pullStatus = document.getElementById("pull-status");
    this.pullPercent = document.getElementById("pull-percent");
    this.pullCancel = document.getElementById("pull-cancel");
    this.pullCancel.addEventListener("click", () => this.cancelPull());
    this.models = [];
    this.defaultModel = "";
    this.choice = { model: "", language: "auto", task: "transcribe", device: "auto", ...loadChoice() };
    this.pulling = null; // the name being downloaded
    this.busy = false; // a session is running: choices wait for the next one
    document.getElementById("models-refresh").addEventListener("click", () => this.load());
    this.select.addEventListener("change", () => this.onModelChange());
    this.languageSelect.addEventListener("change", () => {
      this.choice.language = this.languageSelect.value;
      saveChoice(this.choice);
    });
    this.taskSelect.addEventListener("change", () => {
      this.choice.task = this.taskSelect.value;
      saveChoice(this.choice);
    });
    this.deviceSelect.addEventListener("change", () => {
      this.choice.device = this.deviceSelect.value;
      saveChoice(this.choice);
    });
    this.renderDevices();
  }

  /** The devices of /api/v1/system ([{name, available, reason}]): the selector follows. */
  setDevices(devices) {
    const options = deviceOptions(devices);
    if (JSON.stringify(options) === JSON.stringify(this.devices)) return;
    this.devices = options;
    this.renderDevices();
  }

  renderDevices() {
    const t = this.t;
    const selected = normaliseDevice(this.choice.device, this.devices);
    this.deviceSelect.replaceChildren();
    const reasons = [];
    for (const d of this.devices) {
      const option = document.createElement("option");
      option.value = d.value;
      const name = t(`models.device_${d.value}`);
      option.textContent = d.available ? name : t("models.device_unavailable", { name });
      option.disabled = !d.available;
      if (d.reason) {
        option.title = d.reason;
        reasons.push(t("models.device_reason", { name, reason: d.reason }));
      }
      option.selected = d.value === selected;
      this.deviceSelect.append(option);
    }
    const note = reasons.join(" ");
    if (this.deviceNote.textContent !== note) this.deviceNote.textContent = note;
    this.deviceNote.hidden = !note;
  }

  async load() {
    const t = this.t;
    try {
      const doc = await getJson("/models");
      this.defaultModel = String(doc.current || "");
      this.models = groupModels(doc);
      this.render();
      this.error.hidden = true;
    } catch (err) {
      this.error.textContent = t("models.error", { reason: err.message || String(err) });
      this.error.hidden = false;
    }
  }

  /** The model the next session runs: the chosen one when it is downloaded. */
  activeModel() {
    const chosen = this.models.find((m) => m.name === this.choice.model && m.usable);
    return chosen || this.models.find((m) => m.name === this.defaultModel) || null;
  }

  /** StreamConfig fields for the next session. */
  streamConfig() {
    const model = this.activeModel();
    const { language, task } = normaliseChoice(model, this.choice.language, this.choice.task);
    return {
      ...streamConfigFields({ model: model ? model.name : "", language, task }),
      ...deviceConfigField(normaliseDevice(this.choice.device, this.devices)),
    };
  }

  /** While a session runs its model cannot change (the choice applies to the next one). */
  setBusy(busy) {
    this.busy = busy;
    this.updateDisabled();
  }

  updateDisabled() {
    const locked = this.busy || this.pulling !== null;
    this.select.disabled = locked || !this.models.length;
    this.languageSelect.disabled = locked;
    this.taskSelect.disabled = locked || this.taskSelect.options.length < 2;
    this.deviceSelect.disabled = this.busy; // a download does not change where a model runs
  }

  render() {
    const t = this.t;
    const active = this.activeModel();
    this.select.replaceChildren();
    const groups = [
      ["models.group_cached", this.models.filter((m) => m.usable)],
      ["models.group_download", this.models.filter((m) => !m.usable)],
    ];
    for (const [key, models] of groups) {
      if (!models.length) continue;
      const group = document.createElement("optgroup");
      group.label = t(key);
      for (const m of models) {
        const option = document.createElement("option");
        option.value = m.name;
        option.textContent = this.optionText(m);
        option.selected = active !== null && m.name === active.name;
        group.append(option);
      }
      this.select.append(group);
    }
    this.renderChoices(active);
    this.renderList(active);
    this.updateDisabled();
  }

  optionText(m) {
    const t = this.t;
    const parts = [m.name];
    if (m.cached) {
      if (m.precisions.length) parts.push(m.precisions.join("/"));
      parts.push(formatMb(m.sizeMb));
    } else if (!m.usable) {
      parts.push(t("models.download_size", { size: formatMb(m.downloadMb || m.sizeMb) }));
    }
    if (m.ramMb) parts.push(t("models.ram", { ram: formatMb(m.ramMb) }));
    parts.push(m.multilingual ? t("models.multilingual") : t("models.english_only"));
    if (m.name === this.defaultModel) parts.push(t("models.current"));
    return parts.join(" · ");
  }

  renderChoices(model) {
    const t = this.t;
    const { language, task } = normaliseChoice(model, this.choice.language, this.choice.task);
    const names = languageNames(t.locale);
    this.languageSelect.replaceChildren();
    for (const code of languageChoices(model)) {
      const option = document.createElement("option");
      option.value = code;
      option.textContent = code === "auto" ? t("models.language_auto") : languageLabel(code, names);
      option.selected = code === language;
      this.languageSelect.append(option);
    }
    this.taskSelect.replaceChildren();
    for (const name of taskChoices(model)) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = t(name === "translate" ? "models.task_translate" : "models.task_transcribe");
      option.selected = name === task;
      this.taskSelect.append(option);
    }
  }

  renderList(active) {
    const t = this.t;
    this.list.replaceChildren();
    if (!this.models.length) {
      const li = document.createElement("li");
      li.textContent = t("models.none");
      this.list.append(li);
    }
    for (const m of this.models.filter((x) => x.usable)) {
      const li = document.createElement("li");
      if (active && m.name === active.name) li.setAttribute("aria-current", "true");
      const head = document.createElement("div");
      const title = document.createElement("span");
      title.className = "model-name";
      title.textContent = m.name;
      head.append(title);
      const badge = (cls, text) => {
        const b = document.createElement("span");
        b.className = `badge ${cls}`;
        b.textContent = text;
        head.append(b);
      };
      if (m.name === this.defaultModel) badge("current", t("models.current"));
      if (m.cached) badge("cached", t("models.cached"));
      if (m.loaded) badge("loaded", t("models.loaded"));
      const meta = document.createElement("div");
      meta.className = "model-meta";
      const parts = [];
      if (m.precisions.length) parts.push(t("models.precision", { precision: m.precisions.join(", ") }));
      if (m.cached) parts.push(t("models.size", { size: formatMb(m.sizeMb) }));
      if (m.ramMb) parts.push(t("models.ram", { ram: formatMb(m.ramMb) }));
      parts.push(t("models.languages", { languages: formatLanguages(m.languages, t) }));
      meta.textContent = parts.join(" · ");
      li.append(head, meta);
      this.list.append(li);
    }
  }

  onModelChange() {
    const name = this.select.value;
    const model = this.models.find((m) => m.name === name);
    if (!model) return;
    if (model.usable) {
      this.choice.model = name;
      saveChoice(this.choice);
      this.render();
      return;
    }
    this.pull(model);
  }

  /** Download and convert `model` on the server, showing progress; then select it. */
  async pull(model) {
    const t = this.t;
    this.pulling = model.name;
    this.updateDisabled();
    this.pullBox.hidden = false;
    this.pullBar.hidden = false;
    this.pullLabel.hidden = false;
    this.pullLabel.textContent = t("models.pull_label", { name: model.name });
    this.pullStatus.textContent = t("models.pull_starting");
    this.pullPercent.textContent = "";
    this.pullBar.value = 0;
    this.pullCancel.hidden = false;
    this.pullCancel.disabled = false;
    let state = { stage: "download", percent: null, description: "" };
    let failure = null;
    let finished = false;
    try {
      await postEvents(`/models/${modelPath(model.name)}/pull`, (event) => {
        state = pullProgress(event, state);
        if (state.error) failure = state.error;
        if (state.stage === "done") finished = true;
        this.showPull(state);
      });
      if (!finished && !failure) failure = t("models.pull_cut");
    } catch (err) {
      failure = err.message || String(err);
    }
    this.pulling = null;
    this.pullCancel.hidden = true;
    if (!failure) {
      this.choice.model = model.name;
      saveChoice(this.choice);
    }
    await this.load(); // the list shows it as downloaded, and the selector the choice
    this.pullBar.hidden = true;
    this.pullLabel.hidden = true; // the status line below says how it ended
    this.pullPercent.textContent = "";
    if (state.cancelled) this.pullStatus.textContent = t("models.pull_cancelled", { name: model.name });
    else if (failure) this.pullStatus.textContent = t("models.pull_failed", { name: model.name, reason: failure });
    else this.pullStatus.textContent = t("models.pull_done", { name: model.name });
  }

  /** Asks the server to stop the download under way; its event stream then ends ABORTED. */
  async cancelPull() {
    if (this.pulling === null) return;
    this.pullCancel.disabled = true;
    try {
      await postJson(`/models/${modelPath(this.pulling)}/pull/cancel`);
    } catch (err) {
      // Finished meanwhile (404), or the server is gone: the pull's own stream says how it ended.
      if (!(err instanceof HttpError && err.status === 404)) this.pullCancel.disabled = false;
    }
  }

  showPull(state) {
    const t = this.t;
    if (state.percent === null) this.pullBar.removeAttribute("value");
    else this.pullBar.value = state.percent;
    const percent = state.percent === null ? "" : ` ${Math.round(state.percent)}%`;
    if (this.pullPercent.textContent !== percent) this.pullPercent.textContent = percent;
    // The status line is a live region: it changes with the stage and file, not each percent.
    const stage = state.stage === "convert" ? "models.pull_converting" : "models.pull_downloading";
    const text = t(stage, { what: state.description || "" });
    if (this.pullStatus.textContent !== text) this.pullStatus.textContent = text;
  }
}

/** A model name in a URL path: each part escaped, a repo id's slash kept. */
function modelPath(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

function languageNames(locale) {
  try {
    return new Intl.DisplayNames([locale || "en"], { type: "language" });
  } catch {
    return null;
  }
}

function languageLabel(code, names) {
  let name = "";
  try {
    name = names ? names.of(code) : "";
  } catch {
    name = "";
  }
  return name && name !== code ? `${name} (${code})` : code;
}

/** A definition list kept in place: rows are updated, added or removed, never rebuilt. */
class KeyValueList {
  constructor(dl) {
    this.dl = dl;
    this.rows = new Map(); // key -> {dt, dd}
  }

  set(entries) {
    const keep = new Set();
    for (const [key, name, value] of entries) {
      keep.add(key);
      let row = this.rows.get(key);
      if (!row) {
        row = { dt: document.createElement("dt"), dd: document.createElement("dd") };
        row.dt.dataset.key = key;
        this.rows.set(key, row);
        this.dl.append(row.dt, row.dd);
      }
      if (row.dt.textContent !== name) row.dt.textContent = name;
      if (row.dd.textContent !== value) row.dd.textContent = value;
    }
    for (const [key, row] of this.rows) {
      if (!keep.has(key)) {
        row.dt.remove();
        row.dd.remove();
        this.rows.delete(key);
      }
    }
  }
}

/** Rows of /api/v1/system for the "this machine" list: the live figures and the devices
 * have lists of their own (the devices as one row). */
// alerts: the alert banner has them; models: one line per loaded model below; devices,
// profile: lists of their own.
const OWN_LISTS = new Set(["devices", "alerts", "models", "profile"]);

function systemRows(doc, t) {
  const rows = [];
  for (const [path, value] of flatten(doc)) {
    const parts = path.split(".");
    if (OWN_LISTS.has(parts[0])) continue;
    if (parts[0] === "stats" && LIVE_STATS_KEYS.has(parts[1])) continue;
    rows.push([path, label(path, t), formatValue(path, value, t, t.locale)]);
  }
  rows.push(...loadedModelRows(doc.models, t, t.locale));
  if (Array.isArray(doc.devices)) {
    rows.push(["devices", t("sys.devices"), deviceSummary(deviceOptions(doc.devices), t)]);
  }
  return rows;
}

export class DiagnosticsPanel {
  /** onSystem(doc): each /api/v1/system document read (the device selector follows it). */
  constructor(t, { onSystem = () => {} } = {}) {
    this.t = t;
    this.onSystem = onSystem;
    this.reads = 0;
    this.resources = new KeyValueList(document.getElementById("resources"));
    this.system = new KeyValueList(document.getElementById("system"));
    this.live = new KeyValueList(document.getElementById("live"));
    this.recommendation = new KeyValueList(document.getElementById("recommendation"));
    this.network = new KeyValueList(document.getElementById("network"));
    this.error = document.getElementById("system-error");
    this.metrics = null;
    this.ack = null;
    this.rtc = null;
    this.streamState = "idle"; // STREAM_STATES
    this.renderLive();
  }

  async refresh() {
    const t = this.t;
    try {
      const doc = await getJson("/system", { timeoutMs: 3000 });
      this.resources.set(resourceRows(doc.stats, t, t.locale));
      this.reads += 1;
      this.resources.dl.dataset.reads = String(this.reads); // tests see each update
      this.resources.dl.classList.remove("stale");
      this.system.set(systemRows(doc, t));
      this.recommendation.set(recommendationRows(doc.profile, t));
      this.onSystem(doc);
      this.error.hidden = true;
      this.renderLive();
      return true;
    } catch (err) {
      this.error.textContent = t("diag.error", { reason: err.message || String(err) });
      this.error.hidden = false;
      this.resources.dl.classList.add("stale"); // the last figures, greyed until a read works
      this.renderLive();
      return false;
    }
  }

  /** The page's own measurement of its link (network.js), or {error}; null while measuring. */
  setNetwork(result) {
    const t = this.t;
    this.network.set(networkRows(result, t, (path, v) => formatValue(path, v, t, t.locale)));
  }

  onMetrics(m) {
    this.metrics = m;
    this.renderLive();
  }

  onAck(a) {
    this.ack = a;
  }

  /** WebRTC's audio counters: lost (filled with silence) and dropped (the server behind). */
  onRtcStats(s) {
    this.rtc = s;
    this.renderLive();
  }

  /** A stream starts: the last one's figures go. */
  streamStarted() {
    this.streamState = "live";
    this.metrics = null;
    this.ack = null;
    this.rtc = null;
    this.renderLive();
  }

  /** The stream ended: its last figures stay, greyed, under an "ended" state. */
  streamEnded() {
    if (this.streamState !== "live") return;
    this.streamState = "ended";
    this.renderLive();
  }

  renderLive() {
    const t = this.t;
    const ms = (x) => formatValue("lag_ms", x, t, t.locale);
    // The engine's figures (real-time factor, latency, queue, streams) are the server's
    // live indicators above; this list holds what only this stream knows.
    const state = this.streamState;
    this.live.set(streamRows({ state, ack: this.ack, rtc: this.rtc }, t, ms));
    this.live.dl.dataset.state = state; // tests read it
    this.live.dl.classList.toggle("stale", state === "ended");
  }
}
