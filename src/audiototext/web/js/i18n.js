// Strings: one JSON file per locale under ../i18n/, chosen from the browser's languages,
// with English behind every lookup. The pure part (pickLocale, createTranslator) is tested
// in Node; loadMessages and translateDocument need a browser.

export const LOCALES = ["en", "pt-BR"];
export const DEFAULT_LOCALE = "en";

/**
 * The best available locale for a list of language tags in preference order
 * (navigator.languages): an exact match first, then a locale of the same language
 * ("pt" or "pt-PT" -> "pt-BR"), else English.
 */
export function pickLocale(languages, available = LOCALES, fallback = DEFAULT_LOCALE) {
  const lower = new Map(available.map((l) => [l.toLowerCase(), l]));
  for (const tag of languages || []) {
    if (typeof tag !== "string" || !tag) continue;
    const exact = lower.get(tag.toLowerCase());
    if (exact) return exact;
    const base = tag.toLowerCase().split("-")[0];
    const same = available.find((l) => l.toLowerCase().split("-")[0] === base);
    if (same) return same;
  }
  return fallback;
}

/** Replaces {name} placeholders by params.name (left as they are when missing). */
export function interpolate(template, params) {
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole,
  );
}

/**
 * t(key, params): the locale's string, else English's, else the key itself.
 * t.has(key) tells whether either has it; t.locale is the locale.
 */
export function createTranslator(messages, fallbackMessages = {}, locale = DEFAULT_LOCALE) {
  const t = (key, params) => {
    const own = messages[key];
    const text = typeof own === "string" ? own : fallbackMessages[key];
    return typeof text === "string" ? interpolate(text, params) : key;
  };
  t.has = (key) => typeof messages[key] === "string" || typeof fallbackMessages[key] === "string";
  t.locale = locale;
  return t;
}

/** Fetches the locale's strings and English's (for the fallback); English alone on failure. */
export async function loadMessages(locale, base = new URL("../i18n/", import.meta.url)) {
  const get = async (name) => {
    const response = await fetch(new URL(`${name}.json`, base));
    if (!response.ok) throw new Error(`${name}.json: HTTP ${response.status}`);
    return response.json();
  };
  const english = await get(DEFAULT_LOCALE);
  if (locale === DEFAULT_LOCALE) return { locale, messages: english, fallback: english };
  try {
    return { locale, messages: await get(locale), fallback: english };
  } catch {
    return { locale: DEFAULT_LOCALE, messages: english, fallback: english };
  }
}

/**
 * Fills the page's static strings: data-i18n (text), data-i18n-title, data-i18n-aria-label,
 * data-i18n-placeholder; sets <html lang>.
 */
export function translateDocument(doc, t) {
  doc.documentElement.lang = t.locale;
  for (const el of doc.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const [attr, prop] of ATTRIBUTES) {
    const data = "data-i18n-" + attr;
    for (const el of doc.querySelectorAll(`[${data}]`)) el.setAttribute(attr, t(el.dataset[prop]));
  }
}

const ATTRIBUTES = [
  ["title", "i18nTitle"],
  ["aria-label", "i18nAriaLabel"],
  ["placeholder", "i18nPlaceholder"],
];
