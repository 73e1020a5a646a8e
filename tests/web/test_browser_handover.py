"""Hand-over between the server and transcription in the page (headless Chromium, Playwright,
a fake microphone playing espeak-ng speech):

- a real ``audiototext serve`` process (tiny.en int8, history file, Redis session store) is
  killed with SIGKILL after the first sentence's final; the page switches to its local worker
  on the kept model and shows the second sentence marked local; a new server on the same
  ports and files comes up; the page hands back, uploads its segments, and the page and the
  session's history hold every word of both sentences, none twice; over the WebSocket and
  over WebRTC (in a network namespace, as ICE needs an address other than 127.0.0.1), whose
  stream time starts when the track connects, not at the first captured chunk;
- after one visit with the model kept, the page opened with the server stopped (from the
  service worker) transcribes locally;
- a browser without WebAssembly SIMD or without the Cache API is told so and keeps the
  server-only page.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from audiototext.evaluation import wer
from audiototext.models.cache import ModelCache
from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from support.fixture_cache import ROOT
from support.netns import namespace, run_inside
from support.services import Server, running_redis
from support.speech import SpeechSynthesizer, espeak_available
from web.browser import NEEDS_CHROMIUM, chromium, microphone_wav, value_when_truthy

pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
    pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng"),
]
ARTIFACTS = ROOT / ".cache" / "test-artifacts"
FIRST = "Please call Stella and ask her to bring these things."
SECOND = "We will meet at the train station tomorrow morning."

# The transcript's finals as [origin, text], the "local" badge left out.
FINALS = """[...document.querySelectorAll('#finals p')].map((p) => [p.dataset.origin || 'server',
  [...p.childNodes].filter((n) => !(n.classList && n.classList.contains('origin')))
    .map((n) => n.textContent).join('').trim()])"""
NOTE = "document.getElementById('transcript-note').innerText"
# A WebRTC connection that takes 2 s to come up (as on a loaded machine or a far network):
# the server's stream time then starts 2 s into the capture, which the page must account for.
SLOW_RTC = """(() => {
  const set = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (...args) {
    return new Promise((r) => setTimeout(r, 2000)).then(() => set.apply(this, args));
  };
})();"""

# What the page sends and gets on its data channels: the prefix's bytes (in all, and per
# channel), the server's WebRTC statistics (how long the track's audio waited for the prefix).
WATCH_CHANNEL = """(() => {
  window.__prefix = { bytes: 0, messages: 0, stats: null, channels: [] };
  const make = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = make.apply(this, args);
    const send = channel.send;
    const mine = window.__prefix.channels.push(0) - 1;
    channel.send = function (data) {
      if (typeof data !== "string") {
        window.__prefix.bytes += data.byteLength;
        window.__prefix.messages += 1;
        window.__prefix.channels[mine] += data.byteLength;
      }
      return send.call(this, data);
    };
    channel.addEventListener("message", (e) => {
      if (typeof e.data === "string" && e.data.startsWith('{"webrtc"')) {
        window.__prefix.stats = JSON.parse(e.data).webrtc;
      }
    });
    return channel;
  };
})();"""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _each_once(expected: str, got: str) -> list[str]:
    """Words of ``expected`` of 4+ letters, but names (tiny's spelling of short words and of
    "Stella" varies), that ``got`` does not hold exactly once."""
    counts = collections.Counter(_words(got))
    return [w for w in _words(expected) if len(w) >= 4 and w != "stella" and counts[w] != 1]


# What a browser logs while the server is down: the page's own requests failing (refused, or
# reset when one was in flight at the kill).
UNREACHABLE = re.compile(
    r"ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|WebSocket connection to .* failed"
)


async def _keep_model(page: Page) -> str:
    await page.wait_for_selector("#model-keep:not([hidden])", timeout=60_000)
    await page.click("#keep-model")
    kept = await value_when_truthy(
        page, "document.getElementById('model-keep').dataset.kept", timeout_s=180
    )
    assert kept, await page.inner_text("#keep-status")
    return str(kept)


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


async def _hand_over_and_back(
    wav: Path, first: Server, second: Server, transport: str, shot: str
) -> dict[str, Any]:
    """Server final, kill, local text, a new server, hand-back: what the page showed."""
    out: dict[str, Any] = {}
    query = "?transport=websocket" if transport == "websocket" else ""
    scripts = [SLOW_RTC, WATCH_CHANNEL] if transport == "webrtc" else []
    async with chromium(wav, init_scripts=scripts) as tab:
        page = tab.page
        await page.goto(f"http://127.0.0.1:{first.http_port}/{query}", wait_until="load")
        await _keep_model(page)
        await page.click("#start")
        out["server_final"] = await value_when_truthy(
            page, f"{FINALS}.some(f => /stella/i.test(f[1])) && {FINALS}", 90
        )
        out["transport"] = await page.inner_text("#transport-text")
        out["stream_origin_s"] = await page.evaluate("document.body.dataset.streamOriginS")
        first.kill9()
        killed = time.monotonic()
        out["local"] = await value_when_truthy(
            page,
            f"{FINALS}.some(f => f[0] === 'local' && /station|morning/i.test(f[1])) && {FINALS}",
            120,
        )
        assert out["local"], (await page.evaluate(FINALS), await page.evaluate(NOTE))
        out["loss_to_local_text_s"] = time.monotonic() - killed
        out["page_loss_to_local_ms"] = await page.evaluate("document.body.dataset.localAfterMs")
        out["mode"] = await page.evaluate("document.body.dataset.mode")
        out["note_local"] = await page.evaluate(NOTE)
        out["aria"] = await page.evaluate("document.querySelector('#finals p.local').innerText")
        await tab.screenshot(ARTIFACTS / f"{shot}-local.png", width=1280, height=900, dark=False)
        await tab.screenshot(
            ARTIFACTS / f"{shot}-local-phone.png", width=390, height=844, dark=True
        )
        await asyncio.to_thread(second.start)
        out["restart_s"] = time.monotonic() - killed
        out["note_saved"] = await value_when_truthy(
            page, f"/added to the session/.test({NOTE}) && {NOTE}", 120
        )
        out["mode_after"] = await page.evaluate("document.body.dataset.mode")
        out["transport_after"] = await page.inner_text("#transport-text")
        await value_when_truthy(
            page, "/Connected/.test(document.getElementById('transport-text').innerText)", 60
        )
        out["stream_origin_after_s"] = await page.evaluate("document.body.dataset.streamOriginS")
        out["prefix"] = await page.evaluate("window.__prefix || null")
        out["saved_s"] = time.monotonic() - killed
        await page.click("#start")  # Stop
        await value_when_truthy(
            page, "document.getElementById('start').dataset.recording === 'false'", 60
        )
        out["finals"] = await page.evaluate(FINALS)
        out["errors"] = list(tab.errors)
    return out


@pytest.mark.parametrize(
    "transport",
    [
        "websocket",
        # Real-time audio over aiortc, and the namespace WebRTC's ICE needs (support.netns).
        pytest.param("webrtc", marks=pytest.mark.realtime),
    ],
)
def test_server_killed_mid_stream_local_takes_over_and_hands_back(
    filled_cache: ModelCache, tmp_path: Path, transport: str
) -> None:
    synth = SpeechSynthesizer(tmp_path)
    # Long gaps: the kill falls in the first, the hand-back in the tail (Chromium loops).
    # Over WebRTC the speech starts before the (slow, SLOW_RTC) connection is up: its start
    # reaches the server as the stream's prefix (rtc_prefix.py).
    wav = microphone_wav(
        synth, tmp_path / "mic.wav", [FIRST, SECOND], gap_s=6.0, tail_s=100.0, lead_s=0.5
    )
    history = tmp_path / "history.sqlite3"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = "page-handover" if transport == "websocket" else "page-handover-webrtc"

    async def main() -> tuple[dict[str, Any], list[Any]]:
        # Every process starts from this thread: inside the namespace when there is one.
        with running_redis() as redis:
            first = Server(redis.url, 0, 0, "--history", str(history)).start()
            second = Server(redis.url, first.port, first.http_port, "--history", str(history))
            try:
                out = await _hand_over_and_back(wav, first, second, transport, shot)
                listing = await asyncio.to_thread(_get, second.http_port, "/api/v1/history")
                docs = [
                    await asyncio.to_thread(
                        _get,
                        second.http_port,
                        f"/api/v1/history/{row['session']['id']}?format=json",
                    )
                    for row in listing["sessions"]
                ]
            finally:
                first.stop()
                second.stop()
        return out, docs

    if transport == "webrtc":
        with namespace() as name:
            out, docs = run_inside(name, main, 900)
    else:
        out, docs = run(main(), 900)
    print(json.dumps(out, indent=1))
    assert out["mode"] == "local" and out["mode_after"] == "server"
    name = "WebRTC" if transport == "webrtc" else "WebSocket"
    assert out["transport"].startswith(name), out["transport"]
    assert "transcribing in this browser" in out["note_local"]
    assert out["aria"].lower().startswith("local"), out["aria"]  # read out with the text
    server_text = " ".join(t for o, t in out["finals"] if o == "server")
    local_text = " ".join(t for o, t in out["finals"] if o == "local")
    assert wer(FIRST, server_text) <= 0.25, out["finals"]
    assert wer(SECOND, local_text) <= 0.25, out["finals"]
    page_text = f"{server_text} {local_text}"
    assert _each_once(f"{FIRST} {SECOND}", page_text) == [], out["finals"]
    # Whisper's word for silence: the local worker must be given only the VAD's speech.
    assert "you" not in _words(page_text), out["finals"]
    if transport == "webrtc":
        # The hand-back's new stream starts at its first chunk, not at its connection: the
        # 2 s of connecting (SLOW_RTC) went to the server as its prefix.
        assert float(out["stream_origin_after_s"]) > float(out["stream_origin_s"]) + 10, out
        assert out["prefix"]["channels"][-1] >= 2 * 32_000, out["prefix"]

    (doc,) = [d for d in docs if any(s["origin"] == "local" for s in d["segments"])]
    origins = [s["origin"] for s in doc["segments"]]
    assert origins == sorted(origins, key=lambda o: o == "local"), origins  # server, then local
    kept = " ".join(s["text"] for s in doc["segments"])
    assert _each_once(f"{FIRST} {SECOND}", kept) == [], doc["segments"]
    assert " ".join(s["text"] for s in doc["segments"] if s["origin"] == "local") == local_text
    assert [e for e in out["errors"] if not UNREACHABLE.search(e)] == []


def test_opened_with_the_server_down_the_page_transcribes_locally(
    built_cache: Path, tmp_path: Path
) -> None:
    synth = SpeechSynthesizer(tmp_path)
    wav = microphone_wav(synth, tmp_path / "mic.wav", [FIRST], gap_s=3.0, tail_s=30.0)

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with chromium(wav) as tab:
            page = tab.page
            srv = GrpcServer(
                config(http_port=0, cache_root=built_cache), recognizer=FakeRecognizer()
            )
            await srv.start()
            try:
                assert srv.http is not None
                await page.goto(
                    f"http://127.0.0.1:{srv.http.port}/?transport=websocket", wait_until="load"
                )
                await _keep_model(page)
                out["controlled"] = await value_when_truthy(
                    page,
                    "navigator.serviceWorker.ready"
                    ".then(() => !!navigator.serviceWorker.controller)",
                    60,
                )
            finally:
                await srv.stop(2.0)
            await page.reload(wait_until="load")  # from the service worker
            await page.click("#start")
            out["local"] = await value_when_truthy(
                page, f"{FINALS}.some(f => /stella/i.test(f[1])) && {FINALS}", 120
            )
            out["note"] = await page.evaluate(NOTE)
            await page.click("#start")  # Stop
            await value_when_truthy(
                page, "document.getElementById('start').dataset.recording === 'false'", 60
            )
        return out

    out = run(main(), 600)
    print(out)
    assert out["controlled"] is True
    assert all(o == "local" for o, _ in out["local"]), out["local"]
    assert wer(FIRST, " ".join(t for _, t in out["local"])) <= 0.25, out["local"]
    assert "transcribing in this browser" in out["note"]


NO_SIMD = "WebAssembly.validate = () => false;"
NO_CACHE = "delete window.caches; delete self.caches;"


@pytest.mark.parametrize(
    ("script", "missing"),
    [(NO_SIMD, "no WebAssembly SIMD"), (NO_CACHE, "no Cache API")],
    ids=["no-simd", "no-cache-api"],
)
def test_a_browser_that_cannot_transcribe_is_told_and_keeps_the_server_page(
    script: str, missing: str
) -> None:
    async def main() -> dict[str, Any]:
        srv = GrpcServer(config(http_port=0), recognizer=FakeRecognizer())
        await srv.start()
        try:
            assert srv.http is not None
            async with chromium(init_scripts=[script]) as tab:
                page = tab.page
                await page.goto(f"http://127.0.0.1:{srv.http.port}/", wait_until="load")
                await page.wait_for_selector("#model-keep:not([hidden])", timeout=30_000)
                return {
                    "status": await page.inner_text("#keep-status"),
                    "button_hidden": await page.evaluate(
                        "document.getElementById('keep-model').hidden"
                    ),
                    "start_enabled": await page.evaluate(
                        "!document.getElementById('start').disabled"
                    ),
                    "health": await value_when_truthy(
                        page, "document.getElementById('health-text').innerText"
                    ),
                }
        finally:
            await srv.stop(2.0)

    out = run(main(), 120)
    assert out["status"].startswith("This browser cannot transcribe by itself"), out
    assert missing in out["status"]
    assert out["button_hidden"] is True and out["start_enabled"] is True
