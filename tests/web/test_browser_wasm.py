"""ONNX Runtime Web in a real browser (headless Chromium, Playwright): the page is
cross-origin isolated, loads no runtime on its first load, and once Start is pressed its VAD
worker loads the runtime and the server's Silero model and flags the fake microphone's speech,
not its silence; the runtime runs with threads; after one visit the service worker opens the
page with the server stopped.

The engine is the test double: this is about the page, not about recognition.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from audiototext.server.http import offline
from audiototext.server.http.web import package_web_dir
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import http_server
from support.fixture_cache import ROOT
from support.speech import SpeechSynthesizer, espeak_available
from web.browser import NEEDS_CHROMIUM, chromium, microphone_wav, value_when_truthy
from web.ort_vendor import ort_version

pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
    pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng"),
]
ARTIFACTS = ROOT / ".cache" / "test-artifacts"
SENTENCE = "Please call Stella and ask her to bring these things."
LEAD_S = 0.5  # microphone_wav's silence before the sentence
GAP_S = 3.0
WRAP = "document.getElementById('wave').parentElement"
WASM = f"vendor/ort-{ort_version()}/ort-wasm-simd-threaded.wasm"

# Records each change of the local speech flag with the VAD's time for it.
LOG_SPEECH = f"""(() => {{
  const wrap = {WRAP};
  window.vadLog = [];
  new MutationObserver(() => {{
    if (wrap.dataset.localSpeechS !== undefined)
      window.vadLog.push([wrap.dataset.localSpeech, Number(wrap.dataset.localSpeechS)]);
  }}).observe(wrap, {{ attributes: true, attributeFilter: ["data-local-speech"] }});
}})()"""

# The runtime on the page's own thread with two threads: SharedArrayBuffer and workers work.
THREADED_RUN = """(async () => {
  const { loadOrt } = await import("/js/ort-runtime.js");
  const ort = await loadOrt({ threads: 2 });
  const model = await (await fetch("/vad/silero_vad.onnx")).arrayBuffer();
  const session = await ort.InferenceSession.create(new Uint8Array(model));
  const zeros = (n, dims) => new ort.Tensor("float32", new Float32Array(n), dims);
  const out = await session.run({
    input: zeros(4 * 576, [4, 576]), h: zeros(128, [1, 1, 128]), c: zeros(128, [1, 1, 128]),
  });
  return { threads: ort.env.wasm.numThreads, frames: out.speech_probs.data.length };
})()"""

CACHED_WASM = f"""(async () => {{
  for (const name of await caches.keys()) {{
    const hit = await (await caches.open(name)).match(new URL({WASM!r}, location.origin));
    if (hit) return name;
  }}
  return "";
}})()"""


async def _wait(page: Page, expression: str, timeout_s: float = 30.0) -> Any:
    """This file's waits: the runtime and model loads take longer than the page's own."""
    return await value_when_truthy(page, expression, timeout_s=timeout_s)


def test_page_vad_runtime_threads_and_offline(tmp_path: Path) -> None:
    synth = SpeechSynthesizer(tmp_path)
    speech_s = synth.speak(SENTENCE).duration_s
    wav = microphone_wav(synth, tmp_path / "mic.wav", [SENTENCE], gap_s=GAP_S)
    period = LEAD_S + speech_s + GAP_S  # Chromium loops the file
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with chromium(wav) as tab:
            page = tab.page
            async with http_server(FakeRecognizer()) as srv:
                assert srv.http is not None
                origin = f"http://127.0.0.1:{srv.http.port}"
                await page.goto(f"{origin}/?transport=websocket", wait_until="load")
                await _wait(page, "document.getElementById('health-text').innerText")
                out["isolated"] = await page.evaluate("crossOriginIsolated")
                out["first_load"] = await page.evaluate(
                    "performance.getEntries().filter(e => 'transferSize' in e)"
                    ".map(e => [e.name, e.transferSize])"
                )
                cdp = await tab.cdp()
                out["installability"] = await cdp.send("Page.getInstallabilityErrors")
                await page.evaluate(LOG_SPEECH)
                await page.click("#start")
                out["ready"] = await _wait(page, f"{WRAP}.dataset.localVadThreads")
                # Two loops of the file: wait for the end of the second one's speech.
                out["log"] = await _wait(
                    page,
                    "window.vadLog.some(e => e[0] === 'false' && e[1] > "
                    f"{period + LEAD_S + speech_s - 1.0}) && window.vadLog",
                    timeout_s=2 * period + 20,
                )
                out["cost_ms_per_s"] = await page.evaluate(f"{WRAP}.dataset.localVadCost")
                await tab.screenshot(
                    ARTIFACTS / "page-local-vad.png", width=1280, height=900, dark=False
                )
                await page.click("#start")  # Stop
                await _wait(page, "document.getElementById('start').dataset.recording === 'false'")
                out["threaded"] = await page.evaluate(THREADED_RUN)
                out["controlled"] = await _wait(
                    page,
                    "navigator.serviceWorker.ready"
                    ".then(() => !!navigator.serviceWorker.controller)",
                )
                out["cache"] = await _wait(page, CACHED_WASM)
                out["errors_online"] = list(tab.errors)
            # The server is gone: the page must come from the service worker.
            await page.reload(wait_until="load")
            out["offline_title"] = await page.title()
            out["offline_isolated"] = await page.evaluate("crossOriginIsolated")
            out["offline_start"] = await page.evaluate(
                "!!document.getElementById('start')"
                " && !!document.querySelector('script[src=\"js/main.js\"]')"
            )
            out["offline_wasm"] = await page.evaluate(
                f"fetch({WASM!r}).then(r => r.arrayBuffer()).then(b => b.byteLength)"
            )
            out["offline_version"] = await _wait(
                page, "document.getElementById('start').textContent.trim()"
            )
        return out

    out = run(main(), 300)
    print(json.dumps({k: v for k, v in out.items() if k != "first_load"}, indent=1))
    assert out["isolated"] is True
    first = out["first_load"]
    assert first and not [n for n, _ in first if "/vendor/" in n or "/vad/" in n], first
    first_bytes = sum(size for _, size in first)
    print(f"first load: {first_bytes} bytes over {len(first)} requests")
    assert first_bytes < 300 * 1024
    assert out["installability"]["installabilityErrors"] == [], out["installability"]

    assert out["ready"] == "1 isolated"
    log = [(flag == "true", t) for flag, t in out["log"]]
    assert [on for on, _ in log[:2]] == [True, False], log
    spans = [(b, e) for (on, b), (_, e) in zip(log[0::2], log[1::2], strict=False) if on]
    # Speech flagged where the file speaks and never in its silence. Times are the VAD's audio
    # clock, which starts with the capture's tap; Chromium's fake device starts the file when
    # the microphone opens, up to a second or so earlier on a loaded machine (a CI run saw the
    # first sentence flagged from 0). That shift is read from the second loop's first span.
    second = next(b for b, _ in spans if b > LEAD_S + speech_s + GAP_S / 2)
    shift = second - (period + LEAD_S)
    assert -1.5 < shift < 0.4, (shift, log)
    for loop in range(2):
        start = loop * period + LEAD_S + shift
        heard = start + speech_s - max(start, 0.0)  # what of the sentence the capture got
        speaking = sum(max(0.0, min(e, start + speech_s) - max(b, start)) for b, e in spans)
        assert speaking > 0.6 * heard, (loop, log)
        quiet = (start + speech_s + 0.5, start + period - 0.3)
        assert not [(b, e) for b, e in spans if b < quiet[1] and e > quiet[0]], (loop, log)
    assert float(out["cost_ms_per_s"]) > 0

    assert out["threaded"] == {"threads": 2, "frames": 4}
    assert out["controlled"] is True
    assert out["cache"].startswith("audiototext-page-")
    assert out["errors_online"] == []

    assert out["offline_title"] == "audiototext"
    assert out["offline_isolated"] is True
    assert out["offline_start"] is True
    assert out["offline_wasm"] > 10_000_000  # the decompressed runtime, from the cache
    assert out["offline_version"]  # the page's scripts ran


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CACHES = "caches.keys().then(k => k.filter(n => n.startsWith('audiototext-page-')).join(' '))"
CONTROLLED = "navigator.serviceWorker.ready.then(() => !!navigator.serviceWorker.controller)"


def test_an_upgrade_is_shown_at_once_and_replaces_the_offline_copy(tmp_path: Path) -> None:
    """The page of a new build is what a reload shows (no stale page from the worker's
    cache), the new build's cache replaces the old one, and offline it is the new page."""
    web = tmp_path / "web"
    source = package_web_dir()
    assert source is not None
    shutil.copytree(source, web)
    port = _free_port()
    cfg = config(http_port=port, web_dir=web)

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with chromium() as tab:
            page = tab.page
            async with http_server(FakeRecognizer(), cfg):
                await page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
                assert await _wait(page, CONTROLLED)
                out["old"] = await _wait(page, CACHES)
            index = web / "index.html"
            index.write_text(index.read_text().replace("<title>audiototext<", "<title>new<"))
            offline._offline_assets.cache_clear()  # a new build is a new server process
            async with http_server(FakeRecognizer(), cfg):
                await page.reload(wait_until="load")
                out["online_title"] = await page.title()
                out["new"] = await _wait(
                    page, f"{CACHES}.then(n => n && n !== {out['old']!r} && !n.includes(' ') && n)"
                )
                out["listed"] = await page.evaluate(
                    "fetch('/offline-assets.json').then(r => r.json()).then(d => d.version)"
                )
            await page.reload(wait_until="load")
            out["offline_title"] = await page.title()
        return out

    out = run(main(), 180)
    assert out["old"].startswith("audiototext-page-")
    assert out["online_title"] == "new"
    assert out["new"] == f"audiototext-page-{out['listed']}" != out["old"]
    assert out["offline_title"] == "new"


