"""The page in a real browser: Chromium's microphone plays speech, the real engine transcribes.

Headless Debian Chromium (installed by ./test.sh), driven by Playwright, opens the page
served by ``audiototext serve``'s HTTP listener, presses Start and reads the transcript as a
person would: partials, then finals with the spoken words, over the WebSocket transport into
tiny.en (the page is opened with ``?transport=websocket``; WebRTC, its default, is in
test_browser_webrtc.py). Along the way: the waveform is drawn, the model selector lists the
model, the Diagnostics panel shows the machine and live figures that move; after Stop, the SRT
download is a valid subtitle file of what was said. Screenshots at desktop and phone widths,
light and dark, go to ``.cache/test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import Page

from server.grpc_harness import run
from server.real_engine import words
from server.ws_harness import http_server
from support.fixture_cache import ROOT
from support.speech import SpeechSynthesizer
from web.browser import NEEDS_CHROMIUM, chromium, microphone_wav

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

# Real-time audio into the real engine, and a browser: alone on the machine.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]

SENTENCES = ("Please call Stella and ask her to bring these things.", "We will meet at noon.")
# Words tiny.en gets right in this voice ("Stella" comes out as "stellar").
EXPECTED = {"call", "bring", "things", "meet", "noon"}
ARTIFACTS = ROOT / ".cache" / "test-artifacts"


async def _text_of(page: Page, element_id: str) -> str:
    # Empty until the page has loaded.
    value = await page.evaluate(f"document.getElementById({element_id!r})?.innerText")
    return str(value or "")


async def _canvas_hash(page: Page) -> str:
    data = await page.evaluate("document.getElementById('wave').toDataURL('image/png')")
    return hashlib.sha256(str(data).encode()).hexdigest()


async def _stopped(page: Page) -> None:
    """Waits (bounded) until the page is idle again after Stop: the last finals are in."""
    for _ in range(200):
        await asyncio.sleep(0.1)
        state = await page.evaluate("document.getElementById('start').dataset.recording")
        if state in ("false", False):
            return
    raise AssertionError("the page did not finish the stream after Stop")


async def _download(page: Page, button: str, folder: Path) -> Path:
    """Presses a download button; the file Chromium saved, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    async with page.expect_download(timeout=10_000) as info:
        await page.click(button)
    download = await info.value
    path = folder / download.suggested_filename
    await download.save_as(path)
    return path


SRT_TIME = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
SRT_CUE = re.compile(rf"(\d+)\n{SRT_TIME} --> {SRT_TIME}\n(.+)")


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    """(index, start s, end s, text) of each cue; fails on anything that is not SubRip."""
    cues = []
    for block in text.strip().split("\n\n"):
        m = SRT_CUE.fullmatch(block.strip())
        assert m, f"not an SRT cue: {block!r}"
        g = [int(x) for x in m.groups()[:9]]
        start = g[1] * 3600 + g[2] * 60 + g[3] + g[4] / 1000
        end = g[5] * 3600 + g[6] * 60 + g[7] + g[8] / 1000
        cues.append((g[0], start, end, m.group(10)))
    return cues


