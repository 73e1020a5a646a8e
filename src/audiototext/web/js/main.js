// The page: wires the panels, the microphone, the stream and the transcript together.

import { apiBase, getJson, getToken, poll, setToken } from "./api.js";
import { AlertsPanel } from "./alerts.js";
import { listMicrophones, mediaErrorKey, MicCapture, microphoneUnavailable } from "./audio.js";
import { FORMATS } from "./exporters.js";
import { HistoryPanel } from "./history.js";
import { createTranslator, loadMessages, pickLocale, translateDocument } from "./i18n.js";
import { clientId, measureNetwork, reportNetwork } from "./network.js";
import { KeepModelBox } from "./keep-model.js";
import { LocalVad } from "./local-vad.js";
import { registerOffline } from "./offline.js";
import { DiagnosticsPanel, ModelsPanel, StatusBar } from "./panels.js";
import { streamProtocols, streamUrl } from "./protocol.js";
import { RtcStreamClient, rtcStreamOrigin } from "./rtc-client.js";
import { StreamClient } from "./stream-client.js";
import { TranscriptModel } from "./transcript.js";
import { TranscriptView } from "./transcript-view.js";
import { AutoTransport } from "./transport.js";
import { transcriptResults, UploadBox } from "./upload.js";
import { Waveform } from "./waveform.js";

const $ = (id) => document.getElementById(id);
const DEVICE_KEY = "audiototext.device";
const HANDOVER_AFTER_MS = 3000; // a lost server not back by then: transcribe in the browser
const MAX_TAIL_CHUNKS = 1200; // 2 min of 100-ms chunks kept since the last final

async function boot() {
  const wanted = pickLocale(navigator.languages || [navigator.language]);
  let t;
  try {
    const { locale, messages, fallback } = await loadMessages(wanted);
    t = createTranslator(messages, fallback, locale);
    translateDocument(document, t);
  } catch {
    t = createTranslator({}, {}, "en"); // the HTML's English stays; t() gives keys
  }
  new Page(t);
}

class Page {
  constructor(t) {
    this.t = t;
    this.startButton = $("start");
    this.mic = $("mic");
    this.errorEl = $("capture-error");
    this.note = $("transcript-note");
    this.model = new TranscriptModel();
    this.view = new TranscriptView(
      {
        scroller: $("transcript"),
        finals: $("finals"),
        partials: $("partials"),
        empty: $("transcript-empty"),
        jump: $("jump"),
      },
      t,
    );
    this.status = new StatusBar(t);
    this.models = new ModelsPanel(t);
    this.alerts = new AlertsPanel(t);
    this.history = new HistoryPanel(t);
    this.diagnostics = new DiagnosticsPanel(t, {
      onSystem: (doc) => {
        this.models.setDevices(doc.devices);
        this.alerts.update(doc.alerts);
      },
    });
    this.waveform = new Waveform($("wave"));
    this.vadLog = [];
    this.localVad = this.makeLocalVad();
    this.session = null;
    this.streamedS = 0; // audio streamed by earlier sessions: their place on the timeline
    this.state = "idle";

    this.setupToken();
    this.setupCapture();
    this.setupTranscriptTools();
    this.setupUpload();
    poll(() => this.status.checkHealth(), 5000);
    // Every second while the tab is visible (the live indicators); slower after errors.
    poll(() => this.diagnostics.refresh(), 1000);
    this.models.load();
    this.history.load();
    this.measureNetwork();
    new KeepModelBox(t).load();
    window.addEventListener("pagehide", () => this.abort());
  }

  // ---- the link to the server --------------------------------------------------------------

  /** Time the link once (diagnostics) and report it; each stream's session re-reports it. */
  async measureNetwork() {
    this.network = null;
    this.diagnostics.setNetwork(null);
    const token = getToken();
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    try {
      this.network = await measureNetwork({ base: apiBase(), headers });
      this.diagnostics.setNetwork(this.network);
      await this.reportNetwork("");
    } catch (err) {
      this.diagnostics.setNetwork({ error: err.message || String(err) });
    }
  }

  async reportNetwork(session) {
    if (!this.network) return;
    const token = getToken();
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    try {
      await reportNetwork(this.network, { base: apiBase(), headers, client: clientId(), session });
    } catch {
      // the figures stay on this page; the server goes without them
    }
  }

