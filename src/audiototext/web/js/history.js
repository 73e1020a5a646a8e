// The History panel: the server's recent transcripts (its SQLite history with `serve
// --history`, else the sessions it keeps in memory) through /api/v1/history: list, search,
// open one, export it as the server renders it, delete it after a confirmation.

import { HttpError, request } from "./api.js";
import { formatClock, formatDuration } from "./format.js";

export const PAGE_SIZE = 20;
export const HISTORY_FORMATS = ["txt", "srt", "vtt", "json"];

export const historyPaths = {
  list: (limit = PAGE_SIZE, offset = 0) => `/history?limit=${limit}&offset=${offset}`,
  search: (query, limit = PAGE_SIZE) => `/history/search?q=${encodeURIComponent(query)}&limit=${limit}`,
  one: (id, format = "json") => `/history/${encodeURIComponent(id)}?format=${format}`,
};

/** A snippet with the matched words in [brackets] (the server's) → [{text, mark}]. */
export function snippetParts(snippet) {
  const parts = [];
  const re = /\[([^\]]*)\]/g;
  let pos = 0;
  for (let m = re.exec(snippet); m; m = re.exec(snippet)) {
    if (m.index > pos) parts.push({ text: snippet.slice(pos, m.index), mark: false });
    if (m[1]) parts.push({ text: m[1], mark: true });
    pos = m.index + m[0].length;
  }
  if (pos < snippet.length) parts.push({ text: snippet.slice(pos), mark: false });
  return parts;
}

/** "7 Dec 2026, 14:03" in the page's locale. */
export function startedLabel(unixS, locale) {
  const d = new Date(unixS * 1000);
  try {
    return d.toLocaleString(locale || undefined, { dateStyle: "medium", timeStyle: "short" });
  } catch {
    return d.toISOString().slice(0, 16).replace("T", " ");
  }
}

/** A listing row (the API's {session, segments, duration_s, preview}) → what the list shows. */
export function rowView(row, t, locale) {
  const s = row.session || {};
  const how = s.source === "file" ? t("history.source_file") : s.transport || t("history.source_stream");
  const live = s.ended_at === null || s.ended_at === undefined;
  return {
    id: s.id,
    title: `${startedLabel(Number(s.started_at) || 0, locale)} · ${formatDuration(Number(row.duration_s) || 0, locale)}`,
    meta: [s.model, s.language, how, plural(t, "history.segments", row.segments ?? 0)].filter(Boolean).join(" · "),
    preview: row.preview || "",
    live,
  };
}

/** key for most counts, key_one for 1 (English and Portuguese need no more forms). */
export function plural(t, key, count, params = {}) {
  return t(count === 1 ? `${key}_one` : key, { ...params, count });
}

/** What the note under the search box says about where the list comes from. */
export function sourceNote(page, t) {
  const where = page.persistent ? t("history.persistent") : t("history.memory");
  return page.alert ? `${where} ${t("history.alert", { reason: page.alert })}` : where;
}

