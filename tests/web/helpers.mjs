// Shared by the page's unit tests: where the page's files are.
import { fileURLToPath } from "node:url";
import path from "node:path";

export const WEB_DIR = fileURLToPath(new URL("../../src/audiototext/web/", import.meta.url));
export const JS_DIR = path.join(WEB_DIR, "js");
export const web = (rel) => new URL(`../../src/audiototext/web/${rel}`, import.meta.url).href;