  /** The browser's own VAD: speech shown on the waveform before the server says so. */
  makeLocalVad() {
    const wrap = $("wave").parentElement;
    const vad = new LocalVad({
      onSpeech: (kind, timeS) => {
        wrap.dataset.localSpeechS = timeS.toFixed(2); // before the flag: observers read both
        this.waveform.localSpeech(kind, timeS);
        this.vadSpeaking = kind === "BEGIN";
        this.vadLog.push([kind, timeS]); // where local transcription starts (handover.js)
        if (this.vadLog.length > 200) this.vadLog.shift();
        this.session?.local?.speech(kind);
      },
      onState: (state, detail) => {
        wrap.dataset.localVad = state;
        if (state === "ready") wrap.dataset.localVadThreads = `${detail.threads}${detail.isolated ? " isolated" : ""}`;
        if (state === "failed") console.warn("voice activity in the browser is off:", detail.message);
      },
      // Milliseconds of the worker's time per second of audio (tests and curious people).
      onStats: (s) => {
        if (s.audioS > 0) wrap.dataset.localVadCost = (s.busyMs / s.audioS).toFixed(3);
      },
    });
    wrap.dataset.localVad = vad.state;
    return vad;
  }

  // ---- capture controls ------------------------------------------------------------------

  setupCapture() {
    const why = microphoneUnavailable();
    if (why === "insecure") {
      $("insecure").hidden = false;
      $("insecure-https").textContent = `https://${location.host}/`;
      this.startButton.disabled = true;
      this.startButton.setAttribute("aria-describedby", "insecure");
      this.mic.disabled = true;
    } else if (why === "unsupported") {
      this.showError(this.t("mic.unsupported"));
      this.startButton.disabled = true;
      this.mic.disabled = true;
    } else {
      this.refreshMicrophones();
      navigator.mediaDevices.addEventListener?.("devicechange", () => this.refreshMicrophones());
    }
    this.mic.addEventListener("change", () => {
      try {
        localStorage.setItem(DEVICE_KEY, this.mic.value);
      } catch {
        // storage disabled
      }
    });
    this.startButton.addEventListener("click", () => this.toggle());
    document.addEventListener("keydown", (event) => {
      if (event.code !== "Space" && event.key !== " ") return;
      if (event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
      if (isInteractive(event.target)) return; // typing, or a control Space already presses
      if (this.startButton.disabled) return;
      event.preventDefault();
      this.toggle();
    });
  }

  async refreshMicrophones() {
    let devices = [];
    try {
      devices = await listMicrophones();
    } catch {
      return;
    }
    let saved = this.mic.value;
    if (!saved) {
      try {
        saved = localStorage.getItem(DEVICE_KEY) || "";
      } catch {
        saved = "";
      }
    }
    const first = this.mic.options[0];
    this.mic.replaceChildren(first);
    devices.forEach((d, k) => {
      if (!d.deviceId) return; // no ids before permission in some browsers
      const option = document.createElement("option");
      option.value = d.deviceId;
      option.textContent = d.label || this.t("capture.device_n", { n: k + 1 });
      this.mic.append(option);
    });
    this.mic.value = [...this.mic.options].some((o) => o.value === saved) ? saved : "";
  }

  setButton(state) {
    this.state = state;
    const b = this.startButton;
    const label = {
      idle: "capture.start",
      starting: "capture.starting",
      recording: "capture.stop",
      stopping: "capture.finishing",
    }[state];
    b.textContent = this.t(label);
    b.dataset.recording = String(state === "recording" || state === "stopping");
    b.disabled = state === "starting" || this.uploading || microphoneUnavailable() !== null;
    this.mic.disabled = state !== "idle" || microphoneUnavailable() !== null;
    this.upload?.setEnabled(state === "idle");
    this.models?.setBusy(state !== "idle");
  }

  toggle() {
    if (this.state === "idle") this.start();
    else if (this.state === "recording") this.stop();
    else if (this.state === "stopping") this.abort();
  }

  showError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = !text;
  }

  async start() {
    this.showError("");
    this.note.textContent = "";
    this.setButton("starting");
    // streamS: capture time at which the current server stream's time 0 falls; tail: the
    // chunks since its last final, what local transcription starts from (handover.js)
    const session = { audioS: 0, startS: this.streamedS, stopping: false, streamS: 0, tail: [], locals: 0 };
    session.extraConfig = this.models.streamConfig(); // model, language, task and device of this session
    session.capture = new MicCapture({
      onChunk: (data) => {
        session.tail.push({ data, s: session.audioS });
        if (session.tail.length > MAX_TAIL_CHUNKS) session.tail.shift();
        const local = session.local?.push(data); // false: handed back at this chunk
        const atS = session.audioS;
        session.audioS += data.byteLength / 32000;
        if (!local) session.client?.sendAudio(data, atS);
      },
      onEnded: () => {
        this.showError(this.t("mic.ended"));
        this.stop();
      },
    });
    try {
      await session.capture.start(this.mic.value);
    } catch (err) {
      this.showError(this.t(mediaErrorKey(err)));
      this.setButton("idle");
      return;
    }
    this.session = session;
    this.refreshMicrophones(); // labels are readable once permission was granted
    this.waveform.attach(session.capture.analyser, () => session.capture.elapsed());
    this.localVad.attach(session.capture);
    this.connect(session);
    this.diagnostics.streamStarted();
    this.setButton("recording");
  }

