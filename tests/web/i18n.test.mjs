import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import test from "node:test";
import { JS_DIR, WEB_DIR, web } from "./helpers.mjs";

const { pickLocale, createTranslator, interpolate, LOCALES } = await import(web("js/i18n.js"));

const load = (locale) => JSON.parse(readFileSync(path.join(WEB_DIR, "i18n", `${locale}.json`), "utf8"));
const en = load("en");
const pt = load("pt-BR");
const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test("one file per locale, and each listed in LOCALES", () => {
  const files = readdirSync(path.join(WEB_DIR, "i18n")).filter((f) => f.endsWith(".json"));
  assert.deepEqual(files.map((f) => f.replace(/\.json$/, "")).sort(), [...LOCALES].sort());
});

test("pt-BR has every key of en and no other; same placeholders; no empty strings", () => {
  assert.deepEqual(Object.keys(pt).sort(), Object.keys(en).sort());
  for (const key of Object.keys(en)) {
    assert.equal(typeof en[key], "string", key);
    assert.ok(en[key].trim() && pt[key].trim(), `${key} is empty`);
    assert.deepEqual(placeholders(pt[key]), placeholders(en[key]), `placeholders of ${key}`);
  }
});

test("every key the page uses exists (HTML data-i18n*, t('...') in the modules)", () => {
  const html = readFileSync(path.join(WEB_DIR, "index.html"), "utf8");
  const used = new Set([...html.matchAll(/data-i18n[\w-]*="([^"]+)"/g)].map((m) => m[1]));
  for (const file of readdirSync(JS_DIR).filter((f) => f.endsWith(".js"))) {
    const src = readFileSync(path.join(JS_DIR, file), "utf8");
    for (const m of src.matchAll(/\bt\("([\w.]+)"/g)) used.add(m[1]);
    for (const m of src.matchAll(/"((?:mic|stream|capture|transport|health|models|live|diag|common|history|alerts)\.[\w]+)"/g)) {
      used.add(m[1]);
    }
  }
  assert.ok(used.size > 40);
  const missing = [...used].filter((k) => !(k in en));
  assert.deepEqual(missing, []);
});

test("the HTML's built-in text is the English text", () => {
  const html = readFileSync(path.join(WEB_DIR, "index.html"), "utf8");
  for (const m of html.matchAll(/data-i18n="([^"]+)"[^>]*>([^<]*)</g)) {
    const text = m[2].replace(/\s+/g, " ").trim();
    if (text) assert.equal(text, en[m[1]], m[1]);
  }
});

test("locale choice from navigator.languages", () => {
  assert.equal(pickLocale(["pt-BR", "en"]), "pt-BR");
  assert.equal(pickLocale(["pt-br"]), "pt-BR");
  assert.equal(pickLocale(["pt"]), "pt-BR");
  assert.equal(pickLocale(["pt-PT"]), "pt-BR");
  assert.equal(pickLocale(["de-DE", "pt"]), "pt-BR");
  assert.equal(pickLocale(["en-GB", "pt-BR"]), "en");
  assert.equal(pickLocale(["fr", "de"]), "en");
  assert.equal(pickLocale([]), "en");
  assert.equal(pickLocale(undefined), "en");
});

test("lookup falls back to English, then to the key; placeholders filled", () => {
  const t = createTranslator({ a: "um {n}" }, { a: "one {n}", b: "two" }, "pt-BR");
  assert.equal(t("a", { n: 1 }), "um 1");
  assert.equal(t("b"), "two");
  assert.equal(t("c"), "c");
  assert.ok(t.has("b"));
  assert.ok(!t.has("c"));
  assert.equal(t.locale, "pt-BR");
  assert.equal(interpolate("{x} and {y}", { x: "X" }), "X and {y}");
  const real = createTranslator(pt, en, "pt-BR");
  assert.equal(real("health.serving", { model: "tiny.en" }), "Servidor pronto (tiny.en)");
});
