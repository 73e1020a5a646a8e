// Pure logic of the processing mode selector (Auto / CPU / GPU) and of the live resource
// indicators, both fed by GET /api/v1/system.

export const DEVICES = ["auto", "cpu", "gpu"];

/**
 * The selector's options from /api/v1/system's `devices` ([{name, available, reason}]):
 * [{value, available, reason}] for auto, cpu and gpu. Auto is always available (the
 * server's choice); a device the server does not list is unavailable with an empty reason
 * (an older server, or the document not loaded yet: only GPU is held back then).
 */
export function deviceOptions(devices) {
  const listed = new Map();
  for (const d of Array.isArray(devices) ? devices : []) {
    if (d && typeof d.name === "string") listed.set(d.name.toLowerCase(), d);
  }
  return DEVICES.map((value) => {
    if (value === "auto") return { value, available: true, reason: "" };
    const d = listed.get(value);
    if (!d) return { value, available: value === "cpu", reason: "" };
    return { value, available: Boolean(d.available), reason: d.available ? "" : String(d.reason || "") };
  });
}

/** A saved device kept valid: unknown or unavailable becomes "auto". */
export function normaliseDevice(device, options) {
  const value = String(device || "auto").toLowerCase();
  const option = (options || []).find((o) => o.value === value);
  return option && option.available ? value : "auto";
}

/** The StreamConfig field of a device choice: nothing for auto (the server decides). */
export function deviceConfigField(device) {
  return device === "cpu" || device === "gpu" ? { device } : {};
}

/** The devices as one line for the system list: "CPU, GPU (unavailable)". */
export function deviceSummary(options, t) {
  return (options || [])
    .filter((o) => o.value !== "auto")
    .map((o) => {
      const name = t(`models.device_${o.value}`);
      return o.available ? name : t("models.device_unavailable", { name });
    })
    .join(", ");
}

function number(value, locale, digits) {
  return Number(value).toLocaleString(locale, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function megabytes(mb, locale) {
  const v = Number(mb);
  if (v >= 1024) return `${number(v / 1024, locale, 1)} GB`;
  return `${number(v, locale, 0)} MB`;
}

/**
 * The live indicator rows of /api/v1/system's `stats`: [key, label, value] with numbers
 * formatted for `locale`. GPU rows only when the server reports GPUs; figures the server
 * does not send (an older server) are left out rather than shown as zero.
 */
export function resourceRows(stats, t, locale) {
  const s = stats || {};
  const has = (k) => typeof s[k] === "number" && Number.isFinite(s[k]);
  const pct = (v) => `${number(v, locale, 1)} %`;
  const rows = [];
  if (has("process_cpu_percent")) rows.push(["cpu_process", t("res.cpu_process"), pct(s.process_cpu_percent)]);
  if (has("machine_cpu_percent")) rows.push(["cpu_machine", t("res.cpu_machine"), pct(s.machine_cpu_percent)]);
  if (has("process_rss_mb")) rows.push(["ram_process", t("res.ram_process"), megabytes(s.process_rss_mb, locale)]);
  if (has("memory_available_mb")) {
    const value = has("memory_total_mb") && s.memory_total_mb > 0
      ? t("res.of_total", { value: megabytes(s.memory_available_mb, locale), total: megabytes(s.memory_total_mb, locale) })
      : megabytes(s.memory_available_mb, locale);
    rows.push(["ram_available", t("res.ram_available"), value]);
  }
  const gpus = Array.isArray(s.gpus) ? s.gpus : [];
  gpus.forEach((g, k) => {
    const n = gpus.length > 1 ? ` ${k + 1}` : "";
    rows.push([`gpu${k}_util`, `${t("res.gpu_util")}${n}`, pct(Number(g.utilization_percent) || 0)]);
    rows.push([
      `gpu${k}_mem`,
      `${t("res.gpu_memory")}${n}`,
      t("res.of_total", {
        value: megabytes(Number(g.memory_used_mb) || 0, locale),
        total: megabytes(Number(g.memory_total_mb) || 0, locale),
      }),
    ]);
  });
  if (has("rtf")) rows.push(["rtf", t("res.rtf"), number(s.rtf, locale, 2)]);
  if (has("queue_depth")) rows.push(["queue", t("res.queue"), number(s.queue_depth, locale, 0)]);
  const ms = (v) => `${number(v, locale, 0)} ms`;
  if (has("final_latency_ms_p50")) rows.push(["latency_p50", t("res.latency_p50"), ms(s.final_latency_ms_p50)]);
  if (has("final_latency_ms_p95")) rows.push(["latency", t("res.latency"), ms(s.final_latency_ms_p95)]);
  if (has("active_streams")) rows.push(["streams", t("res.streams"), number(s.active_streams, locale, 0)]);
  return rows;
}

/** Keys of /api/v1/system's `stats` that the live indicators show: the system list skips
 * them, so each figure is on the page once (the stream's Metrics events carry the same
 * engine figures, so the stream's own list does not repeat them either). */
export const LIVE_STATS_KEYS = new Set([
  "process_cpu_percent",
  "machine_cpu_percent",
  "process_rss_mb",
  "memory_available_mb",
  "memory_total_mb",
  "gpus",
  "rtf",
  "queue_depth",
  "final_latency_ms_p50",
  "final_latency_ms_p95",
  "active_streams",
]);

/**
 * One line per loaded model for the system list: precision, device, state, sessions and
 * memory. Its engine figures only when several models are loaded (with one, they are the
 * server's, which the live indicators show).
 */
export function loadedModelRows(models, t, locale) {
  const list = Array.isArray(models) ? models : [];
  return list.map((m, k) => {
    const parts = [m.precision, m.device, m.state].filter(Boolean);
    parts.push(t("sys.model_sessions", { n: number(Number(m.sessions) || 0, locale, 0) }));
    if (Number(m.ram_mb) > 0) parts.push(megabytes(Number(m.ram_mb), locale));
    if (list.length > 1) {
      parts.push(`${t("res.rtf")} ${number(Number(m.rtf) || 0, locale, 2)}`);
      parts.push(`${t("res.queue")} ${number(Number(m.queue_depth) || 0, locale, 0)}`);
    }
    return [`models.${k}`, t("sys.loaded_model", { name: m.name }), parts.join(" · ")];
  });
}

/** What the Diagnostics "This stream" list says about the stream: none started yet, one
 * running, or the last one ended (its figures are then the last it had, not live). */
export const STREAM_STATES = ["idle", "live", "ended"];

/**
 * Rows [key, label, value] of the "This stream" list: its state first, then the server's lag
 * and, over WebRTC, audio lost and skipped. `fmtMs(x)` formats milliseconds. Before any
 * stream the figures are dashes; after one ended they are its last values, and the state
 * row says so.
 */
export function streamRows({ state = "idle", ack = null, rtc = null } = {}, t, fmtMs) {
  const known = STREAM_STATES.includes(state) ? state : "idle";
  const rows = [
    ["state", t("live.state"), t(`live.state_${known}`)],
    ["lag", t("live.lag"), ack && known !== "idle" ? fmtMs(ack.lag_ms) : "—"],
  ];
  if (rtc && known !== "idle") {
    rows.push(["rtc_lost", t("live.rtc_lost"), fmtMs(Number(rtc.lost_ms) || 0)]);
    rows.push(["rtc_dropped", t("live.rtc_dropped"), fmtMs(Number(rtc.dropped_ms) || 0)]);
  }
  return rows;
}
