"""Speech that starts right after Start, over a WebRTC connection that takes 2 s to come up:
the words said before the track connected reach the server (on the data channel, as the
stream's prefix) and open the first final, and no word comes twice.

Headless Chromium (Playwright) with a fake microphone playing espeak-ng speech 0.4 s after
Start, the real aiortc server with tiny.en, both in a network namespace (ICE needs an address
other than 127.0.0.1). The slow connection is test_browser_handover's SLOW_RTC."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from server.real_engine import settled
from server.ws_harness import http_server
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer
from web.browser import (
    REALTIME_BROWSER,
    chromium,
    microphone_wav,
    open_when_ready,
    value_when_truthy,
)
from web.test_browser import ARTIFACTS, SENTENCES, _stopped
from web.test_browser_handover import FINALS, SLOW_RTC, WATCH_CHANNEL, _each_once, _words

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytest.importorskip("aiortc")

pytestmark = REALTIME_BROWSER

LEAD_S = 0.4


def _speak_at_once(recognizer: StreamingRecognizer, wav: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with (
            http_server(recognizer) as srv,
            chromium(wav, init_scripts=[SLOW_RTC, WATCH_CHANNEL]) as tab,
        ):
            assert srv.http is not None
            page = tab.page
            await settled(recognizer)
            await open_when_ready(page, srv.http.port)
            await page.click("#start")
            out["finals"] = await value_when_truthy(
                page, f"{FINALS}.some(f => /noon/i.test(f[1])) && {FINALS}", 120
            )
            out["transport"] = await page.inner_text("#transport-text")
            out["origin_s"] = await page.evaluate("document.body.dataset.streamOriginS")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await tab.screenshot(
                ARTIFACTS / "page-webrtc-prefix.png", width=1280, height=900, dark=False
            )
            await page.click("#start")  # Stop
            await _stopped(page)
            out["finals_after_stop"] = await page.evaluate(FINALS)
            for _ in range(50):  # the server's last statistics come as the stream closes
                out["prefix"] = await page.evaluate("window.__prefix")
                if out["prefix"]["stats"]:
                    break
                await asyncio.sleep(0.1)
            out["errors"] = list(tab.errors)
        return out

    with namespace() as name:
        return run_inside(name, main, 300)


def test_words_said_before_a_slow_webrtc_connection_is_up_open_the_first_final(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    wav = microphone_wav(speech, tmp_path / "mic.wav", SENTENCES, lead_s=LEAD_S, tail_s=30.0)
    out = _speak_at_once(recognizer, wav)
    print(out)
    finals = [text for _, text in out["finals_after_stop"]]
    first = _words(finals[0]) if finals else []
    # "Please call Stella ...": spoken from 0.4 s, while the connection needs ~2.4 s.
    assert first[:2] == ["please", "call"], finals
    assert _each_once(" ".join(SENTENCES), " ".join(finals)) == [], finals
    assert out["transport"].startswith("WebRTC"), out["transport"]
    # The server's stream time 0 is the capture's first chunk: the prefix starts there.
    assert float(out["origin_s"]) == 0.0, out["origin_s"]
    prefix = out["prefix"]
    assert prefix["bytes"] >= 2.0 * 32_000, prefix  # the 2-s slowed connection, at least
    assert prefix["stats"]["prefix_ms"] == prefix["bytes"] * 1000 // 32_000, prefix
    assert not out["errors"], out["errors"]