/** transcript-20261207-140307-ab12cd34.srt: when it started, and part of its id. */
export function exportFilename(session, format) {
  const d = new Date((Number(session.started_at) || 0) * 1000);
  const p = (n) => String(n).padStart(2, "0");
  const when = `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
  const id = String(session.id || "").replace(/[^\w-]/g, "").slice(0, 8);
  return `transcript-${when}${id ? `-${id}` : ""}.${format}`;
}

/** A transcript's segment → "0:03.2 – 0:05.0". */
export function segmentTimes(segment) {
  return `${formatClock(Number(segment.start_s) || 0)} – ${formatClock(Number(segment.end_s) || 0)}`;
}

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class HistoryPanel {
  constructor(t) {
    this.t = t;
    this.list = $("history-list");
    this.note = $("history-note");
    this.status = $("history-status");
    this.query = $("history-q");
    this.detail = $("history-detail");
    this.detailTitle = $("history-detail-h");
    this.detailMeta = $("history-meta");
    this.segments = $("history-segments");
    this.confirm = $("history-confirm");
    this.confirmText = $("history-confirm-text");
    this.more = $("history-more");
    this.open = null; // the transcript shown: {session, segments, ...}
    this.shown = 0;
    this.searching = "";
    $("history-refresh").addEventListener("click", () => this.reload());
    $("history-search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.search(this.query.value.trim());
    });
    this.query.addEventListener("search", () => {
      if (!this.query.value.trim()) this.search(""); // the field's clear button
    });
    this.more.addEventListener("click", () => this.load(this.shown));
    $("history-close").addEventListener("click", () => this.closeDetail());
    for (const button of document.querySelectorAll("[data-history-format]")) {
      button.addEventListener("click", () => this.exportOpen(button.dataset.historyFormat));
    }
    $("history-delete").addEventListener("click", () => this.askDelete());
    this.confirm.addEventListener("close", () => {
      if (this.confirm.returnValue === "delete") this.deleteOpen();
      else $("history-delete").focus();
    });
  }

  say(text) {
    if (this.status.textContent !== text) this.status.textContent = text;
  }

  /** The list again (after a session ended, a file was transcribed, or Refresh). */
  reload() {
    return this.searching ? this.search(this.searching) : this.load(0);
  }

  async load(offset = 0) {
    const t = this.t;
    try {
      const page = await (await request(historyPaths.list(PAGE_SIZE, offset))).json();
      this.searching = "";
      this.note.textContent = sourceNote(page, t);
      const items = page.sessions.map((row) => this.item(rowView(row, t, t.locale), null));
      if (offset === 0) this.list.replaceChildren(...items);
      else this.list.append(...items);
      this.shown = offset + page.sessions.length;
      this.more.hidden = this.shown >= page.total;
      this.list.dataset.total = String(page.total);
      if (!page.total) this.list.replaceChildren(el("li", "empty", t("history.empty")));
      return true;
    } catch (err) {
      this.say(this.failure(err));
      return false;
    }
  }

  async search(query) {
    const t = this.t;
    if (!query) return this.load(0);
    try {
      const found = await (await request(historyPaths.search(query))).json();
      this.searching = query;
      this.more.hidden = true;
      const items = found.hits.map((hit) => {
        const view = rowView(hit.session, t, t.locale);
        return this.item({ ...view, meta: `${view.meta} · ${segmentTimes(hit)}` }, hit.snippet || hit.text);
      });
      this.list.replaceChildren(...items);
      if (!items.length) this.list.replaceChildren(el("li", "empty", t("history.no_hits", { query })));
      this.say(plural(t, "history.hits", found.hits.length, { query }));
      return true;
    } catch (err) {
      this.say(this.failure(err));
      return false;
    }
  }

  item(view, snippet) {
    const li = el("li");
    li.dataset.id = view.id;
    const button = el("button", "history-item");
    button.type = "button";
    button.append(el("span", "history-title", view.title));
    if (view.live) button.append(el("span", "badge loaded", this.t("history.live")));
    const text = el("span", "history-preview");
    if (snippet === null) text.textContent = view.preview;
    else {
      for (const part of snippetParts(snippet)) text.append(part.mark ? el("mark", "", part.text) : part.text);
    }
    button.append(text, el("span", "history-meta", view.meta));
    button.addEventListener("click", () => this.show(view.id));
    li.append(button);
    return li;
  }

  async show(id) {
    const t = this.t;
    try {
      const doc = await (await request(historyPaths.one(id))).json();
      this.open = doc;
      const view = rowView({ session: doc.session, duration_s: doc.duration_s ?? lastEnd(doc), segments: doc.segments.length, preview: "" }, t, t.locale);
      this.detailTitle.textContent = view.title;
      this.detailMeta.textContent = view.meta;
      this.segments.replaceChildren(
        ...doc.segments.map((s) => {
          const li = el("li");
          li.append(el("span", "history-time", segmentTimes(s)), el("span", "", s.text));
          return li;
        }),
      );
      this.detail.dataset.id = id;
      this.detail.hidden = false;
      this.detail.focus();
      return true;
    } catch (err) {
      this.say(this.failure(err));
      return false;
    }
  }

  closeDetail() {
    const id = this.detail.dataset.id;
    this.detail.hidden = true;
    this.open = null;
    const back = id && this.list.querySelector(`li[data-id="${CSS.escape(id)}"] button`);
    (back || this.query).focus();
  }

  async exportOpen(format) {
    const t = this.t;
    if (!this.open) return;
    const session = this.open.session;
    try {
      const blob = await (await request(historyPaths.one(session.id, format), { accept: "*/*" })).blob();
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = exportFilename(session, format);
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
      this.say(t("history.exported", { format: format.toUpperCase() }));
    } catch (err) {
      this.say(this.failure(err));
    }
  }

  askDelete() {
    if (!this.open) return;
    this.confirmText.textContent = this.t("history.confirm_text", { title: this.detailTitle.textContent });
    this.confirm.returnValue = "";
    this.confirm.showModal();
  }

  async deleteOpen() {
    const t = this.t;
    if (!this.open) return;
    const id = this.open.session.id;
    try {
      await request(`/history/${encodeURIComponent(id)}`, { method: "DELETE" });
      this.detail.hidden = true;
      this.open = null;
      await this.reload();
      this.say(t("history.deleted"));
      this.query.focus();
    } catch (err) {
      this.say(this.failure(err));
    }
  }

  failure(err) {
    const t = this.t;
    if (err instanceof HttpError && err.status === 501) return t("history.off");
    return t("history.error", { reason: err.message || String(err) });
  }
}

function lastEnd(doc) {
  return doc.segments.length ? doc.segments[doc.segments.length - 1].end_s : 0;
}
