// The status bar (server health, transport, round trip), the model panel and the
// diagnostics panel.

import { getJson, HttpError } from "./api.js";
import { flatten, formatLanguages, formatMb, formatValue, label } from "./format.js";

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

  /** state: idle, connecting, connected, reconnecting, closed. */
  setTransport(state, detail = {}) {
    const t = this.t;
    const look = {
      idle: ["idle", t("transport.idle")],
      connecting: ["busy", t("transport.connecting")],
      connected: ["ok", t("transport.connected")],
      reconnecting: ["busy", t("transport.reconnecting")],
      finishing: ["ok", t("transport.finishing")],
      closed: detail.error ? ["bad", t("transport.closed_error")] : ["idle", t("transport.closed")],
    }[state] || ["idle", state];
    setPill(this.transport, this.transportText, look[0], look[1]);
    if (state !== "connected" && state !== "finishing") this.setRtt(null);
  }

  setRtt(ms) {
    const text = ms === null ? "—" : `${Math.round(ms)} ms`;
    if (this.rtt.textContent !== text) this.rtt.textContent = text;
  }
}

export class ModelsPanel {
  constructor(t) {
    this.t = t;
    this.list = document.getElementById("model-list");
    this.select = document.getElementById("model-select");
    this.error = document.getElementById("models-error");
    document.getElementById("models-refresh").addEventListener("click", () => this.load());
  }

  async load() {
    const t = this.t;
    try {
      const doc = await getJson("/models");
      this.render(doc);
      this.error.hidden = true;
    } catch (err) {
      this.error.textContent = t("models.error", { reason: err.message || String(err) });
      this.error.hidden = false;
    }
  }

  render(doc) {
    const t = this.t;
    const models = Array.isArray(doc.models) ? doc.models : [];
    const current = doc.current || "";
    this.list.replaceChildren();
    this.select.replaceChildren();
    if (!models.length) {
      const li = document.createElement("li");
      li.textContent = t("models.none");
      this.list.append(li);
    }
    for (const m of models) {
      const name = String(m.name || "?");
      // The server marks the one it runs (one precision of a name); older servers did not.
      const isCurrent = typeof m.current === "boolean" ? m.current : name === current;
      const li = document.createElement("li");
      if (isCurrent) li.setAttribute("aria-current", "true");
      const head = document.createElement("div");
      const title = document.createElement("span");
      title.className = "model-name";
      title.textContent = name;
      head.append(title);
      const badge = (cls, text) => {
        const b = document.createElement("span");
        b.className = `badge ${cls}`;
        b.textContent = text;
        head.append(b);
      };
      if (isCurrent) badge("current", t("models.current"));
      if (m.cached === true) badge("cached", t("models.cached"));
      else if (m.cached === false) badge("", t("models.not_cached"));
      const meta = document.createElement("div");
      meta.className = "model-meta";
      const parts = [];
      if (m.precision) parts.push(t("models.precision", { precision: m.precision }));
      if (m.size_mb !== undefined) parts.push(t("models.size", { size: formatMb(m.size_mb) }));
      if (m.ram_mb !== undefined) parts.push(t("models.ram", { ram: formatMb(m.ram_mb) }));
      if (m.languages !== undefined) {
        parts.push(t("models.languages", { languages: formatLanguages(m.languages, t) }));
      }
      meta.textContent = parts.join(" · ");
      li.append(head, meta);
      this.list.append(li);
      const option = document.createElement("option");
      option.value = name;
      option.textContent = isCurrent ? `${name} (${t("models.current")})` : name;
      option.selected = isCurrent;
      this.select.append(option);
    }
  }
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

export class DiagnosticsPanel {
  constructor(t) {
    this.t = t;
    this.system = new KeyValueList(document.getElementById("system"));
    this.live = new KeyValueList(document.getElementById("live"));
    this.error = document.getElementById("system-error");
    this.metrics = null;
    this.ack = null;
    this.renderLive();
  }

  async refresh() {
    const t = this.t;
    try {
      const doc = await getJson("/system", { timeoutMs: 3000 });
      const rows = flatten(doc).map(([path, value]) => [
        path,
        label(path, t),
        formatValue(path, value, t, t.locale),
      ]);
      this.system.set(rows);
      this.error.hidden = true;
      this.renderLive();
      return true;
    } catch (err) {
      this.error.textContent = t("diag.error", { reason: err.message || String(err) });
      this.error.hidden = false;
      this.renderLive();
      return false;
    }
  }

  onMetrics(m) {
    this.metrics = m;
    this.renderLive();
  }

  onAck(a) {
    this.ack = a;
  }

  renderLive() {
    const t = this.t;
    const m = this.metrics;
    const v = (x, f) => (m ? f(x) : "—");
    const loc = t.locale;
    this.live.set([
      ["rtf", t("live.rtf"), v(m && m.rtf, (x) => formatValue("rtf", x, t, loc))],
      ["latency", t("live.latency"), v(m && m.latency_ms, (x) => formatValue("latency_ms", x, t, loc))],
      ["queue", t("live.queue"), v(m && m.queue_depth, (x) => String(x))],
      ["streams", t("live.streams"), v(m && m.active_streams, (x) => String(x))],
      [
        "lag",
        t("live.lag"),
        this.ack ? formatValue("lag_ms", this.ack.lag_ms, t, loc) : "—",
      ],
    ]);
  }
}
