// Pure logic of the model selector: the list the server sends grouped by model, the
// languages and tasks a model allows, the stream config fields of a choice, and a parser
// for the Server-Sent Events of a model download (POST /api/v1/models/NAME/pull).

/**
 * The /api/v1/models document as one entry per model name: {name, cached, usable,
 * precisions, sizeMb, downloadMb, ramMb, languages, multilingual, current, loaded,
 * description}. `usable`: a session can run it now (downloaded, or the model the server
 * runs, or loaded). Usable models first (the server's own leading), then those to download,
 * each group in the server's order.
 */
export function groupModels(doc) {
  const rows = doc && Array.isArray(doc.models) ? doc.models : [];
  const byName = new Map();
  for (const row of rows) {
    const name = String(row.name || "");
    if (!name) continue;
    let m = byName.get(name);
    if (!m) {
      m = {
        name,
        cached: false,
        precisions: [],
        sizeMb: 0,
        downloadMb: Number(row.download_mb) || 0,
        ramMb: Number(row.ram_mb) || 0,
        languages: [],
        multilingual: Boolean(row.multilingual),
        current: false,
        loaded: false,
        description: String(row.description || ""),
      };
      byName.set(name, m);
    }
    if (row.cached) {
      if (!m.cached) m.sizeMb = 0;
      m.cached = true;
      if (row.precision && !m.precisions.includes(row.precision)) m.precisions.push(row.precision);
      m.sizeMb = Math.max(m.sizeMb, Number(row.size_mb) || 0);
    } else if (!m.cached) {
      m.sizeMb = Number(row.size_mb) || m.downloadMb;
    }
    const langs = Array.isArray(row.languages) ? row.languages : [];
    if (langs.length > m.languages.length) m.languages = [...langs];
    m.current = m.current || Boolean(row.current) || name === doc.current;
    m.loaded = m.loaded || Boolean(row.loaded);
  }
  const all = [...byName.values()];
  for (const m of all) m.usable = m.cached || m.current || m.loaded;
  const usable = all.filter((m) => m.usable).sort((a, b) => Number(b.current) - Number(a.current));
  return [...usable, ...all.filter((m) => !m.usable)];
}

/** Language codes a model may be asked for: "auto" first, then its own ("en" only for
 * English-only models; none but "auto" for a multilingual model not downloaded yet). */
export function languageChoices(model) {
  if (!model) return ["auto"];
  if (!model.multilingual) return ["auto", "en"];
  const codes = [...new Set((model.languages || []).map(String))].sort();
  return ["auto", ...codes];
}

/** Tasks a model can do: translation (to English) needs a multilingual model. */
export function taskChoices(model) {
  return model && model.multilingual ? ["transcribe", "translate"] : ["transcribe"];
}

/** A choice kept valid for the model: an unknown language becomes "auto", an impossible
 * task "transcribe". */
export function normaliseChoice(model, language, task) {
  const languages = languageChoices(model);
  const tasks = taskChoices(model);
  return {
    language: languages.includes(language) ? language : "auto",
    task: tasks.includes(task) ? task : "transcribe",
  };
}

/** The StreamConfig fields (protobuf JSON mapping) of a choice. */
export function streamConfigFields({ model, language, task } = {}) {
  const fields = {};
  if (model) fields.model = model;
  if (language && language !== "auto") fields.language = language;
  fields.task = task === "translate" ? "TRANSLATE" : "TRANSCRIBE";
  return fields;
}

/**
 * Incremental parser of a text/event-stream: feed() it decoded text as it arrives, get the
 * complete events ({event, data}) back; data is parsed as JSON when it is JSON.
 */
export class SseParser {
  constructor() {
    this.buffer = "";
  }

  feed(text) {
    this.buffer += text.replace(/\r\n?/g, "\n");
    const events = [];
    let end;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const event = parseBlock(block);
      if (event) events.push(event);
    }
    return events;
  }
}

function parseBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  try {
    return { event, data: JSON.parse(text) };
  } catch {
    return { event, data: text };
  }
}

/**
 * What the progress bar shows for one pull event: {stage ("download", "convert", "done"),
 * percent of the current task (null: unknown), description, done, error (a message),
 * cancelled (the error is the server's answer to a cancel)}.
 * Notes leave the previous state as it was.
 */
export function pullProgress(event, previous = { stage: "download", percent: null, description: "" }) {
  const { event: kind, data } = event;
  if (kind === "done") {
    return { stage: "done", percent: 100, description: "", done: true, error: null };
  }
  if (kind === "error") {
    const message = (data && data.error && data.error.message) || String(data);
    const code = (data && data.error && data.error.code) || "";
    return { ...previous, done: true, error: message, cancelled: code === "ABORTED" };
  }
  if (kind !== "progress" || !data) return { ...previous, done: false, error: null };
  return {
    stage: data.stage === "convert" ? "convert" : "download",
    percent: typeof data.percent === "number" ? data.percent : null,
    description: String(data.description || data.task || ""),
    done: false,
    error: null,
  };
}