  /** A server stream for the session's audio from now on (the first, or after a hand-back). */
  connect(session) {
    const t = this.t;
    const ref = {};
    const mine = () => this.session === session && session.client === ref.client;
    const handlers = {
      onState: (state, detail) => {
        if (!mine()) return;
        this.status.setTransport(state, detail);
        if (state === "reconnecting") {
          session.lostAudioS ??= session.audioS; // what the server had, roughly (WebRTC resume)
          this.note.textContent = t("stream.reconnecting");
          session.lostAt ??= performance.now();
          session.lostTimer ??= setTimeout(() => this.goLocal(session), HANDOVER_AFTER_MS);
        } else if (state === "connected") {
          clearTimeout(session.lostTimer);
          session.lostTimer = session.lostAt = null;
        }
      },
      // originS: the capture time of the server stream's time 0 (the WebRTC prefix's start);
      // continues: a resume whose prefix filled the outage (the stream's time went on)
      onMediaStart: (originS, continues) => {
        if (!mine()) return;
        session.mediaAtS = originS ?? session.audioS;
        session.mediaContinues = Boolean(continues);
      },
      onStarted: (started, outcome) => {
        if (!mine()) return;
        if (session.client.kind === "webrtc") {
          session.streamS = rtcStreamOrigin(session, outcome);
          console.info(`stream time 0 at capture ${session.streamS.toFixed(2)} s (webrtc, ${outcome})`);
        }
        session.lostAudioS = session.mediaAtS = null;
        session.mediaContinues = false;
        document.body.dataset.streamOriginS = session.streamS.toFixed(2); // tests read it
        if (outcome === "new") this.model.beginSession(session.startS + session.streamS);
        if (started && started.session_id) this.reportNetwork(started.session_id);
        if (outcome === "restarted") {
          this.model.beginSession(session.startS + session.audioS);
          this.note.textContent = t("stream.restarted");
        } else if (outcome === "resumed") {
          this.note.textContent = t("stream.resumed");
        }
      },
      onResult: (result, seq) => {
        if (!mine()) return;
        this.view.update(this.model.apply(result, seq));
        if (!result.is_final) return;
        // Up to the server's end of that speech (its words may end before the audio does).
        let end = session.streamS + (result.segments.at(-1)?.end_s ?? 0);
        if (session.speechEndS > end && session.speechEndS < end + 2) end = session.speechEndS;
        while (session.tail.length && session.tail[0].s + 0.1 <= end) session.tail.shift();
      },
      onSpeechEvent: (e) => {
        this.waveform.speechEvent(e.kind, e.time_s);
        if (mine() && e.kind === "END") session.speechEndS = session.streamS + e.time_s;
      },
      onMetrics: (m) => {
        this.diagnostics.onMetrics(m);
        this.alerts.update(m.alerts);
      },
      onAck: (a) => this.diagnostics.onAck(a),
      onRtt: (_ms, smoothed) => this.status.setRtt(smoothed),
      onServerError: (e) => this.showError(t("stream.server_error", { message: e.message || e.code })),
      onClosed: async (error) => {
        if (!mine()) return;
        // The server is gone for good (or never came): carry on in the browser if possible.
        if (error && !session.stopping && (await this.goLocal(session))) return;
        this.onClosed(session, error);
      },
      onRtcStats: (s) => this.diagnostics.onRtcStats(s),
      onFallback: () => {
        if (mine()) this.note.textContent = t("stream.fallback");
      },
    };
    ref.client = session.client = new AutoTransport({
      handlers,
      makeRtc: (h) =>
        webrtcWanted()
          ? new RtcStreamClient({
              offerUrl: () => apiBase() + "/webrtc/offer",
              track: () => session.capture.stream.getAudioTracks()[0],
              token: getToken,
              captureS: () => session.capture.elapsed(),
              extraConfig: session.extraConfig,
              handlers: h,
            })
          : null,
      makeWs: (h) =>
        new StreamClient({
          url: () => streamUrl(location, apiBase() + "/stream"),
          protocols: () => streamProtocols(getToken()),
          extraConfig: session.extraConfig,
          handlers: h,
        }),
    });
    session.client.start();
  }

  /** Local transcription from the server's last final on (handover.js); false if impossible. */
  async goLocal(session) {
    clearTimeout(session.lostTimer);
    session.lostTimer = null;
    if (session.local || session.stopping || this.session !== session) return false;
    return (await import("./handover.js")).goLocal(this, session);
  }

