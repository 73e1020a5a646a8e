"""The page over WebRTC, its default transport, in a real browser; and its fallback.

Chromium (driven by Playwright; fake microphone playing espeak-ng speech) and the server with
the real engine run in a network namespace of their own: WebRTC's ICE needs an address other
than 127.0.0.1, which a veth pair gives. The page is opened at http://127.0.0.1 (a secure
context: the microphone is allowed). Without the veth pair there is no address for ICE at all:
WebRTC cannot connect, and the page must fall back to the WebSocket by itself and still
transcribe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from server.real_engine import settled, words
from server.ws_harness import http_server
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer
from web.browser import REALTIME_BROWSER, chromium, microphone_wav
from web.test_browser import ARTIFACTS, EXPECTED, SENTENCES, _stopped, _text_of

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytest.importorskip("aiortc")

pytestmark = REALTIME_BROWSER


def _transcribe_in_the_page(
    recognizer: StreamingRecognizer, wav: Path, *, veth: bool, shot: str
) -> dict[str, Any]:
    async def main(name: str) -> dict[str, Any]:
        seen: dict[str, Any] = {"partials": [], "transport": [], "notes": set()}
        # The browser starts from this thread, inside the namespace.
        async with http_server(recognizer) as srv, chromium(wav) as tab:
            assert srv.http is not None and srv.webrtc is not None
            page = tab.page
            await settled(recognizer)
            await page.goto(f"http://127.0.0.1:{srv.http.port}/")
            for _ in range(100):  # the health poll and the panels fill in
                if "tiny.en" in await _text_of(page, "health-text"):
                    break
                await asyncio.sleep(0.1)
            await page.click("#start")
            finals = ""
            for _ in range(900):  # the fake microphone loops; both sentences come in ~8 s
                await asyncio.sleep(0.1)
                transport = await _text_of(page, "transport-text")
                if not seen["transport"] or seen["transport"][-1] != transport:
                    seen["transport"].append(transport)
                seen["notes"].add(await _text_of(page, "transcript-note"))
                seen["peers"] = max(seen.get("peers", 0), len(srv.webrtc))
                partial = await _text_of(page, "partials")
                if partial:
                    seen["partials"].append(partial)
                finals = await _text_of(page, "finals")
                if words(finals) >= EXPECTED:
                    break
            seen["live"] = await _text_of(page, "live")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await tab.screenshot(ARTIFACTS / f"{shot}.png", width=1280, height=1000, dark=False)
            await page.click("#start")  # Stop
            await _stopped(page)
            seen["finals"] = await _text_of(page, "finals")
            seen["after_stop"] = await _text_of(page, "transport-text")
            seen["errors"] = list(tab.errors)
        return seen

    with namespace(veth=veth) as name:
        return run_inside(name, lambda: main(name), 240)


def test_start_speak_and_read_the_transcript_over_webrtc(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    wav = microphone_wav(speech, tmp_path / "microphone.wav", SENTENCES)
    seen = _transcribe_in_the_page(recognizer, wav, veth=True, shot="page-webrtc")
    assert seen["partials"], "no partial text appeared while speaking"
    assert words(seen["finals"]) >= EXPECTED, seen["finals"]
    assert "WebRTC · Connected" in seen["transport"], seen["transport"]
    assert not any("WebSocket" in t for t in seen["transport"]), seen["transport"]
    assert seen["peers"] == 1
    assert "Audio lost on the way" in seen["live"], seen["live"]
    assert not seen["errors"], seen["errors"]


def test_without_a_route_for_webrtc_the_page_falls_back_to_the_websocket(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    wav = microphone_wav(speech, tmp_path / "microphone.wav", SENTENCES)
    seen = _transcribe_in_the_page(recognizer, wav, veth=False, shot="page-webrtc-fallback")
    assert words(seen["finals"]) >= EXPECTED, seen["finals"]
    transports = seen["transport"]
    assert any(t.startswith("WebRTC") for t in transports), transports  # it tried first
    assert "WebSocket · Connected" in transports, transports
    assert not any("WebRTC · Connected" in t for t in transports), transports
    assert any("streaming over the WebSocket" in n for n in seen["notes"]), seen["notes"]
    assert not seen["errors"], seen["errors"]