@NEEDS_CHROMIUM
def test_start_speak_and_read_the_transcript_in_the_browser(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    wav = microphone_wav(speech, tmp_path / "microphone.wav", SENTENCES)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {
            "partials": [],
            "transport": set(),
            "waves": [],
            "resources": [],
            "lives": [],
        }
        async with http_server(recognizer) as srv, chromium(wav) as tab:
            assert srv.http is not None
            page = tab.page
            await page.goto(f"http://127.0.0.1:{srv.http.port}/?transport=websocket")
            options = "[...document.querySelectorAll('#model-select option')].map(o => o.value)"
            for _ in range(100):  # the health poll and the panels fill in
                seen["models"] = await page.evaluate(options)
                if "tiny.en" in await _text_of(page, "health-text") and seen["models"]:
                    break
                await asyncio.sleep(0.1)
            live_state = "document.getElementById('live').dataset.state"
            seen["live_before"] = (await page.evaluate(live_state), await _text_of(page, "live"))
            await page.click("#start")
            finals = ""
            for _ in range(600):  # the fake microphone loops; both sentences come in ~8 s
                await asyncio.sleep(0.1)
                seen["transport"].add(await _text_of(page, "transport-text"))
                partial = await _text_of(page, "partials")
                if partial:
                    seen["partials"].append(partial)
                    # Speaking: the waveform is redrawn from the microphone on every frame.
                    if len(set(seen["waves"])) < 2:
                        seen["waves"].append(await _canvas_hash(page))
                # The live indicators (the engine's figures among them), read every second,
                # and the stream's own figures once the server acknowledged audio (a digit
                # among the dashes).
                resources = await _text_of(page, "resources")
                engine = re.search(r"Real-time factor\s+\d", resources)
                if engine and len(set(seen["resources"])) < 2:
                    seen["resources"].append(resources)
                live = await _text_of(page, "live")
                if re.search(r"\d", live) and not seen["lives"]:
                    seen["lives"].append(live)
                finals = await _text_of(page, "finals")
                if (
                    words(finals) >= EXPECTED
                    and len(set(seen["waves"])) >= 2
                    and len(set(seen["resources"])) >= 2
                    and seen["lives"]
                ):
                    break
            seen["system"] = await _text_of(page, "system")
            seen["diagnostics"] = await page.evaluate(
                "document.querySelector('.diagnostics').innerText"
            )
            for width, height, name in ((1280, 1000, "desktop"), (390, 1300, "phone")):
                for dark in (False, True):
                    shade = "dark" if dark else "light"
                    await tab.screenshot(
                        ARTIFACTS / f"page-{name}-{shade}.png",
                        width=width,
                        height=height,
                        dark=dark,
                    )
            await tab.screen(1280, 1000, dark=False)
            await page.click("#start")  # Stop
            await _stopped(page)
            seen["live_after"] = (
                await page.evaluate(live_state),
                await _text_of(page, "live"),
                await page.evaluate("document.getElementById('live').classList.contains('stale')"),
            )
            seen["finals"] = await _text_of(page, "finals")
            seen["final_lines"] = await page.evaluate(
                "[...document.querySelectorAll('#finals p')].map(p => p.textContent)"
            )
            seen["srt"] = (await _download(page, "[data-format=srt]", tmp_path / "dl")).read_text(
                encoding="utf-8"
            )
            seen["errors"] = list(tab.errors)
        return seen

    seen = run(main(), 180)
    assert seen["partials"], "no partial text appeared while speaking"
    assert words(seen["finals"]) >= EXPECTED, seen["finals"]
    assert "WebSocket · Connected" in seen["transport"], seen["transport"]
    assert "tiny.en" in seen["models"], seen["models"]
    assert len(set(seen["waves"])) >= 2, "the waveform did not change while speaking"
    resources = seen["resources"]
    assert len(set(resources)) >= 2, f"the live indicators did not change: {resources}"
    assert seen["lives"] and "Server lag" in seen["lives"][0], seen["lives"]
    assert "Streaming" in seen["lives"][0], seen["lives"]
    # Before Start nothing is live; after Stop the last figures stay, greyed, marked ended.
    assert seen["live_before"][0] == "idle" and "No stream yet" in seen["live_before"][1]
    state, text, greyed = seen["live_after"]
    assert state == "ended" and "Ended" in text and greyed, seen["live_after"]
    assert re.search(r"Server lag\s+\d", text), text
    # Each of the engine's figures once in the Diagnostics panel.
    for label in ("Real-time factor", "Queue depth", "Final latency (95th percentile)"):
        assert seen["diagnostics"].count(label) == 1, (label, seen["diagnostics"])
    assert re.search(rf"Logical cores\s+{os.cpu_count()}\b", seen["system"]), seen["system"]
    cues = parse_srt(seen["srt"])
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1)), seen["srt"]
    for _, start, end, _ in cues:
        assert start <= end, seen["srt"]
    for (_, start, end, _), (_, later, _, _) in itertools.pairwise(cues):
        assert start < later and end <= later, seen["srt"]
    # One cue per final here (one segment each): the file says what the page shows.
    assert [c[3] for c in cues] == seen["final_lines"], (seen["srt"], seen["final_lines"])
    assert words(" ".join(c[3] for c in cues)) >= EXPECTED, seen["srt"]
    assert not seen["errors"], seen["errors"]