# Damages the kept decoder.onnx (truncated), then keeps the model again from the module.
DAMAGE_AND_KEEP = """async () => {
  const { keepModel, modelCacheName } = await import("/js/model-store.js");
  const listing = await (await fetch("/api/v1/models/tiny.en/browser")).json();
  const cache = await caches.open(modelCacheName(listing));
  const url = listing.files.find((f) => f.name === "decoder.onnx").url;
  const whole = await (await cache.match(url)).arrayBuffer();
  await cache.put(url, new Response(whole.slice(0, 1000)));
  const again = await keepModel(listing);
  const repaired = await (await cache.match(url)).arrayBuffer();
  return { ...again, repairedBytes: repaired.byteLength, wholeBytes: whole.byteLength };
}"""


def test_the_model_is_kept_in_the_browser_hash_checked(built_cache: Path) -> None:
    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with (
            http_server(FakeRecognizer(), cache_root=built_cache) as srv,
            chromium() as tab,
        ):
            assert srv.http is not None
            page = tab.page
            await page.goto(f"http://127.0.0.1:{srv.http.port}/", wait_until="load")
            await page.wait_for_selector("#model-keep:not([hidden])", timeout=30_000)
            out["button"] = await page.inner_text("#keep-model")
            await page.evaluate(
                """window.keepLog = []; new MutationObserver(() => window.keepLog.push(
                  document.getElementById('keep-progress').value)).observe(
                  document.getElementById('keep-status'), {childList: true, characterData: true,
                  subtree: true})"""
            )
            await page.click("#keep-model")
            out["kept"] = await _wait(
                page, "document.getElementById('model-keep').dataset.kept", timeout_s=120
            )
            out["status"] = await page.inner_text("#keep-status")
            await tab.screenshot(
                ARTIFACTS / "page-model-kept.png", width=1280, height=900, dark=False
            )
            out["progress"] = await page.evaluate("window.keepLog")
            out["caches"] = await page.evaluate("caches.keys()")
            out["again"] = await page.evaluate(DAMAGE_AND_KEEP)
            out["errors"] = list(tab.errors)
        return out

    out = run(main(), 240)
    assert out["button"].startswith("Keep tiny.en in this browser (") and "MB" in out["button"]
    assert f"audiototext-model-tiny.en@{out['kept']}" in out["caches"]
    assert out["status"].startswith("tiny.en is kept in this browser")
    progress = out["progress"]
    assert len(set(progress)) > 3 and progress == sorted(progress), progress
    again = out["again"]
    assert again["fetched"] == ["decoder.onnx"], again
    assert len(again["kept"]) == 5
    assert again["repairedBytes"] == again["wholeBytes"] > 1000
    assert out["errors"] == []
