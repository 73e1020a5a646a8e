import assert from "node:assert/strict";
import test from "node:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { web, WEB_DIR } from "./helpers.mjs";

const A = await import(web("js/alerts.js"));
const { createTranslator } = await import(web("js/i18n.js"));
const messages = (locale) => JSON.parse(readFileSync(path.join(WEB_DIR, "i18n", `${locale}.json`), "utf8"));
const EN = createTranslator(messages("en"), messages("en"), "en");

const MEM = { name: "memory_low", message: "free memory 90 MB is below 256 MB", since: 1000 };
const SLOW = { name: "engine_overloaded", message: "the engine cannot keep up", since: 1005 };

test("severity: overload and failed loads are critical, the rest warnings", () => {
  assert.equal(A.severityOf("engine_overloaded"), "critical");
  assert.equal(A.severityOf("model_load_failed"), "critical");
  assert.equal(A.severityOf("memory_low"), "warning");
  assert.equal(A.severityOf("history_unavailable"), "warning");
  assert.equal(A.severityOf("something_new"), "warning");
});

test("raised, then cleared when a reading no longer lists it; same reading twice changes nothing", () => {
  const book = new A.AlertBook();
  assert.equal(book.update([MEM], 1001), true);
  assert.equal(book.update([MEM], 1002), false);
  assert.equal(book.raisedCount(), 1);
  assert.equal(book.update([MEM, SLOW], 1006), true);
  assert.deepEqual(book.list().map((e) => [e.name, e.clearedAt]), [["engine_overloaded", null], ["memory_low", null]]);
  assert.equal(book.update([SLOW], 1010), true);
  const [first, second] = book.list();
  assert.equal(first.name, "engine_overloaded");
  assert.deepEqual([second.name, second.clearedAt], ["memory_low", 1010]);
  assert.equal(book.raisedCount(), 1);
});

test("raised again later is a new entry; the cleared one stays until dismissed", () => {
  const book = new A.AlertBook();
  book.update([MEM], 1001);
  book.update([], 1002);
  book.update([{ ...MEM, since: 2000 }], 2001);
  assert.deepEqual(book.list().map((e) => [e.since, e.clearedAt]), [[2000, null], [1000, 1002]]);
  book.dismissCleared();
  assert.deepEqual(book.list().map((e) => e.since), [2000]);
});

test("malformed readings are ignored; cleared entries are bounded", () => {
  const book = new A.AlertBook();
  assert.equal(book.update(undefined, 1), false);
  assert.equal(book.update([null, {}, { message: "no name" }], 1), false);
  for (let k = 0; k < 30; k++) {
    book.update([{ name: "disk_low", message: "x", since: k }], k + 0.5);
  }
  book.update([], 100);
  assert.ok(book.list().length <= 10, `${book.list().length}`);
});

test("an alert's line: badge, message, raised and cleared times", () => {
  const [badge, text, when] = A.alertLine(
    { name: "memory_low", message: "low", since: 0, severity: "warning", clearedAt: null },
    EN,
    "en",
  );
  assert.equal(badge, "Warning");
  assert.equal(text, "low");
  assert.match(when, /^raised \d\d:\d\d:\d\d$/);
  const cleared = A.alertLine({ name: "x", message: "", since: 0, severity: "critical", clearedAt: 60 }, EN, "en")[2];
  assert.match(cleared, /^raised \d\d:\d\d:\d\d, cleared \d\d:\d\d:\d\d$/);
  assert.equal(A.alertLine({ name: "x", message: "", since: 0, severity: "critical", clearedAt: null }, EN, "en")[1], "x");
});
