// The server's alerts, live: from each stream's metrics events (WebSocket or WebRTC data
// channel) and from /api/v1/system while idle. Both carry the alerts raised now, [{name,
// message, since}]; the page keeps the ones that went away as "cleared" so a person who looks
// later still sees what happened.

/** How serious each alert is: critical ones stop or lose work, warnings degrade it. */
const SEVERITY = {
  engine_overloaded: "critical",
  model_load_failed: "critical",
  memory_low: "warning",
  disk_low: "warning",
  history_unavailable: "warning",
};

export function severityOf(name) {
  return SEVERITY[name] || "warning";
}

const MAX_CLEARED = 10; // older cleared alerts go first

/**
 * Raised and cleared alerts from successive readings of the raised list. An alert is keyed
 * by name and the time it was raised, so raised again later it is a new entry.
 */
export class AlertBook {
  constructor() {
    this.entries = new Map(); // key -> {key, name, message, since, severity, clearedAt}
  }

  /** alerts: the list raised now; now: Unix seconds. Returns whether anything changed. */
  update(alerts, now) {
    let changed = false;
    const raised = new Set();
    for (const a of Array.isArray(alerts) ? alerts : []) {
      if (!a || !a.name) continue;
      const since = Number(a.since) || 0;
      const key = `${a.name}@${since}`;
      raised.add(key);
      const old = this.entries.get(key);
      const message = String(a.message || "");
      if (!old || old.clearedAt !== null || old.message !== message) {
        this.entries.set(key, { key, name: a.name, message, since, severity: severityOf(a.name), clearedAt: null });
        changed = true;
      }
    }
    for (const entry of this.entries.values()) {
      if (entry.clearedAt === null && !raised.has(entry.key)) {
        entry.clearedAt = now;
        changed = true;
      }
    }
    const cleared = [...this.entries.values()].filter((e) => e.clearedAt !== null);
    cleared.sort((a, b) => a.clearedAt - b.clearedAt);
    for (const e of cleared.slice(0, Math.max(0, cleared.length - MAX_CLEARED))) this.entries.delete(e.key);
    return changed;
  }

  dismissCleared() {
    for (const [key, e] of this.entries) if (e.clearedAt !== null) this.entries.delete(key);
  }

  /** Raised first (critical before warnings), newest first; then cleared, newest first. */
  list() {
    const rank = (e) => (e.clearedAt === null ? (e.severity === "critical" ? 0 : 1) : 2);
    return [...this.entries.values()].sort(
      (a, b) => rank(a) - rank(b) || (b.clearedAt ?? b.since) - (a.clearedAt ?? a.since),
    );
  }

  raisedCount() {
    return [...this.entries.values()].filter((e) => e.clearedAt === null).length;
  }
}

/** "14:03:07" in the page's locale. */
export function timeOfDay(unixS, locale) {
  try {
    return new Date(unixS * 1000).toLocaleTimeString(locale || undefined, { hour12: false });
  } catch {
    return new Date(unixS * 1000).toISOString().slice(11, 19);
  }
}

/** One alert's text parts: [badge, message, when]. */
export function alertLine(entry, t, locale) {
  const badge = entry.severity === "critical" ? t("alerts.critical") : t("alerts.warning");
  const when =
    entry.clearedAt === null
      ? t("alerts.raised_at", { time: timeOfDay(entry.since, locale) })
      : t("alerts.cleared_at", { raised: timeOfDay(entry.since, locale), time: timeOfDay(entry.clearedAt, locale) });
  return [badge, entry.message || entry.name, when];
}

/** The alert banner at the top of the page (hidden while there is nothing to show). */
export class AlertsPanel {
  constructor(t) {
    this.t = t;
    this.book = new AlertBook();
    this.box = document.getElementById("alerts");
    this.list = document.getElementById("alert-list");
    this.dismiss = document.getElementById("alerts-dismiss");
    this.dismiss.addEventListener("click", () => {
      this.book.dismissCleared();
      this.render();
    });
  }

  /** The raised alerts as read now (a metrics event or /api/v1/system). */
  update(alerts) {
    if (this.book.update(alerts, Date.now() / 1000)) this.render();
  }

  render() {
    const t = this.t;
    const entries = this.book.list();
    this.box.hidden = entries.length === 0;
    this.box.dataset.raised = String(this.book.raisedCount());
    this.dismiss.hidden = !entries.some((e) => e.clearedAt !== null);
    const items = entries.map((e) => {
      const li = document.createElement("li");
      li.dataset.name = e.name;
      li.dataset.severity = e.severity;
      li.dataset.state = e.clearedAt === null ? "raised" : "cleared";
      const [badge, message, when] = alertLine(e, t, t.locale);
      const b = document.createElement("span");
      b.className = "alert-badge";
      b.textContent = e.clearedAt === null ? badge : t("alerts.cleared");
      const m = document.createElement("span");
      m.className = "alert-text";
      m.textContent = message;
      const w = document.createElement("span");
      w.className = "alert-when";
      w.textContent = when;
      li.append(b, m, w);
      return li;
    });
    this.list.replaceChildren(...items);
  }
}
