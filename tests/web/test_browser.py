"""The page in a real browser: Chromium's microphone plays speech, the real engine transcribes.

Headless Debian Chromium (installed by ./test.sh) opens the page served by ``audiototext
serve``'s HTTP listener, presses Start and reads the transcript as a person would: partials,
then finals with the spoken words, over the WebSocket transport into tiny.en (the page is
opened with ``?transport=websocket``; WebRTC, its default, is in test_browser_webrtc.py).
Screenshots at desktop and phone widths, light and dark, go to ``.cache/test-artifacts/`` for
people to look at.
"""

from __future__ import annotations

import asyncio
import os
import re
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import soxr

from server.grpc_harness import run
from server.real_engine import words
from server.ws_harness import http_server
from support.fixture_cache import ROOT
from support.speech import SpeechSynthesizer, silence
from web.cdp import CHROMIUM, Page, chromium

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

# Real-time audio into the real engine, and a browser: alone on the machine.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]

SENTENCES = ("Please call Stella and ask her to bring these things.", "We will meet at noon.")
# Words tiny.en gets right in this voice ("Stella" comes out as "stellar").
EXPECTED = {"call", "bring", "things", "meet", "noon"}
ARTIFACTS = ROOT / ".cache" / "test-artifacts"
BROWSER_RATE_HZ = 48_000  # what Chromium's fake capture is happiest with


def _microphone_wav(synth: SpeechSynthesizer, path: Path) -> Path:
    parts: list[Any] = [silence(0.5)]
    for text in SENTENCES:
        parts += [synth.speak(text).audio, silence(1.5)]
    audio = soxr.resample(np.concatenate(parts), 16_000, BROWSER_RATE_HZ)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(BROWSER_RATE_HZ)
        out.writeframes(pcm.tobytes())
    return path


async def _text_of(page: Page, element_id: str) -> str:
    # Empty until the page has loaded (Page.navigate returns before it has).
    value = await page.evaluate(f"document.getElementById({element_id!r})?.innerText")
    return str(value or "")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (./test.sh installs it)")
def test_start_speak_and_read_the_transcript_in_the_browser(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    wav = _microphone_wav(speech, tmp_path / "microphone.wav")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {"partials": [], "transport": set()}
        async with http_server(recognizer) as srv, chromium(wav) as page:
            assert srv.http is not None
            await page.call(
                "Page.navigate", url=f"http://127.0.0.1:{srv.http.port}/?transport=websocket"
            )
            for _ in range(100):  # the health poll and the panels fill in
                if "tiny.en" in await _text_of(page, "health-text"):
                    break
                await asyncio.sleep(0.1)
            await page.evaluate("document.getElementById('start').click()")
            finals = ""
            for _ in range(600):  # the fake microphone loops; both sentences come in ~8 s
                await asyncio.sleep(0.1)
                seen["transport"].add(await _text_of(page, "transport-text"))
                partial = await _text_of(page, "partials")
                if partial:
                    seen["partials"].append(partial)
                finals = await _text_of(page, "finals")
                if words(finals) >= EXPECTED:
                    break
            seen["system"] = await _text_of(page, "system")
            for width, height, name in ((1280, 1000, "desktop"), (390, 1300, "phone")):
                for dark in (False, True):
                    shade = "dark" if dark else "light"
                    await page.screenshot(
                        ARTIFACTS / f"page-{name}-{shade}.png",
                        width=width,
                        height=height,
                        dark=dark,
                    )
            await page.evaluate("document.getElementById('start').click()")  # Stop
            await asyncio.sleep(1.0)
            seen["finals"] = await _text_of(page, "finals")
            seen["errors"] = list(page.errors)
        return seen

    seen = run(main(), 180)
    assert seen["partials"], "no partial text appeared while speaking"
    assert words(seen["finals"]) >= EXPECTED, seen["finals"]
    assert "WebSocket · Connected" in seen["transport"], seen["transport"]
    assert re.search(rf"Logical cores\s+{os.cpu_count()}\b", seen["system"]), seen["system"]
    assert not seen["errors"], seen["errors"]
