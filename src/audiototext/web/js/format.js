// Display helpers for the status, model and diagnostics panels. Pure functions.

/**
 * Flattens a JSON object into [key path, value] rows: nested objects give dotted paths,
 * arrays of plain values one comma-separated value, arrays of objects indexed paths.
 */
export function flatten(value, prefix = "", rows = []) {
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== "object")) {
      rows.push([prefix, value.join(", ")]);
    } else {
      value.forEach((v, k) => flatten(v, prefix ? `${prefix}.${k}` : String(k), rows));
    }
  } else if (value && typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length && prefix) rows.push([prefix, ""]);
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, rows);
  } else if (prefix) {
    rows.push([prefix, value]);
  }
  return rows;
}

/** "cpu_model" / "gpus.0.memoryMb" -> "Cpu model" / "Gpus 0 memory mb". */
export function humanizeKey(path) {
  const words = path
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/[._-]+/g, " ")
    .trim()
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The i18n key naming a diagnostics field ("sys." + its last path part), e.g. sys.cpu_model. */
export function labelKey(path) {
  const parts = path.split(".");
  const last = parts.filter((p) => !/^\d+$/.test(p)).pop() || path;
  return "sys." + last.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

export function label(path, t) {
  const key = labelKey(path);
  if (!t || !t.has(key)) return humanizeKey(path);
  const index = path.match(/\.(\d+)\./);
  return index ? `${t(key)} ${Number(index[1]) + 1}` : t(key);
}

function number(value, maxDigits = 2, locale) {
  return Number(value).toLocaleString(locale, { maximumFractionDigits: maxDigits });
}

/** Bytes -> "512 KB", "1.5 GB" (binary multiples, written as KB/MB/GB as most people do). */
export function formatBytes(bytes, locale) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(bytes);
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${number(v, u === 0 ? 0 : 1, locale)} ${units[u]}`;
}

export function formatMb(mb, locale) {
  return formatBytes(Number(mb) * 1024 * 1024, locale);
}

/** A value as a person reads it, by what its key says (…_bytes, …_mb, …_ms, …_s, rtf …). */
export function formatValue(path, value, t, locale) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return t ? t(value ? "common.yes" : "common.no") : String(value);
  const key = path.split(".").pop().replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
  const n = typeof value === "number" ? value : /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (Number.isNaN(n)) return String(value);
  if (/(^|_)bytes$/.test(key) || key.endsWith("_b")) return formatBytes(n, locale);
  if (/(^|_)mb$/.test(key)) return formatMb(n, locale);
  if (/(^|_)(mhz)$/.test(key)) return `${number(n, 0, locale)} MHz`;
  if (/(^|_)ms(_p\d+)?$/.test(key)) return `${number(n, 0, locale)} ms`;
  if (/(^|_)s$/.test(key)) return formatDuration(n, locale);
  if (/(^|_)(percent|pct)$/.test(key)) return `${number(n, 1, locale)} %`;
  if (/(^|_)rtf$/.test(key)) return number(n, 3, locale);
  return number(n, 2, locale);
}

/** Seconds -> "42 s", "3 min 20 s", "2 h 05 min". */
export function formatDuration(seconds, locale) {
  const s = Number(seconds);
  if (s < 60) return `${number(s, s < 10 ? 1 : 0, locale)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** Stream seconds -> "1:02.3" (hover titles in the transcript). */
export function formatClock(seconds) {
  const tenths = Math.round(Math.max(0, seconds) * 10);
  const m = Math.floor(tenths / 600);
  const s = ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

/** A model's languages: a short list in full, a long one as a count. */
export function formatLanguages(languages, t) {
  const list = Array.isArray(languages)
    ? languages
    : typeof languages === "string" && languages
      ? languages.split(/[,\s]+/).filter(Boolean)
      : [];
  if (!list.length) return "—";
  if (list.length <= 6) return list.join(", ");
  return t ? t("models.languages_count", { count: list.length }) : `${list.length}`;
}