  async stop() {
    const session = this.session;
    if (!session || session.stopping) return;
    session.stopping = true;
    this.setButton("stopping");
    if (session.client?.transport === "connected") {
      this.status.setTransport("finishing", { kind: session.client.kind });
    }
    this.waveform.detach();
    await session.capture.stop();
    if (session.local) {
      await session.local.finish();
      this.onClosed(session, null);
      return;
    }
    await session.client.finish();
  }

  abort() {
    const session = this.session;
    if (!session) return;
    this.waveform.detach();
    session.capture.stop();
    session.local?.stop();
    session.client?.abort();
  }

  onClosed(session, error) {
    if (this.session !== session) return;
    this.session = null;
    this.diagnostics.streamEnded();
    this.streamedS = session.startS + session.audioS;
    if (!session.stopping) {
      this.waveform.detach();
      session.capture.stop();
    }
    if (error) this.showError(this.describe(error));
    this.note.textContent = "";
    this.setButton("idle");
    this.history.reload(); // the session just ended is listed
  }

  describe(error) {
    const t = this.t;
    const known = {
      UNREACHABLE: "stream.unreachable",
      RESUME_EXPIRED: "stream.resume_expired",
      BUFFER_FULL: "stream.buffer_full",
      FINISH_TIMEOUT: "stream.finish_timeout",
      BAD_URL: "stream.unreachable",
    };
    if (known[error.code]) return t(known[error.code]);
    const auth = /UNAUTHENTICATED|PERMISSION_DENIED|token/i.test(`${error.code} ${error.message}`);
    const text = t("stream.server_error", { message: error.message || error.code });
    return auth ? `${text} ${t("stream.token_hint")}` : text;
  }

  // ---- file upload ---------------------------------------------------------------------------

  setupUpload() {
    this.uploading = false;
    this.upload = new UploadBox(
      {
        zone: $("upload"),
        input: $("upload-input"),
        button: $("upload-button"),
        cancel: $("upload-cancel"),
        progress: $("upload-progress"),
        status: $("upload-status"),
      },
      this.t,
      {
        url: () => apiBase() + "/transcriptions",
        getToken,
        getJson,
        canStart: () => this.state === "idle",
        onBusy: (busy) => {
          this.uploading = busy;
          this.setButton(this.state);
        },
        onResult: (transcript) => this.showFileTranscript(transcript),
      },
    );
  }

  /** A file's transcript joins the transcript as a session of its own (Copy, Download). */
  showFileTranscript(transcript) {
    this.model.beginSession(this.model.endS());
    for (const result of transcriptResults(transcript)) {
      this.view.update(this.model.apply(result));
    }
    this.streamedS = this.model.endS(); // a later live session follows the file
    this.history.reload();
  }

  // ---- token -------------------------------------------------------------------------------

  setupToken() {
    const field = $("token");
    field.value = getToken();
    field.addEventListener("input", () => setToken(field.value.trim()));
    $("token-form").addEventListener("submit", (event) => event.preventDefault());
  }

  // ---- transcript tools ----------------------------------------------------------------------

  setupTranscriptTools() {
    const t = this.t;
    $("copy").addEventListener("click", async () => {
      const text = FORMATS.txt.render(this.model.list());
      if (!text) {
        this.note.textContent = t("transcript.nothing");
        return;
      }
      try {
        await navigator.clipboard.writeText(text);
        this.note.textContent = t("transcript.copied");
      } catch {
        this.note.textContent = copyBySelection(text) ? t("transcript.copied") : t("transcript.copy_failed");
      }
    });
    for (const button of document.querySelectorAll("[data-format]")) {
      button.addEventListener("click", () => this.download(button.dataset.format));
    }
    $("clear").addEventListener("click", () => {
      this.model.clear();
      this.view.clear();
      this.streamedS = 0;
      this.note.textContent = t("transcript.cleared");
    });
  }

  download(format) {
    const spec = FORMATS[format];
    const utterances = this.model.list();
    if (!utterances.some((u) => u.is_final && u.text)) {
      this.note.textContent = this.t("transcript.nothing");
      return;
    }
    const body = spec.render(utterances, { created: new Date().toISOString() });
    const url = URL.createObjectURL(new Blob([body], { type: spec.mime }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `transcript-${stamp(new Date())}.${format}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
}

/** WebRTC unless the browser has none or the address says ?transport=websocket. */
function webrtcWanted() {
  if (typeof globalThis.RTCPeerConnection !== "function") return false;
  return new URLSearchParams(location.search).get("transport") !== "websocket";
}

function isInteractive(el) {
  if (!el || el === document.body) return false;
  if (el.isContentEditable) return true;
  return /^(INPUT|TEXTAREA|SELECT|BUTTON|A|SUMMARY|OPTION)$/.test(el.tagName);
}

function copyBySelection(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

function stamp(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

boot();
registerOffline();
